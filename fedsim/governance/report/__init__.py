"""The risk report of a results folder: Markdown plus one self-contained HTML page.

``report(results_dir)`` reads the folder's verified audit log (everything in
the report comes from it) and writes ``report.md`` (figures as PNG files in
``figures/``) and ``report.html`` (the same figures embedded as base64 PNG):

1. the audit log's verification status;
2. a threat model: each threat -> the mitigations enabled in this run -> the
   residual risk measured by the attacks actually run, or "not measured";
3. a privacy statement answering the hazards NIST SP 800-226 lists: unit of
   privacy, epsilon and delta per hospital, trust model, accountant, clipping,
   each from the privacy technique's own description;
4. participation and per-hospital performance (fairness);
5. the institution policies and their enforcements;
6. a model card for the final model.

``baseline`` names the results folder of the same experiment without its
attacks: the attack's measured effect is the change in final AUROC.
The pieces: ``document`` (renderer), ``run_log`` (the log reader),
``analyses`` (threats and residual risk); figures are ``fedsim.plots.report``.
"""

import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns

from fedsim.components import UNITS
from fedsim.governance.audit import AuditKey
from fedsim.governance.report.analyses import threat_rows
from fedsim.governance.report.document import Doc
from fedsim.governance.report.run_log import Run
from fedsim.plots import report as figures


def _no_epsilon(technique: dict) -> str:
    return f"**{technique['title']}** (no epsilon of its own): {technique.get('trust_model') or 'no formal guarantee'}"


def privacy_statement(doc: Doc, run: Run) -> None:
    """Unit of privacy, trust model, accountant, epsilon and delta per hospital: from each technique's own facts."""
    privacy = run.table("privacy")
    doc.h("Privacy statement")
    techniques = run.of_family("privacy")
    if privacy.empty:
        doc.p("**No differential privacy in this run: no formal privacy guarantee.** Raw records never left "
              "a hospital, but the updates and the final model can leak them (see the threat model).")
        if techniques:
            doc.items([_no_epsilon(c) for c in techniques])
        return
    privacy["epsilon"] = pd.to_numeric(privacy.epsilon, errors="coerce")
    lines = []
    for c in techniques:
        rows = privacy[privacy.technique == c["name"]] if c.get("spends_epsilon") else privacy.iloc[:0]
        settings = ", ".join(f"{k}={v}" for k, v in c.get("settings", {}).items() if v is not None)
        if rows.empty:
            lines.append(_no_epsilon(c))
            continue
        lines += [
            f"**{c['title']}**: unit of privacy: {UNITS.get(c.get('unit'), c.get('unit'))}",
            f"trust model: {c.get('trust_model')}",
            f"settings: {settings}",
            f"accountant: {rows.accountant.iloc[0].upper()} (dp-accounting), Poisson subsampling at each "
            f"hospital's sampling rate ({rows.sampling_rate.astype(float).min():.3g}-"
            f"{rows.sampling_rate.astype(float).max():.3g}), composed over {int(rows.steps.max())} steps at most",
            f"noise multiplier {float(rows.noise_multiplier.iloc[0]):.3g}; epsilon per hospital "
            f"{rows.epsilon.min():.3g}-{rows.epsilon.max():.3g} at delta {float(rows.delta.astype(float).min()):.2g}-"
            f"{float(rows.delta.astype(float).max()):.2g}",
        ]
    clip = run.start.get("client_training", {}).get("dpsgd-clip")
    if clip is not None:
        lines.append(f"clipping: each example's gradient to L2 norm {clip} (in every hospital's local training)")
    for s in run.start.get("strategy", []):
        if "clipping_norm" in s:
            lines.append(f"clipping: each hospital's update to L2 norm {s['clipping_norm']} ({s['class']})")
    lines.append("what is protected: every update the server saw and the final model; not protected: "
                 "what a hospital's own staff see of its own data; the hospital-level epsilons above assume "
                 "the sampling the accountant models")
    doc.items(lines)
    columns = ["hospital", "mechanism", "unit", "epsilon", "delta", "budget", "steps", "rounds"]
    doc.table(privacy[[c for c in columns if c in privacy]])
    caps = {p["hospital"]: float(p["max_epsilon"]) for p in run.start.get("policies", [])
            if isinstance(p.get("max_epsilon"), (int, float))}
    doc.figure("epsilon", figures.epsilon_by_hospital(privacy, caps), "Epsilon spent per hospital and mechanism")


def participation(doc: Doc, run: Run) -> None:
    doc.h("Participation and per-hospital performance")
    if run.rounds:
        rows = []
        for r in run.rounds:
            for h in r["sampled"]:
                status = ("rejected" if h in r["rejected"] else "dropped" if h in r["dropped"]
                          else "responded")
                rows.append({"round": r["round"], "hospital": h, "status": status})
            rows += [{"round": r["round"], "hospital": h, "status": "excluded"} for h in r["excluded"]]
        part = pd.DataFrame(rows)
        counts = part.pivot_table(index="hospital", columns="status", values="round", aggfunc="count",
                                  fill_value=0).reset_index()
        doc.table(counts)
        grid = part.assign(code=part.status.map(figures.PARTICIPATION_CODES)).pivot_table(
            index="hospital", columns="round", values="code", aggfunc="max")
        hospitals = sorted(run.start.get("data_fingerprints", {}))
        doc.figure("participation", figures.participation_grid(grid.reindex(hospitals).fillna(0)),
                   "Who took part in each round")
    metrics = run.metrics
    per = metrics[(metrics.scope != "global") & (metrics.metric == "auroc")] if not metrics.empty else metrics
    if per.empty:
        doc.p("No per-hospital metrics released.")
        return
    last = per[per["round"] == per["round"].max()].astype({"value": float})
    shown = set(last.scope)
    withheld = sorted(set(run.start.get("data_fingerprints", {})) - shown)
    doc.p(f"Final AUROC per hospital: min {last.value.min():.3f} ({last.loc[last.value.idxmin(), 'scope']}), "
          f"median {last.value.median():.3f}, max {last.value.max():.3f}; "
          f"spread {last.value.max() - last.value.min():.3f}"
          f" (a fairness gap). Global AUROC {run.final('auroc'):.3f}."
          + (f" Withheld by policy: {', '.join(withheld)}." if withheld else ""))
    doc.figure("fairness", figures.auroc_by_hospital(last, run.final("auroc")), "Final AUROC per hospital")


def model_card(doc: Doc, run: Run) -> None:
    model = (run.result or {}).get("model", {})
    config = run.start.get("config", {})
    prints = run.start.get("data_fingerprints", {})
    doc.h("Model card")
    global_rows = run.metrics[run.metrics.scope == "global"] if not run.metrics.empty else run.metrics
    final = ", ".join(f"{m} {run.final(m):.3f}" for m in sorted(set(global_rows.metric))) or "not available"
    doc.items([
        f"**Model**: {model.get('name', config.get('model'))} ({model.get('class', '?')}, "
        f"{model.get('parameters', '?')} parameters, {len(model.get('layers', []))} layers); predicts "
        f"`{model.get('target', '?')}` from {model.get('n_features', '?')} preprocessed inputs; final weights "
        f"SHA-256 `{str(model.get('weights_sha256', '?'))[:16]}`",
        f"**Training**: federated, {config.get('rounds')} rounds of {config.get('strategy')} "
        f"(aggregation {run.rule}), {config.get('local_epochs')} local epoch(s), batch {config.get('batch_size')}, "
        f"learning rate {config.get('learning_rate')}, seed {config.get('seed')}; "
        f"components: {', '.join(c.get('title', c['name']) for c in run.components) or 'none'}",
        f"**Data**: {config.get('federation')}; {len(prints)} hospitals, "
        f"{sum(p['n_train'] for p in prints.values())} training records; fingerprints in the audit log",
        f"**Evaluation** (pooled held-out test splits, final round): {final}",
        "**Intended use**: research and teaching on federated learning privacy and security; "
        "not for clinical decisions (synthetic or unvalidated data, no prospective evaluation)",
        "**Caveats**: per-hospital performance differs (see the fairness figure); attacks and DP noise in "
        "this run shape the model; check the privacy statement before releasing the model",
    ])


def report(results_dir: str | os.PathLike, baseline: str | os.PathLike | None = None,
           key: AuditKey | None = None, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html``; return their paths."""
    run = Run.load(results_dir, key)
    base = Run.load(baseline, key) if baseline is not None else None
    out = Path(out) if out is not None else run.folder
    out.mkdir(parents=True, exist_ok=True)
    with sns.axes_style("whitegrid"), matplotlib.rc_context({"figure.max_open_warning": 0}):
        doc = build(run, base)
    (out / "figures").mkdir(exist_ok=True)
    for name, png in doc.figures.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    paths["markdown"].write_text(doc.markdown())
    paths["html"].write_text(doc.html())
    return paths


def build(run: Run, baseline: Run | None = None) -> Doc:
    """The report as a Doc (render it with ``.markdown()`` or ``.html()``)."""
    v = run.verification
    doc = Doc(f"Risk report: {run.start.get('label', run.folder.name)}")
    doc.p(f"Results folder `{run.folder}`; config hash `{run.start.get('config_hash', '')[:16]}`; "
          f"fedsim {run.start.get('versions', {}).get('fedsim', '?')}, "
          f"Flower {run.start.get('versions', {}).get('flwr', '?')}.")
    doc.h("Audit log")
    doc.p(f"Audit log verification: **{v.status}** ({v.entries} entries, {v.signed}, head `{v.head[:16]}`).")
    if v.problems:
        doc.table(pd.DataFrame(v.problems))
    if v.notes:
        doc.items(v.notes)

    doc.h("Threat model")
    doc.p("Each threat, the mitigations enabled in this experiment, and the residual risk as measured by the "
          "attacks actually run in it (\"not measured\" where none was).")
    doc.table(threat_rows(run, baseline))
    if baseline is not None and not run.metrics.empty and not baseline.metrics.empty:
        both = pd.concat([run.metrics.assign(run="with attack"), baseline.metrics.assign(run="without attack")])
        both = both[(both.scope == "global") & (both.metric == "auroc")].astype({"value": float})
        doc.figure("attack_effect", figures.attack_effect(both), "Global AUROC with and without the attack")
    norms = pd.DataFrame([{"round": r["round"], "hospital": h, "norm": n}
                          for r in run.rounds for h, n in r.get("update_norms", {}).items()])
    if not norms.empty:
        attackers = {h for threat in ("poisoning", "backdoor", "free-riding") for a in run.posing(threat)
                     for h in a.get("hospitals", [])}
        norms["role"] = np.where(norms.hospital.isin(attackers), "attacker", "honest")
        doc.figure("update_norms", figures.update_norms(norms),
                   "Update norms seen by the server (before aggregation)")

    privacy_statement(doc, run)
    participation(doc, run)

    doc.h("Institution policies")
    policies = pd.DataFrame(run.start.get("policies", []))
    if not policies.empty:
        policies = policies[["hospital", *[c for c in ("max_epsilon", "min_records", "evaluate", "share_metrics")
                                           if c in policies]]]
        policies["max_epsilon"] = pd.to_numeric(policies.max_epsilon, errors="coerce")
    doc.table(policies, empty="no institution policies")
    doc.p("Enforcements (each one is also an entry of the audit log):")
    doc.table(pd.DataFrame(run.policy, columns=["round", "hospital", "policy", "action", "detail"]),
              empty="no enforcement")
    model_card(doc, run)
    return doc


__all__ = ["Doc", "Run", "build", "report"]
