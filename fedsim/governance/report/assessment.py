"""The report of an assessment (``fedsim assess``): the decision table, a recommendation, each candidate's risks.

Everything comes from the assessment's own audit log: its start entry (data,
candidates as their components describe themselves, threats, seeds, owner,
constraints), one entry per candidate (its decision row, per-hospital
evaluation, privacy ledger, audit, attack rows, runs with the head hash of
each run's own log) and the decision table. A threat the assessment ran is
always stated as measured; one it could not run says why.
"""

import math

import pandas as pd

from fedsim.governance.report.document import Doc, number, user
from fedsim.governance.report.recommend import parse, recommend
from fedsim.governance.report.run_log import Run, title
from fedsim.governance.report.sections import about, audit_log, banners, data, per_hospital, refuted_banner
from fedsim.plots import plot_decision
from fedsim.plots import report as figures

SHOWN = {"candidate": "candidate", "auroc": "AUROC", "auroc_low": "AUROC low", "auroc_high": "AUROC high",
         "epsilon_record": "epsilon (record)", "epsilon_hospital": "epsilon (hospital)",
         "epsilon_audited": "epsilon audited", "audit_level": "audit level", "audit_refuted": "claim refuted",
         "leakage_psnr": "inversion PSNR", "leakage_record_error": "inversion record error",
         "mia_tpr@0.1%fpr": "MIA TPR@0.1%FPR", "auroc_poisoned": "AUROC poisoned",
         "backdoor_success": "backdoor success", "auroc_dropout": "AUROC dropout", "compute_cost": "compute x",
         "communication_cost": "communication x", "pays_most": "pays most"}
BATTERY = {"update leakage": "leakage", "poisoning": "poisoning", "backdoor": "backdoor", "dropout": "dropout"}


def _value(row: dict, key: str) -> float:
    try:
        return float(row.get(key))
    except (TypeError, ValueError):
        return math.nan


def residual(entry: dict, threats: list[str], reference: dict) -> dict[str, str]:
    """{threat: what the assessment measured for this candidate} (or why it was not measured)."""
    row = entry.get("row", {})
    skipped = {s.get("battery"): s.get("reason", "") for s in entry.get("skipped", [])}
    said = {}
    for threat in ("update leakage", "membership inference", "poisoning", "backdoor", "dropout"):
        if threat not in threats:
            said[threat] = "not assessed (not among the threats asked for)"
            continue
        battery = BATTERY.get(threat)
        if battery in skipped:
            said[threat] = f"not measured: this set-up cannot host the attack ({skipped[battery]})"
        elif threat == "update leakage":
            psnr, error = _value(row, "leakage_psnr"), _value(row, "leakage_record_error")
            said[threat] = (f"gradient inversion of one update: PSNR {psnr:.1f} dB" if math.isfinite(psnr) else
                            f"gradient inversion of one update: worst feature error {error:.0%} of its range"
                            if math.isfinite(error) else "gradient inversion ran; the update could not be used")
        elif threat == "membership inference":
            said[threat] = (f"RMIA on the final model: TPR {number(_value(row, 'mia_tpr@0.1%fpr'), '.3f')} at "
                            f"0.1% FPR, AUC {number(_value(row, 'mia_auc'), '.3f')}")
        elif threat == "poisoning":
            said[threat] = (f"AUROC {number(_value(row, 'auroc_poisoned'), '.3f')} with one hospital in four "
                            f"flipping its update (clean {number(_value(row, 'auroc'), '.3f')})")
        elif threat == "backdoor":
            said[threat] = f"backdoor success {number(_value(row, 'backdoor_success'), '.0%')} (model replacement)"
        else:
            said[threat] = (f"AUROC {number(_value(row, 'auroc_dropout'), '.3f')} with 30% of replies lost "
                            f"(clean {number(_value(row, 'auroc'), '.3f')})")
    return said


def mitigations(components: list[dict]) -> str:
    """The components of a candidate that act against some threat, with the threats (from their metadata)."""
    found = [f"{title(c)} ({', '.join(c.get('threats', []))})" for c in components
             if c.get("role") == "mitigation" and c.get("threats")]
    return "; ".join(found) or "none"


def recommendation(doc: Doc, table: pd.DataFrame, require: str | None) -> None:
    """Which candidate meets which stated constraint, and the one to choose if any meets them all."""
    doc.h("Recommendation")
    if not require:
        doc.p("No constraints were stated (give them with `fedsim report --require \"epsilon<=8, auroc>=0.80\"` "
              "or `require:` in the assessment's config): the decision table above is the comparison.")
        return
    try:
        constraints = parse(require, list(table.columns))
    except ValueError as error:
        doc.p(f"The stated constraints cannot be read: {user(error)}.")
        return
    found = recommend(table, constraints)
    doc.p(f"Stated constraints: {user('; '.join(map(str, constraints)))}. A value that was not measured meets "
          "no constraint; without differential privacy epsilon is infinite.")
    doc.table(found.assign(meets=found.meets.map({True: "yes", False: "no"})))
    meeting = found[found.meets]
    if len(meeting):
        best = meeting.iloc[0]
        others = ", ".join(meeting.candidate.iloc[1:])
        doc.p(f"**Recommended: {user(best.candidate)}**: it meets every constraint with the highest AUROC "
              f"among those that do ({number(best.auroc, '.3f')})"
              + (f"; also meeting them: {user(others)}." if others else "."))
    else:
        closest = found.assign(n=found.missed.str.count(";")).sort_values(["n", "auroc"], ascending=[True, False])
        doc.p(f"**No candidate meets every constraint.** Closest: {user(closest.candidate.iloc[0])} "
              f"(misses {user(closest.missed.iloc[0])}). Relax a constraint or add a candidate.")


def build_assessment(run: Run, owner: str | None = None, require: str | None = None) -> Doc:
    """The report of an assessment as a Doc."""
    entries = {c["label"]: c for c in run.candidates}
    decision = pd.DataFrame((run.result or {}).get("decision", [c.get("row", {}) for c in entries.values()]))
    doc = Doc(f"Decision report: {run.start.get('label', 'assessment')}")
    banners(doc, run, None)
    for label, entry in entries.items():
        refuted_banner(doc, entry.get("audit", []), label)
    about(doc, run, owner, "Assessment")
    data(doc, run)
    audit_log(doc, run)
    threats = run.start.get("threats", [])
    seeds = run.start.get("seeds", [])
    doc.h("Decision table")
    doc.p(f"Each candidate set-up and plain FedAvg (the reference) over {len(seeds)} seed(s), against the attacks "
          f"{user(', '.join(threats) or 'none')} run for real, and a canary audit of each candidate's epsilon "
          "(first seed). AUROC: mean over seeds, with a 95% percentile bootstrap interval over test patients. "
          "Costs are relative to plain FedAvg: compute from the runs' wall time on the assessing machine, "
          "communication from the bytes of every message of a round.")
    for c in decision.columns:  # the log writes non-finite numbers as "nan" and "inf"
        if c not in ("candidate", "audit_level", "pays_most"):
            decision[c] = pd.to_numeric(decision[c], errors="coerce")
    if not decision.empty and "candidate" in decision:
        doc.table(decision[[c for c in SHOWN if c in decision]].rename(columns=SHOWN))
        if all(c in decision for c in ("auroc", "auroc_low", "auroc_high")):
            doc.figure("decision", plot_decision(decision), "The candidates side by side")
    if "candidate" in decision:
        recommendation(doc, decision, require or run.start.get("require"))

    reference = entries.get("plain FedAvg", {}).get("row", {})
    doc.h("Residual risk per threat (measured)")
    rows = []
    for label, entry in entries.items():
        said = residual(entry, threats, reference)
        rows += [{"candidate": label, "threat": threat, "mitigations active": mitigations(
            [c for c in entry.get("components", []) if threat in c.get("threats", [])]),
            "residual risk (measured)": risk} for threat, risk in said.items()]
    doc.table(pd.DataFrame(rows), empty="no candidate in the log")

    doc.h("Privacy: accountant and audit")
    rows = []
    for label, entry in entries.items():
        for audit in entry.get("audit", []) or [{}]:
            row = entry.get("row", {})
            rows.append({"candidate": label, "epsilon (accountant, largest)": _value(row, "epsilon"),
                         "audit level": audit.get("level", ""), "canaries": audit.get("canaries"),
                         "epsilon audited (f-DP)": audit.get("epsilon_fdp"),
                         "epsilon audited (one-run)": audit.get("epsilon_one_run"),
                         "claim audited": audit.get("epsilon_claimed"),
                         "refuted": {True: "YES", False: "no"}.get(audit.get("exceeded"), "not audited")})
    doc.table(pd.DataFrame(rows), empty="no audit in the log")
    doc.p("An audited lower bound above the accountant's epsilon refutes the claim; a bound below it fails to "
          "refute it, nothing more. Canary records in a few tabular features give weak bounds whatever the "
          "mechanism; canary hospitals and updates, random directions of the whole model, give strong ones.")

    doc.h("Per-candidate performance")
    for i, (label, entry) in enumerate(entries.items()):
        doc.h(f"{label}", level=3)
        hospitals = pd.DataFrame(entry.get("hospitals", []))
        per_hospital(doc, entry.get("evaluation", {}), figures, name=f"auroc_intervals_{i}")
        if not hospitals.empty and label != "plain FedAvg":
            doc.table(hospitals[[c for c in ("hospital", "auroc", "reference_auroc", "change") if c in hospitals]]
                      .sort_values("change") if "change" in hospitals else hospitals)
        runs = pd.DataFrame(entry.get("runs", []))
        if not runs.empty:
            doc.p(f"{len(runs)} runs, each with its own audit log (head hashes in this log).")

    doc.h("Caveats")
    lines = []
    if run.start.get("data", {}).get("source") == "synthetic":
        lines.append("the data are synthetic: the comparison shows how the set-ups behave, not clinical performance")
    lines.append(f"{len(seeds)} seed(s): differences smaller than the AUROC intervals are not resolved")
    lines.append("compute cost is wall time on the assessing machine, measured when each run first ran")
    lines.append("the audits inserted canaries into separate runs; the attacks are fedsim's standard battery, "
                 "not the strongest attack possible against each set-up")
    skipped = [f"{label}: {s.get('battery')}" for label, e in entries.items() for s in e.get("skipped", [])]
    if skipped:
        lines.append(f"attacks not run (the set-up cannot host them): {user('; '.join(skipped))}")
    if run.verification.signatures.startswith("unsigned"):
        lines.append("the assessment's audit log is unsigned")
    doc.items([user(line) if not line.startswith("attacks not run") else line for line in lines])
    return doc
