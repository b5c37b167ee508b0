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
from fedsim.governance.report.recommend import parse, recommend, resolve_units
from fedsim.governance.report.run_log import Run, title
from fedsim.governance.report.sections import about, audit_log, banners, data, per_hospital, refuted_banner
from fedsim.plots import plot_decision
from fedsim.plots import report as figures

# Each criterion of the decision table as a person reads it: what, in which unit, and which way is better.
SHOWN = {"auroc": "AUROC, mean over seeds (higher is better)",
         "auroc_interval": "AUROC 95% interval",
         "epsilon_record": "ε per patient record, accountant (lower is better)",
         "epsilon_hospital": "ε per hospital, accountant (lower is better)",
         "epsilon_audited_record": "ε per patient record, audited lower bound",
         "epsilon_audited_hospital": "ε per hospital, audited lower bound",
         "audit_claim": "ε the audit tested (its canary hospital's)",
         "audit_refuted": "claim refuted by the audit",
         "leakage_psnr": "gradient inversion PSNR, dB (lower is better)",
         "leakage_record_error": "gradient inversion worst feature error (higher is better)",
         "mia_tpr@0.1%fpr": "membership TPR at 0.1% FPR (lower is better)",
         "mia_auc": "membership AUC (0.5 is chance; lower is better)",
         "auroc_poisoned": "AUROC with a poisoning hospital (higher is better)",
         "backdoor_success": "backdoor success (lower is better)",
         "auroc_dropout": "AUROC with 30% of replies lost (higher is better)",
         "compute_cost": "compute: training FLOPs x plain FedAvg (lower is better)",
         "communication_cost": "communication: bytes x plain FedAvg (lower is better)",
         "wall_time_cost": "wall time x plain FedAvg, this machine (lower is better)",
         "pays_most": "hospital paying most (its AUROC change)"}
BATTERY = {"update leakage": "leakage", "poisoning": "poisoning", "backdoor": "backdoor", "dropout": "dropout"}


def readable(decision: pd.DataFrame, skipped: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The decision table turned for reading and printing: one row per criterion (``SHOWN``), one column per
    candidate; ∞ as ∞, a value that was not measured as "not measured", or "not run: <why>" where the set-up could
    not host the attack (``skipped``: {candidate: {battery: reason}})."""
    battery = {"leakage_psnr": "leakage", "leakage_record_error": "leakage", "auroc_poisoned": "poisoning",
               "backdoor_success": "backdoor", "auroc_dropout": "dropout"}
    columns = {}
    for row in decision.to_dict(orient="records"):
        cells = {}
        for key, label in SHOWN.items():
            if key == "auroc_interval":
                cells[label] = f"{_cell(row.get('auroc_low'))} to {_cell(row.get('auroc_high'))}"
            elif key == "pays_most":
                cells[label] = (f"{row.get('pays_most')} ({_cell(row.get('pays_most_change'), '+.3f')})"
                                if row.get("pays_most") else "nobody loses AUROC")
            elif key == "audit_refuted":
                cells[label] = "not audited" if math.isnan(_value(row, "audit_claim")) else (
                    "YES" if row.get(key) in (True, "True", "true") else "no")
            else:
                why = skipped.get(row["candidate"], {}).get(battery.get(key, ""), "")
                cells[label] = "not run: cannot host the attack" if why else _cell(row.get(key))
        columns[str(row["candidate"])] = cells
    frame = pd.DataFrame(columns)
    return frame.rename_axis("criterion").reset_index()


def _cell(value, fmt: str = ".3g") -> str:
    value = _value({"v": value}, "v")
    return "not measured" if math.isnan(value) else "∞" if math.isinf(value) else format(value, fmt)


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
    """Which candidate meets which stated constraint (each tested on its interval's conservative end), the one to
    choose if any meets them all, and the threats not measured for it."""
    doc.h("Recommendation")
    if not require:
        doc.p("No constraints were stated (give them with `fedsim report --require \"epsilon_record<=8, "
              "auroc>=0.80\"` or `require:` in the assessment's config): the decision table above is the comparison.")
        return
    try:
        constraints = resolve_units(table, parse(require, list(table.columns)))
        found = recommend(table, constraints)
    except ValueError as error:
        doc.p(f"The stated constraints cannot be applied: {user(error)}.")
        return
    doc.p(f"Stated constraints: {user('; '.join(map(str, constraints)))}. Each is tested on the conservative end "
          "of its value's 95% interval where there is one (AUROC on its low end). A value that was not measured "
          "meets no constraint; without differential privacy at a unit, epsilon is infinite there.")
    shown = found.assign(meets=found.meets.map({True: "yes", False: "no"}),
                         not_measured=found.not_measured.replace("", "none"))
    doc.table(shown.rename(columns={"not_measured": "threats not measured"}))
    meeting = found[found.meets]
    if len(meeting):
        best = meeting.iloc[0]
        others = ", ".join(meeting.candidate.iloc[1:])
        gaps = (f" **Not measured for it: {user(best.not_measured)}**: the constraints say nothing about those "
                "threats, so this recommendation does not cover them." if best.not_measured else "")
        doc.p(f"**Recommended: {user(best.candidate)}**: it meets every constraint with the highest AUROC "
              f"among those that do ({number(best.auroc, '.3f')}, the mean over seeds)"
              + (f"; also meeting them: {user(others)}." if others else ".") + gaps)
    else:
        closest = found.assign(n=found.missed.str.count(";")).sort_values(["n", "auroc"], ascending=[True, False])
        doc.p(f"**No candidate meets every constraint.** Closest: {user(closest.candidate.iloc[0])} "
              f"(misses {user(closest.missed.iloc[0])}). Relax a constraint or add a candidate.")


def build_assessment(run: Run, owner: str | None = None, require: str | None = None) -> Doc:
    """The report of an assessment as a Doc."""
    entries = {c["label"]: c for c in run.candidates}
    doc = Doc(f"Decision report: {run.start.get('label', 'assessment')}")
    banners(doc, run, None)
    for label, entry in entries.items():
        refuted_banner(doc, entry.get("audit", []), label)
    about(doc, run, owner, "Assessment")
    data(doc, run)
    audit_log(doc, run)
    threats = run.start.get("threats", [])
    seeds = run.start.get("seeds", [])
    decision_section(doc, run, entries, threats, seeds, require)
    residual_section(doc, entries, threats)
    privacy_section(doc, entries)
    candidates_section(doc, entries)
    caveats_section(doc, run, entries, seeds)
    return doc


def decision_section(doc: Doc, run: Run, entries: dict, threats: list, seeds: list, require: str | None) -> None:
    """The decision table (readable, with its figure) and the recommendation for ``require``."""
    decision = pd.DataFrame((run.result or {}).get("decision", [c.get("row", {}) for c in entries.values()]))
    doc.h("Decision table")
    doc.p(f"Each candidate set-up and plain FedAvg (the reference) over {len(seeds)} seed(s), against the attacks "
          f"{user(', '.join(threats) or 'none')} run for real, and a canary audit of each candidate's epsilon "
          "(first seed). AUROC: mean over seeds, with a 95% percentile bootstrap interval over test patients. "
          "Epsilons are per unit: per patient record (a hospital-level guarantee bounds it too) and per hospital, "
          "each the largest over hospitals; ∞ where no DP protects that unit. Costs are relative to plain FedAvg: "
          "compute as training FLOPs (local steps x model size), communication as the bytes of every message; "
          "wall time on the assessing machine is an extra.")
    for c in decision.columns:  # the log writes non-finite numbers as "nan" and "inf"
        if c not in ("candidate", "pays_most"):
            decision[c] = pd.to_numeric(decision[c], errors="coerce")
    if not decision.empty and "candidate" in decision:
        skipped = {label: {s.get("battery"): s.get("reason", "") for s in e.get("skipped", [])}
                   for label, e in entries.items()}
        doc.table(readable(decision, skipped))
        if all(c in decision for c in ("auroc", "auroc_low", "auroc_high")):
            doc.figure("decision", plot_decision(decision), "The candidates side by side")
    if "candidate" in decision:
        recommendation(doc, decision, require or run.start.get("require"))


def residual_section(doc: Doc, entries: dict, threats: list) -> None:
    """Each candidate's measured residual risk per threat, beside the mitigations it has for it."""
    reference = entries.get("plain FedAvg", {}).get("row", {})
    doc.h("Residual risk per threat (measured)")
    rows = []
    for label, entry in entries.items():
        said = residual(entry, threats, reference)
        rows += [{"candidate": label, "threat": threat, "mitigations active": mitigations(
            [c for c in entry.get("components", []) if threat in c.get("threats", [])]),
            "residual risk (measured)": risk} for threat, risk in said.items()]
    doc.table(pd.DataFrame(rows), empty="no candidate in the log")


def privacy_section(doc: Doc, entries: dict) -> None:
    """Each candidate's accountant epsilons per unit beside its audit's lower bounds."""
    doc.h("Privacy: accountant and audit")
    rows = []
    for label, entry in entries.items():
        for audit in entry.get("audit", []) or [{}]:
            row = entry.get("row", {})
            rows.append({"candidate": label, "ε per record (accountant, largest)": _value(row, "epsilon_record"),
                         "ε per hospital (accountant, largest)": _value(row, "epsilon_hospital"),
                         "audit level": audit.get("level", "not audited"), "audited hospital": audit.get("hospital"),
                         "canaries": audit.get("canaries"), "ε audited (f-DP)": audit.get("epsilon_fdp"),
                         "ε audited (one-run)": audit.get("epsilon_one_run"),
                         "ε the audit tested": audit.get("epsilon_claimed"),
                         "refuted": {True: "YES", False: "no"}.get(audit.get("exceeded"), "not audited")})
    doc.table(pd.DataFrame(rows), empty="no audit in the log")
    doc.p("An audited lower bound above the accountant's epsilon refutes the claim; a bound below it fails to "
          "refute it, nothing more. The ε the audit tested is the accountant's epsilon of the audited hospital in "
          "the audit's own run, at the audit's level: canaries change that hospital's rows (record level) or add "
          "canary hospitals (hospital level), so it can differ from the clean run's largest epsilon beside it. "
          "Canary records in a few tabular features give weak bounds whatever the mechanism; canary hospitals "
          "and updates, random directions of the whole model, give strong ones.")


def candidates_section(doc: Doc, entries: dict) -> None:
    """Each candidate's model hospital by hospital, with its change against plain FedAvg."""
    doc.h("Per-candidate performance")
    doc.p("Each candidate's first seed's model, hospital by hospital (the decision table's AUROC is the mean over "
          "seeds; with one seed they are the same model). The per-hospital changes are means over seeds.")
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


def caveats_section(doc: Doc, run: Run, entries: dict, seeds: list) -> None:
    """What the decision does not show."""
    doc.h("Caveats")
    lines = []
    if run.start.get("data", {}).get("source") == "synthetic":
        lines.append("the data are synthetic: the comparison shows how the set-ups behave, not clinical performance")
    lines.append(f"{len(seeds)} seed(s): differences smaller than the AUROC intervals are not resolved")
    lines.append("compute cost counts training FLOPs only (no server-side work, no SecAgg+ cryptography: see "
                 "communication and wall time); wall time was measured on the assessing machine when each run "
                 "first ran")
    lines.append("the audits inserted canaries into separate runs; the attacks are fedsim's standard battery, "
                 "not the strongest attack possible against each set-up")
    skipped = [f"{label}: {s.get('battery')}" for label, e in entries.items() for s in e.get("skipped", [])]
    if skipped:
        lines.append(f"attacks not run (the set-up cannot host them): {user('; '.join(skipped))}")
    if run.verification.signatures.startswith("unsigned"):
        lines.append("the assessment's audit log is unsigned")
    doc.items([user(line) if not line.startswith("attacks not run") else line for line in lines])
