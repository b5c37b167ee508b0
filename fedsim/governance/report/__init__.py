"""The risk report of a results folder (one run, or a ``fedsim assess`` assessment): Markdown plus one HTML page.

``report(results_dir)`` reads the folder's verified audit log (everything in
the report comes from it) and writes ``report.md`` (figures as PNG files in
``figures/``) and ``report.html`` (the same figures embedded as base64 PNG).
For one run, for the reader who must sign it:

1. about this report: the run, its date, who prepared it (``owner``), a
   sign-off line, software versions and the configuration hash;
2. the data's provenance, in words;
3. the audit log's verification status (and what an unsigned log is worth);
4. a threat model: each threat -> the mitigations active in this run (only
   components whose settings make them act) -> the residual risk measured by
   the attacks actually run, or "not measured";
5. a privacy statement answering the hazards NIST SP 800-226 lists (unit of
   privacy, epsilon and delta per hospital, trust model, accountant,
   clipping), each from the privacy technique's own description, and the
   empirical audit's lower bound when the run had one (a refuted claim is
   flagged under the title);
6. participation and per-hospital performance: test size, events, AUROC
   with its DeLong interval, AUPRC beside the base rate;
7. calibration; 8. institution policies; 9. a model card; 10. caveats that
   match the run; 11. with ``require``, whether the run meets the stated
   constraints.

An assessment's log renders as a decision report instead (``assessment``):
the decision table, a recommendation derived from it for ``require``, and
each candidate's measured residual risk per threat.

``baseline`` names the results folder of the same experiment without its
attacks: the attack's measured effect is the change in final AUROC. A log
that fails verification is refused unless ``allow_tampered=True``, which
renders it under a banner listing the problems. A log that fedsim did not
write (or that lacks some of its fields) renders what it holds, "not
available" for the rest.
The pieces: ``document`` (renderer), ``run_log`` (the log reader),
``sections`` (shared sections), ``analyses`` (threats and residual risk),
``recommend`` (constraints), ``assessment``; figures are ``fedsim.plots.report``.
"""

import math
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns

from fedsim.components import UNITS
from fedsim.governance.audit import AuditKey
from fedsim.governance.report.analyses import threat_rows
from fedsim.governance.report.assessment import build_assessment
from fedsim.governance.report.document import NA, Doc, code, known, number, span, user
from fedsim.governance.report.recommend import parse, recommend, resolve_units
from fedsim.governance.report.run_log import Run, title
from fedsim.governance.report.sections import (
    about,
    audit_log,
    banners,
    calibration,
    data,
    per_hospital,
    refuted_banner,
)
from fedsim.plots import report as figures
from fedsim.recipe import DP_CLIP
from fedsim.validation import Boolean, NoneValue, Text, check

PRIVACY_NUMBERS = ("epsilon", "delta", "budget", "steps", "rounds", "sampling_rate", "noise_multiplier")
PRIVACY_TEXTS = ("hospital", "mechanism", "technique", "unit", "accountant", "record_sampling", "hospital_sampling",
                 "neighbouring")


def _no_epsilon(technique: dict) -> str:
    return (f"**{user(title(technique))}** (no epsilon of its own): "
            f"{user(technique.get('trust_model') or 'no formal guarantee')}")


SAMPLING_WORDS = {
    "poisson": "each record joins each step independently (Poisson sampling, as the accountant composes it)",
    "shuffle": "shuffled fixed-size batches, accounted without amplification (one release per pass over the rows)",
    "without_replacement": "a fixed number of the eligible hospitals sampled without replacement each round, "
                           "accounted as such",
}


def sampling_in_words(row) -> str:
    """How a privacy row's mechanism sampled, in words (records or hospitals; none: no amplification)."""
    for column in ("record_sampling", "hospital_sampling"):
        if row.get(column) in SAMPLING_WORDS:
            return SAMPLING_WORDS[row[column]]
    return "no sampling amplification (every release charged in full)"


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
            f"accountant: {user(rows.accountant.iloc[0].upper() or NA)} (dp-accounting), "
            f"{sampling_in_words(rows.iloc[0])} (sampling rate {span(rows.sampling_rate, '.3g')}), composed over "
            f"{number(rows.steps.max(), '.0f')} releases at most, neighbouring datasets: "
            f"{user(rows.neighbouring.iloc[0] or NA)}",
            f"noise multiplier {number(rows.noise_multiplier.iloc[0], '.3g')}; epsilon per hospital "
            f"{span(rows.epsilon, '.3g')} at delta {span(rows.delta, '.2g')}",
        ]
    clip = run.start.get("client_training", {}).get(DP_CLIP)
    if clip is not None:
        lines.append(f"clipping: each example's gradient to L2 norm {user(clip)} (in every hospital's local "
                     "training)")
    for s in run.start.get("strategy", []):
        if "clipping_norm" in s:
            lines.append(f"clipping: each hospital's update to L2 norm {user(s['clipping_norm'])} "
                         f"({known(s.get('class'))})")
    lines.append("what is protected: every update the server saw and the final model; not protected: "
                 "what a hospital's own staff see of its own data; an amplification by sampling holds only while the "
                 "sample stays secret from whoever the epsilon protects against: each hospital draws its record "
                 "sample and noise from a secret of its own, the server its hospital sample and noise from a secret "
                 "of its own, never from the public seed; the audit log lists which hospitals took part in each "
                 "round, so its readers are trusted with that")
    doc.items(lines)
    columns = ["hospital", "mechanism", "unit", "epsilon", "delta", "budget", "steps", "rounds"]
    doc.table(privacy[columns])
    caps = {p["hospital"]: p["max_epsilon"] for p in run.start.get("policies", [])
            if "hospital" in p and "max_epsilon" in p}
    doc.figure("epsilon", figures.epsilon_by_hospital(privacy, caps), "Epsilon spent per hospital and mechanism")


def round_statuses(rounds: list[dict]) -> pd.DataFrame:
    """Each hospital's status in each round, as the round entries record it (``PARTICIPATION_CODES``'s names),
    with the reason where one was recorded."""
    rows = []
    for r in rounds:
        aggregation = r.get("aggregation", {})
        kept_out = {"rejected": r.get("rejected", {}), "dropped": r.get("dropped", {}),
                    "not selected": aggregation.get("not_selected", {}),
                    "left out without a reason": dict.fromkeys(aggregation.get("unexplained", []), "")}
        for h in r.get("sampled", []):
            status, reason = next(((s, str(why[h])) for s, why in kept_out.items() if h in why), ("aggregated", ""))
            rows.append({"round": r["round"], "hospital": h, "status": status, "reason": reason})
        rows += [{"round": r["round"], "hospital": h, "status": "excluded", "reason": str(why)}
                 for h, why in r.get("excluded", {}).items()]
    return pd.DataFrame(rows, columns=["round", "hospital", "status", "reason"])


def participation(doc: Doc, run: Run) -> None:
    """Who took part in each round and why not, then the final model per hospital with test sizes and intervals."""
    doc.h("Participation and per-hospital performance")
    part = round_statuses(run.rounds)
    if not part.empty:
        counts = part.pivot_table(index="hospital", columns="status", values="round", aggfunc="count",
                                  fill_value=0).reset_index()
        doc.table(counts)
        reasons = part[part.status != "aggregated"].groupby(["status", "reason"]).agg(
            rounds=("round", "nunique"), hospitals=("hospital", lambda h: ", ".join(sorted(set(h))))).reset_index()
        if not reasons.empty:
            doc.p("Every reply that was not aggregated, and why (as the component that decided recorded it):")
            doc.table(reasons)
        grid = part.assign(code=part.status.map(figures.PARTICIPATION_CODES).fillna(
            figures.PARTICIPATION_CODES["rejected"])).pivot_table(index="hospital", columns="round", values="code",
                                                                  aggfunc="max")
        hospitals = sorted(set(run.start.get("data_fingerprints", {})) | set(grid.index))
        doc.figure("participation", figures.participation_grid(grid.reindex(hospitals).fillna(0)),
                   "Who took part in each round")
    if run.evaluation.get("scopes"):
        per_hospital(doc, run.evaluation, figures)
    else:
        released_auroc(doc, run)
    withheld = sorted(set(run.start.get("data_fingerprints", {})) - set(run.metrics.scope))
    if withheld:
        doc.p(f"Withheld by policy (no metric released): {user(', '.join(withheld))}.")


def released_auroc(doc: Doc, run: Run) -> None:
    """Without an evaluation entry (a log from an older fedsim): the released per-hospital AUROCs only."""
    metrics = run.metrics
    per = metrics[(metrics.scope != "global") & (metrics.metric == "auroc")]
    last = per[per["round"] == per["round"].max()]
    last = last[last.value.map(np.isfinite).astype(bool)]
    if last.empty:
        doc.p("No per-hospital metrics released.")
        return
    doc.p(f"Final AUROC per hospital (no test sizes or intervals in this log): min {last.value.min():.3f} "
          f"({user(last.loc[last.value.idxmin(), 'scope'])}), median {last.value.median():.3f}, max "
          f"{last.value.max():.3f}. Global AUROC {number(run.final('auroc'), '.3f')}.")
    doc.figure("fairness", figures.auroc_by_hospital(last, run.final("auroc")), "Final AUROC per hospital")


def empirical_audit(doc: Doc, run: Run) -> None:
    """The canary audit's lower bound on epsilon beside the accountant's (when the run had one)."""
    rows = (run.audit or {}).get("rows") or run.table("privacy_audit").to_dict(orient="records")
    if not rows:
        return
    doc.h("Empirical privacy audit")
    doc.p("Canaries were inserted into this run and an auditor tried to tell which were in: the lower bound on "
          "epsilon below holds with the stated confidence (Steinke, Nasr & Jagielski 2023, one run; "
          "Mahloujifar, Melis & Chaudhuri 2024 for the f-DP bound, which assumes a Gaussian trade-off curve). "
          "A lower bound above the accountant's epsilon refutes the privacy claim; one below it does not prove "
          "the claim, it only fails to refute it. The audited run trained on its canaries: its model is not "
          "the one to release.")
    table = pd.DataFrame(rows)
    columns = [c for c in ("hospital", "technique", "level", "view", "method", "canaries", "guesses", "correct",
                           "epsilon_one_run", "epsilon_fdp", "epsilon_audited", "confidence", "epsilon_claimed",
                           "exceeded") if c in table]
    doc.table(table[columns])
    if "level" in table and (table.level == "record").any():
        doc.p("Record canaries: the audited hospital set as many of its own rows aside as it holds canaries, and "
              "is charged at the highest sampling rate its batches can then have: its epsilon above is higher "
              "than the other hospitals' for that reason.")
    statement = (run.audit or {}).get("statement")
    if statement:
        doc.p(f"Verdict: **{user(statement)}**.")


def requirements(doc: Doc, run: Run, require: str | None) -> None:
    """Whether the run meets stated constraints on its final AUROC and its epsilon per unit (largest over
    hospitals; a hospital-level guarantee also bounds each record)."""
    if not require:
        return
    privacy = run.table("privacy", numbers=PRIVACY_NUMBERS)

    def largest(unit: str) -> float:
        rows = privacy[privacy.unit == unit] if len(privacy) else privacy
        return float(rows.epsilon.max()) if len(rows) and rows.epsilon.notna().any() else math.inf

    row = {"candidate": run.start.get("label", "this run"), "auroc": run.final("auroc"),
           "epsilon_record": min(largest("record"), largest("hospital")), "epsilon_hospital": largest("hospital")}
    constraints = resolve_units(pd.DataFrame([row]), parse(require, list(row)[1:]))
    found = recommend(pd.DataFrame([row]), constraints).iloc[0]
    doc.h("Recommendation")
    doc.p(f"Stated constraints: {user('; '.join(map(str, constraints)))}. This run "
          + ("**meets them all**." if found.meets else f"**does not meet them**: {user(found.missed)}.")
          + " Compare candidate set-ups with `fedsim assess` for a choice between them.")


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
        f"**Data**: {user(_data_name(run))} (see Data); {len(prints)} hospitals, "
        f"{sum(p.get('n_train', 0) for p in prints.values())} training records; fingerprints in the audit log",
        f"**Evaluation** (pooled held-out test splits, final round): {final}",
        "**Intended use**: research and teaching on federated learning privacy and security; "
        "not for clinical decisions (synthetic or unvalidated data, no prospective evaluation)",
    ])


def _data_name(run: Run) -> str:
    """The data in a few words: the synthetic scenario, the user's table, or what the configuration says."""
    d = run.start.get("data", {})
    if d.get("source") == "synthetic":
        return f"synthetic scenario {d.get('scenario', '?')}"
    if d:
        return f"the user's own {'images' if d.get('images') else 'table'} ({d.get('name', 'custom')})"
    return str(run.start.get("config", {}).get("federation", NA))


def caveats(doc: Doc, run: Run) -> None:
    """What the reader must keep in mind, from what this run did (nothing said that does not apply)."""
    doc.h("Caveats")
    found = []
    if run.start.get("data", {}).get("source") == "synthetic":
        found.append("the data are synthetic: the numbers show how the set-up behaves, not how a model would "
                     "perform on real patients")
    attacks = [a for threat in ("poisoning", "backdoor", "free-riding") for a in run.posing(threat)
               if a.get("family") != "attack"]
    if attacks:
        found.append(f"attacks shaped this model ({user(', '.join(sorted({a['title'] for a in attacks})))}): its "
                     "metrics are those of an attacked federation")
    if any(c.get("spends_epsilon") for c in run.of_family("privacy")):
        found.append("DP noise shaped this model: its accuracy is the price of the privacy statement")
    if run.of_family("audit") or run.audit:
        found.append("an empirical audit inserted canaries: this run's model trained on them")
    threats = threat_rows(run, None)
    unmeasured = [t for t, risk in zip(threats["threat"], threats["residual risk (measured)"])
                  if str(risk).startswith("not measured")]
    if unmeasured:
        found.append(f"not measured in this run: {user(', '.join(unmeasured))} (no attack posing them ran; "
                     "`fedsim assess` runs one per threat)")
    few = [h for h, s in run.evaluation.get("scopes", {}).items() if h != "global" and s.get("events", 0) < 10]
    if few:
        found.append(f"small test splits (fewer than 10 events): {user(', '.join(few))}")
    if run.verification.signatures.startswith("unsigned"):
        found.append("the audit log is unsigned: it shows the file is internally consistent, not who wrote it")
    if (run.ended or {}).get("status") != "completed":
        found.append("the run did not complete: the log ends early")
    doc.items(found or ["none specific to this run"])


def report(results_dir: str | os.PathLike, baseline: str | os.PathLike | None = None,
           key: AuditKey | None = None, out: str | os.PathLike | None = None,
           allow_tampered: bool = False, owner: str | None = None, require: str | None = None) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/``) and a self-contained ``report.html``; return their paths.

    ``key`` checks the logs' signatures. A log (of the run or of the baseline)
    that fails verification raises ValueError, unless ``allow_tampered=True``:
    the report then opens with a banner saying so and listing the problems.
    ``owner``: who prepares (and signs) the report. ``require``: constraints
    such as ``"epsilon_record<=8, auroc>=0.80"`` for the recommendation.
    """
    check("allow_tampered", allow_tampered, Boolean())
    check("owner", owner, Text(), NoneValue())
    check("require", require, Text(), NoneValue())
    run = Run.load(results_dir, key, allow_tampered=allow_tampered)
    base = Run.load(baseline, key, "baseline", allow_tampered) if baseline is not None else None
    out = Path(out) if out is not None else run.folder
    with sns.axes_style("whitegrid"), matplotlib.rc_context({"figure.max_open_warning": 0,
                                                              "text.parse_math": False}):
        doc = build_assessment(run, owner, require) if run.is_assessment else build(run, base, owner, require)
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


def build(run: Run, baseline: Run | None = None, owner: str | None = None, require: str | None = None) -> Doc:
    """The report of one run as a Doc (render it with ``.markdown()`` or ``.html()``)."""
    doc = Doc(f"Risk report: {run.start.get('label', run.folder.name)}")
    banners(doc, run, baseline)
    refuted_banner(doc, (run.audit or {}).get("rows") or run.table("privacy_audit").to_dict(orient="records"))
    about(doc, run, owner, "Run")
    data(doc, run)
    audit_log(doc, run)

    doc.h("Threat model")
    doc.p("Each threat, the mitigations active in this experiment (a component is listed only where its settings "
          "make it act against that threat), and the residual risk as measured by the attacks actually run in it "
          "(\"not measured\" where none was).")
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
    empirical_audit(doc, run)
    participation(doc, run)
    calibration(doc, run.evaluation, figures)

    doc.h("Institution policies")
    policies = pd.DataFrame(run.start.get("policies", []))
    doc.table(policies[[c for c in ("hospital", "max_epsilon", "min_records", "evaluate", "share_metrics")
                        if c in policies]], empty="no institution policies")
    doc.p("Enforcements (each one is also an entry of the audit log):")
    doc.table(pd.DataFrame(run.policy, columns=["round", "hospital", "policy", "action", "detail"]),
              empty="no enforcement")
    model_card(doc, run)
    caveats(doc, run)
    requirements(doc, run, require)
    return doc


__all__ = ["Doc", "Run", "build", "report"]
