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
attacks: the attack's measured effect is the change in final AUROC. A log
that fails verification is refused unless ``allow_tampered=True``, which
renders it under a banner listing the problems. A log that fedsim did not
write (or that lacks some of its fields) renders what it holds, "not
available" for the rest.
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
from fedsim.governance.report.document import NA, Doc, code, known, number, span, user
from fedsim.governance.report.run_log import Run, title
from fedsim.plots import report as figures
from fedsim.validation import Boolean, check

PRIVACY_NUMBERS = ("epsilon", "delta", "budget", "steps", "rounds", "sampling_rate", "noise_multiplier")
PRIVACY_TEXTS = ("hospital", "mechanism", "technique", "unit", "accountant")


def _no_epsilon(technique: dict) -> str:
    return (f"**{user(title(technique))}** (no epsilon of its own): "
            f"{user(technique.get('trust_model') or 'no formal guarantee')}")


def privacy_statement(doc: Doc, run: Run) -> None:
    """Unit of privacy, trust model, accountant, epsilon and delta per hospital: from each technique's own facts."""
    privacy = run.table("privacy", numbers=PRIVACY_NUMBERS, texts=PRIVACY_TEXTS)
    doc.h("Privacy statement")
    techniques = run.of_family("privacy")
    if privacy.empty:
        doc.p("**No differential privacy in this run: no formal privacy guarantee.** Raw records never left "
              "a hospital, but the updates and the final model can leak them (see the threat model).")
        if techniques:
            doc.items([_no_epsilon(c) for c in techniques])
        return
    lines = []
    for c in techniques:
        rows = privacy[privacy.technique == c.get("name")] if c.get("spends_epsilon") else privacy.iloc[:0]
        settings = ", ".join(f"{k}={v}" for k, v in c.get("settings", {}).items() if v is not None)
        if rows.empty:
            lines.append(_no_epsilon(c))
            continue
        lines += [
            f"**{user(title(c))}**: unit of privacy: {known(UNITS.get(c.get('unit'), c.get('unit')))}",
            f"trust model: {known(c.get('trust_model'))}",
            f"settings: {user(settings or 'none')}",
            f"accountant: {user(rows.accountant.iloc[0].upper() or NA)} (dp-accounting), Poisson subsampling at "
            f"each hospital's sampling rate ({span(rows.sampling_rate, '.3g')}), composed over "
            f"{number(rows.steps.max(), '.0f')} steps at most",
            f"noise multiplier {number(rows.noise_multiplier.iloc[0], '.3g')}; epsilon per hospital "
            f"{span(rows.epsilon, '.3g')} at delta {span(rows.delta, '.2g')}",
        ]
    clip = run.start.get("client_training", {}).get("dpsgd-clip")
    if clip is not None:
        lines.append(f"clipping: each example's gradient to L2 norm {user(clip)} (in every hospital's local "
                     "training)")
    for s in run.start.get("strategy", []):
        if "clipping_norm" in s:
            lines.append(f"clipping: each hospital's update to L2 norm {user(s['clipping_norm'])} "
                         f"({known(s.get('class'))})")
    lines.append("what is protected: every update the server saw and the final model; not protected: "
                 "what a hospital's own staff see of its own data; the hospital-level epsilons above assume "
                 "the sampling the accountant models")
    doc.items(lines)
    columns = ["hospital", "mechanism", "unit", "epsilon", "delta", "budget", "steps", "rounds"]
    doc.table(privacy[columns])
    caps = {p["hospital"]: p["max_epsilon"] for p in run.start.get("policies", [])
            if "hospital" in p and "max_epsilon" in p}
    doc.figure("epsilon", figures.epsilon_by_hospital(privacy, caps), "Epsilon spent per hospital and mechanism")


def participation(doc: Doc, run: Run) -> None:
    """Who took part in each round, and each hospital's final AUROC against the global one (fairness)."""
    doc.h("Participation and per-hospital performance")
    rows = []
    for r in run.rounds:
        for h in r.get("sampled", []):
            status = ("rejected" if h in r.get("rejected", {}) else "dropped" if h in r.get("dropped", {})
                      else "responded")
            rows.append({"round": r["round"], "hospital": h, "status": status})
        rows += [{"round": r["round"], "hospital": h, "status": "excluded"} for h in r.get("excluded", {})]
    if rows:
        part = pd.DataFrame(rows)
        counts = part.pivot_table(index="hospital", columns="status", values="round", aggfunc="count",
                                  fill_value=0).reset_index()
        doc.table(counts)
        grid = part.assign(code=part.status.map(figures.PARTICIPATION_CODES)).pivot_table(
            index="hospital", columns="round", values="code", aggfunc="max")
        hospitals = sorted(set(run.start.get("data_fingerprints", {})) | set(grid.index))
        doc.figure("participation", figures.participation_grid(grid.reindex(hospitals).fillna(0)),
                   "Who took part in each round")
    metrics = run.metrics
    per = metrics[(metrics.scope != "global") & (metrics.metric == "auroc")]
    last = per[per["round"] == per["round"].max()]
    last = last[last.value.map(np.isfinite).astype(bool)]
    if last.empty:
        doc.p("No per-hospital metrics released.")
        return
    withheld = sorted(set(run.start.get("data_fingerprints", {})) - set(last.scope))
    doc.p(f"Final AUROC per hospital: min {last.value.min():.3f} ({user(last.loc[last.value.idxmin(), 'scope'])}), "
          f"median {last.value.median():.3f}, max {last.value.max():.3f}; "
          f"spread {last.value.max() - last.value.min():.3f}"
          f" (a fairness gap). Global AUROC {number(run.final('auroc'), '.3f')}."
          + (f" Withheld by policy: {user(', '.join(withheld))}." if withheld else ""))
    doc.figure("fairness", figures.auroc_by_hospital(last, run.final("auroc")), "Final AUROC per hospital")


def model_card(doc: Doc, run: Run) -> None:
    """The final model: what it is, how it was trained, on what data, how it performs, what it is for."""
    model = (run.result or {}).get("model", {})
    config = run.start.get("config", {})
    prints = run.start.get("data_fingerprints", {})
    doc.h("Model card")
    metrics = run.metrics
    names = sorted(set(metrics[metrics.scope == "global"].metric))
    final = ", ".join(f"{user(m)} {number(run.final(m), '.3f')}" for m in names) or NA
    doc.items([
        f"**Model**: {known(model.get('name', config.get('model')))} ({known(model.get('class'))}, "
        f"{known(model.get('parameters'))} parameters, {len(model.get('layers', []))} layers); predicts "
        f"{code(model.get('target', '?'))} from {known(model.get('n_features'))} preprocessed inputs; final "
        f"weights SHA-256 {code(model.get('weights_sha256', '?')[:16])}",
        f"**Training**: federated, {known(config.get('rounds'))} rounds of {known(config.get('strategy'))} "
        f"(aggregation {user(run.rule)}), {known(config.get('local_epochs'))} local epoch(s), batch "
        f"{known(config.get('batch_size'))}, learning rate {known(config.get('learning_rate'))}, seed "
        f"{known(config.get('seed'))}; components: {user(', '.join(map(title, run.components)) or 'none')}",
        f"**Data**: {known(config.get('federation'))}; {len(prints)} hospitals, "
        f"{sum(p.get('n_train', 0) for p in prints.values())} training records; fingerprints in the audit log",
        f"**Evaluation** (pooled held-out test splits, final round): {final}",
        "**Intended use**: research and teaching on federated learning privacy and security; "
        "not for clinical decisions (synthetic or unvalidated data, no prospective evaluation)",
        "**Caveats**: per-hospital performance differs (see the fairness figure); attacks and DP noise in "
        "this run shape the model; check the privacy statement before releasing the model",
    ])


def report(results_dir: str | os.PathLike, baseline: str | os.PathLike | None = None,
           key: AuditKey | None = None, out: str | os.PathLike | None = None,
           allow_tampered: bool = False) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html``; return their paths.

    ``key`` checks the logs' signatures. A log (of the run or of the baseline)
    that fails verification raises ValueError, unless ``allow_tampered=True``:
    the report then opens with a banner saying so and listing the problems.
    """
    check("allow_tampered", allow_tampered, Boolean())
    run = Run.load(results_dir, key, allow_tampered=allow_tampered)
    base = Run.load(baseline, key, "baseline", allow_tampered) if baseline is not None else None
    out = Path(out) if out is not None else run.folder
    with sns.axes_style("whitegrid"), matplotlib.rc_context({"figure.max_open_warning": 0,
                                                              "text.parse_math": False}):
        doc = build(run, base)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for name, png in doc.figures.items():
            (out / "figures" / f"{name}.png").write_bytes(png)
        paths["markdown"].write_text(doc.markdown(), encoding="utf-8")
        paths["html"].write_text(doc.html(), encoding="utf-8")
    except OSError as error:
        raise ValueError(f"out: cannot write the report into {str(out)!r} ({error.strerror})") from None
    return paths


def banners(doc: Doc, run: Run, baseline: Run | None) -> None:
    """A prominent warning for each log that failed verification, listing its problems."""
    for name, r in (("this run", run), ("the baseline", baseline)):
        if r is not None and not r.verification.ok:
            v = r.verification
            more = [f"... and {v.more_problems} more problems"] if v.more_problems else []
            doc.warning(f"**WARNING: the audit log of {name} FAILED verification ({v.tally}): it is not "
                        "the log the run wrote, and nothing in this report can be trusted.**",
                        [user(f"line {p['line']}: {p['problem']}: {p['detail']}") for p in v.problems] + more)


def audit_log(doc: Doc, run: Run) -> None:
    """The log's verification status, what its signatures show, its problems and notes."""
    v = run.verification
    doc.h("Audit log")
    count = f": {v.tally}" if not v.ok else ""
    doc.p(f"Audit log verification: **{v.status}**{count} ({v.entries} entries, head {code(v.head[:16])}; "
          f"{user(v.signatures)}).")
    if v.problems:
        doc.table(pd.DataFrame(v.problems))
    if v.notes:
        doc.items([user(n) for n in v.notes])


def build(run: Run, baseline: Run | None = None) -> Doc:
    """The report as a Doc (render it with ``.markdown()`` or ``.html()``)."""
    doc = Doc(f"Risk report: {run.start.get('label', run.folder.name)}")
    banners(doc, run, baseline)
    config_hash, versions = run.start.get("config_hash"), run.start.get("versions", {})
    doc.p(f"Results folder {code(run.folder)}; config hash {code(config_hash[:16]) if config_hash else NA}; "
          f"fedsim {known(versions.get('fedsim'))}, Flower {known(versions.get('flwr'))}.")
    audit_log(doc, run)

    doc.h("Threat model")
    doc.p("Each threat, the mitigations enabled in this experiment, and the residual risk as measured by the "
          "attacks actually run in it (\"not measured\" where none was).")
    doc.table(threat_rows(run, baseline))
    if baseline is not None:
        both = pd.concat([run.metrics.assign(run="with attack"), baseline.metrics.assign(run="without attack")])
        both = both[(both.scope == "global") & (both.metric == "auroc")]
        if not both.empty:
            doc.figure("attack_effect", figures.attack_effect(both), "Global AUROC with and without the attack")
    norms = pd.DataFrame([{"round": r["round"], "hospital": h, "norm": n}
                          for r in run.rounds for h, n in r.get("update_norms", {}).items() if np.isfinite(n)])
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
    doc.table(policies[[c for c in ("hospital", "max_epsilon", "min_records", "evaluate", "share_metrics")
                        if c in policies]], empty="no institution policies")
    doc.p("Enforcements (each one is also an entry of the audit log):")
    doc.table(pd.DataFrame(run.policy, columns=["round", "hospital", "policy", "action", "detail"]),
              empty="no enforcement")
    model_card(doc, run)
    return doc


__all__ = ["Doc", "Run", "build", "report"]
