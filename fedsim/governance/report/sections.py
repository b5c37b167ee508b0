"""The report's sections shared by a single run and an assessment: who, when, what data, the log, performance.

Every string that comes from the log goes through ``user`` / ``known`` /
``code`` (paragraphs, list items) or into a table cell (escaped by the
renderer). Intervals: AUROC, DeLong 95% over the test
patients (``fedsim.governance.evaluation``); event rates, Wilson 95%.
"""

import math

import pandas as pd

from fedsim.governance.evaluation import DETAILED_HOSPITALS
from fedsim.governance.report.document import NA, Doc, code, known, number, user
from fedsim.governance.report.run_log import Run

SIGN_OFF = "Sign-off: ______________________ (name, role, date)"
MIN_EVENTS = 10  # fewer outcome events than this in a test split: its AUROC interval is wide, say so
PREPROCESSING = {  # how the preprocessor (standardisation, imputation, categories) was fitted, and what that shows
    "pooled": "**Preprocessing**: fitted on the pooled training records of all hospitals, which a real deployment "
              "cannot do (its server never sees records); `preprocessing=\"federated\"` fits it from per-hospital "
              "statistics",
    "federated": "**Preprocessing**: fitted from each hospital's summary statistics of its training records, which "
                 "the server sees: per column, the hospital's counts of values and of missing values, their means "
                 "and variances (sums and sums of squares), and the set of categories it has (a rare category can "
                 "single out one of its patients)",
}
HELD_BY_HOSPITALS = (  # a Flower runtime: each hospital holds its own rows only, and evaluates on them itself
    "**Where the records are**: each hospital loaded and kept its own records only; the server held none. In a "
    "first round each hospital told the server its record counts, its outcome events among its training records, "
    "a SHA-256 fingerprint of its rows and the preprocessing statistics above. **Evaluation**: each hospital "
    "evaluated every global model on its own test records and sent the server each test patient's predicted risk "
    "and outcome (no features, no identifiers), because a pooled AUROC ranks every patient's risk against every "
    "other hospital's patients and cannot be combined from per-hospital figures")


def banners(doc: Doc, run: Run, baseline: Run | None) -> None:
    """A prominent warning for each log that failed verification, listing its problems."""
    for name, r in (("this run", run), ("the baseline", baseline)):
        if r is not None and not r.verification.ok:
            v = r.verification
            more = [f"... and {v.more_problems} more problems"] if v.more_problems else []
            doc.warning(f"**WARNING: the audit log of {name} FAILED verification ({v.tally}): it is not "
                        "the log the run wrote, and nothing in this report can be trusted.**",
                        [user(f"line {p['line']}: {p['problem']}: {p['detail']}") for p in v.problems] + more)


def refuted_banner(doc: Doc, rows: list[dict], where: str = "this run") -> None:
    """The loud flag of an audit whose lower bound exceeds the accountant's epsilon."""
    refuted = [r for r in rows if r.get("exceeded")]
    if refuted:
        doc.warning(f"**PRIVACY CLAIM REFUTED in {user(where)}: the empirical audit's lower bound on epsilon "
                    "exceeds the accountant's epsilon. The mechanism, or its accounting, does not deliver the "
                    "privacy it states; do not sign the privacy statement.**",
                    [f"{user(r.get('technique') or 'no DP')} ({user(r.get('level', '?'))} level): epsilon >= "
                     f"{number(r.get('epsilon_audited'), '.3g')} at {number(r.get('confidence'), '.0%')} "
                     f"confidence, accountant's epsilon {number(r.get('epsilon_claimed'), '.3g')}" for r in refuted])


def about(doc: Doc, run: Run, owner: str | None, what: str) -> None:
    """Who prepared the report, about what, when, with what software and configuration."""
    versions = run.start.get("versions", {})
    config_hash = run.start.get("config_hash")
    owner = owner or run.start.get("owner")
    ended = (run.ended or {}).get("status")
    doc.h("About this report")
    doc.items([
        f"**{user(what)}**: {user(run.start.get('label', run.folder.name))}, started "
        f"{user(run.started.replace('T', ' ')[:19] + ' UTC') if run.started else NA}; "
        f"{'completed' if ended == 'completed' else user(ended) if ended else 'incomplete (no closing entry)'}",
        f"**Prepared by**: {user(owner)}" if owner else
        "**Prepared by**: not stated (give `fedsim report --owner NAME`)",
        SIGN_OFF,
        f"**Software**: fedsim {known(versions.get('fedsim'))}, Flower {known(versions.get('flwr'))}, "
        f"TensorFlow {known(versions.get('tensorflow'))}, Python {known(versions.get('python'))}",
        f"**Configuration hash**: {code(config_hash[:16]) if config_hash else NA} (SHA-256 of the resolved "
        "configuration recorded in the audit log)",
        f"**Results folder**: {code(run.folder)}",
    ])


def data(doc: Doc, run: Run) -> None:
    """The data's provenance, in words."""
    d = run.start.get("data", {})
    doc.h("Data")
    if not d:
        doc.p(f"Provenance not recorded in the log; the configuration names the data "
              f"{known(run.start.get('config', {}).get('federation'))}.")
        return
    hospitals, train, test = d.get("n_hospitals"), d.get("n_train"), d.get("n_test")
    sizes = (f"{known(hospitals)} hospitals, {known(train)} training and {known(test)} test records "
             f"({known(d.get('events_train'))} outcome events among the training records)")
    if d.get("source") == "synthetic":
        knobs = {k: v for k, v in d.get("knobs", {}).items() if k != "image_size"}
        shift = (", ".join(f"{user(k)} {v:g}" for k, v in knobs.items()) if knobs
                 else "none (every hospital drawn from the same population)")
        lines = [f"**Synthetic data, not real patients**: scenario {code(d.get('scenario', '?'))}"
                 + (f" ({user(d['title'])})" if d.get("title") else "")
                 + f" of fedsim's generator ({code('data_synthetic')}), generator seed {known(d.get('seed'))}",
                 f"**Size**: {sizes}; {number(d.get('test_size'), '.0%')} of each hospital's patients held out "
                 "for testing",
                 f"**Heterogeneity between hospitals**: {shift}",
                 f"**Outcome**: {code(d.get('target', '?'))}"]
    else:
        columns = d.get("columns", [])
        shown = ", ".join(code(c) for c in columns[:30]) + (f" and {len(columns) - 30} more" if len(columns) > 30
                                                            else "")
        lines = [f"**{'The user’s own images' if d.get('images') else 'The user’s own table'}**: "
                 f"{user(d.get('name', 'custom'))}",
                 f"**Size**: {sizes}",
                 f"**Outcome column** {code(d.get('target', '?'))}, **site column** {code(d.get('site', '?'))}",
                 f"**Feature columns** ({len(columns)}): {shown or NA}"]
    lines += [PREPROCESSING[d["preprocessing"]]] if d.get("preprocessing") in PREPROCESSING else []
    if run.start.get("config", {}).get("engine") in ("deployment", "simulation"):
        lines.append(HELD_BY_HOSPITALS)
    doc.items(lines)
    committed_sizes(doc, run)


SIZE_QUESTION = 10  # a committed size this many times the median: a question for the data-sharing agreement


def committed_sizes(doc: Doc, run: Run) -> None:
    """Each hospital's committed training rows (the roster), and which are far from the others' (a question, not a
    rejection: every reply is checked against its own hospital's commitment)."""
    sizes = pd.Series({h: f.get("n_train") for h, f in run.start.get("data_fingerprints", {}).items()}, dtype=float)
    sizes = sizes.dropna()
    if sizes.empty:
        return
    median = float(sizes.median())
    far = sizes[(sizes > SIZE_QUESTION * median) | (sizes < median / SIZE_QUESTION)]
    text = (f"Committed training rows per hospital: {number(sizes.min(), '.0f')} to {number(sizes.max(), '.0f')} "
            f"(median {number(median, '.0f')}). Each reply must claim exactly its hospital's committed count, so a "
            "size weighs in FedAvg only as committed. ")
    if far.empty:
        text += f"No hospital is more than {SIZE_QUESTION}x from the median."
    else:
        text += (f"Worth a question in the data-sharing agreement (more than {SIZE_QUESTION}x from the median, "
                 f"not rejected for it): " + ", ".join(f"{user(h)} ({number(n, '.0f')})" for h, n in far.items())
                 + ".")
    doc.p(text)


def audit_log(doc: Doc, run: Run) -> None:
    """The log's verification status, what its signatures show (the unsigned warning), its problems and notes."""
    v = run.verification
    doc.h("Audit log")
    count = f": {v.tally}" if not v.ok else ""
    doc.p(f"Audit log verification: **{v.status}**{count} ({v.entries} entries, head {code(v.head[:16])}; "
          f"{user(v.signatures)}).")
    if v.problems:
        doc.table(pd.DataFrame(v.problems))
    if v.notes:
        doc.items([user(n) for n in v.notes])


def interval(low, high, fmt: str = ".2f") -> str:
    """``[low, high]``, or empty when the interval is not available."""
    ok = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (low, high))
    return f"[{low:{fmt}}, {high:{fmt}}]" if ok else ""


def evaluation_table(evaluation: dict) -> pd.DataFrame:
    """One row per scope: test size, events, base rate (Wilson interval), AUROC (DeLong interval), AUPRC,
    calibration in the large (mean predicted risk vs the observed rate), Brier."""
    rows = []
    for scope, s in evaluation.get("scopes", {}).items():
        rows.append({
            "scope": scope, "test patients": s.get("n_test"), "events": s.get("events"),
            "base rate [95% Wilson]": f"{s.get('base_rate', math.nan):.3f} "
                                      f"{interval(s.get('event_rate_low'), s.get('event_rate_high'), '.3f')}",
            "AUROC [95% DeLong]": f"{s.get('auroc', math.nan):.3f} "
                                     f"{interval(s.get('auroc_low'), s.get('auroc_high'))}",
            "AUPRC (base rate)": f"{s.get('auprc', math.nan):.3f} ({s.get('base_rate', math.nan):.3f})",
            "mean predicted risk": s.get("mean_risk"), "Brier": s.get("brier")})
    return pd.DataFrame(rows)


def per_hospital(doc: Doc, evaluation: dict, figures, name: str = "auroc_intervals") -> None:
    """The final model per hospital: test size, events, intervals; the spread, with what the intervals allow."""
    scopes = evaluation.get("scopes", {})
    if not scopes:
        doc.p("No evaluation of the final model in the log (a log from an older fedsim, or no metric released).")
        return
    doc.p("The final model on each released test split. AUROC intervals: DeLong 95% over the split's "
          "patients; base-rate intervals: Wilson 95%. AUPRC is shown beside the base rate, the AUPRC of a "
          "model that knows nothing.")
    if evaluation.get("pooled_only"):
        doc.p(f"More than {DETAILED_HOSPITALS} hospitals: the final model is evaluated on the pooled test set "
              "only; each hospital's AUROC per round is in the metrics table.")
    doc.table(evaluation_table(evaluation))
    hospitals = pd.DataFrame([{"scope": h, **s} for h, s in scopes.items() if h != "global"])
    if hospitals.empty or "auroc" not in hospitals:
        return
    finite = hospitals[hospitals.auroc.map(lambda v: isinstance(v, float) and math.isfinite(v))]
    few = sorted(hospitals[hospitals.events.fillna(0) < MIN_EVENTS].scope) if "events" in hospitals else []
    if len(finite) >= 2:
        low, high = finite.loc[finite.auroc.idxmin()], finite.loc[finite.auroc.idxmax()]
        overlap = low.get("auroc_high", math.nan) >= high.get("auroc_low", math.nan)
        doc.p(f"Spread of AUROC between hospitals: {high.auroc - low.auroc:.3f} ({user(low.scope)} "
              f"{low.auroc:.3f}, {low.n_test:.0f} test patients, {low.events:.0f} events; {user(high.scope)} "
              f"{high.auroc:.3f}, {high.n_test:.0f} patients, {high.events:.0f} events). "
              + ("Their intervals overlap: the test splits are too small to call this a fairness gap."
                 if overlap else "Their intervals do not overlap: a gap the test splits can resolve."))
        glob = scopes.get("global", {}).get("auroc", math.nan)
        doc.figure(name, figures.auroc_intervals(finite, glob), "Final AUROC per hospital with 95% intervals")
    if few:
        doc.p(f"Fewer than {MIN_EVENTS} outcome events in the test split of {user(', '.join(few))}: "
              "their AUROC rests on a handful of patients.")


def calibration(doc: Doc, evaluation: dict, figures, name: str = "calibration") -> None:
    """How far predicted risks are from observed rates on the pooled test set."""
    doc.h("Calibration")
    g = evaluation.get("scopes", {}).get("global")
    if not g:
        doc.p("No pooled evaluation in the log: calibration not available.")
        return
    slope, intercept = g.get("calibration_slope", math.nan), g.get("calibration_intercept", math.nan)
    doc.p(f"On the pooled test set the mean predicted risk is {number(g.get('mean_risk'), '.3f')} against an "
          f"observed event rate of {number(g.get('base_rate'), '.3f')}; calibration slope "
          f"{number(slope, '.2f')} and intercept {number(intercept, '.2f')} (logistic recalibration of the "
          f"outcome on the model's logit: 1 and 0 when calibrated; a slope below 1 means too extreme risks); "
          f"Brier score {number(g.get('brier'), '.3f')}.")
    bins = pd.DataFrame(evaluation.get("reliability", []))
    if not bins.empty:
        doc.figure(name, figures.reliability(bins), "Observed event rate against predicted risk")
