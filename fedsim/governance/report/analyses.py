"""What the report concludes from a run's log: each threat, its mitigations and its measured residual risk.

Everything comes from component metadata recorded in the audit log (family,
registry name, threats, role, settings), never from class names or reprs. The
results are plain text (table cells): the renderer escapes them.
"""

import numpy as np
import pandas as pd

from fedsim.components import THREATS
from fedsim.governance.report.document import number, span
from fedsim.governance.report.run_log import Run, title

# What a leakage attack's rows say, in order of importance.
LEAKAGE_METRICS = {"psnr": "PSNR {:.1f} dB", "psnr_prior": "average-scan guess {:.1f} dB",
                   "max_rel_error": "worst feature error {:.1%} of its range", "auc": "AUC {:.2f}",
                   "tpr@1%fpr": "TPR at 1% FPR {:.2f}", "label_accuracy": "labels {:.0%} right"}


def epsilon_range(run: Run) -> str:
    """``epsilon min-max`` over the privacy ledger."""
    return f"epsilon {span(run.table('privacy', numbers=('epsilon',)).epsilon, '.2g')}"


def mitigations(run: Run, threat: str) -> list[str]:
    """What in this run addresses ``threat``, in words."""
    found = []
    aggregation = run.aggregation
    if threat in aggregation.get("threats", []):
        found.append(f"robust aggregation: {aggregation['name']}"
                     + (" (weak against small, targeted updates)" if threat == "backdoor" else ""))
    for c in run.mitigating(threat):
        if c.get("family") == "privacy" and c.get("spends_epsilon"):
            found.append(f"DP: {title(c)} ({epsilon_range(run)})")
        else:
            found.append(f"{c.get('family', '?')}: {title(c)}")
    if threat == "free-riding":
        found.append("update norms recorded per hospital in the audit log")
    if threat == "dropout":
        minimum = next((s.get("min_train_nodes") for s in run.start.get("strategy", [])[-1:]), None)
        found.append(f"the strategy goes on with the replies it gets (minimum {minimum or 1} hospitals)")
    return found


def measured_leakage(run: Run, threat: str) -> dict[str, str]:
    """{attack on hospital in round: what it achieved} for the rows of the attacks posing ``threat``."""
    table = run.table("attacks", numbers=("round", "value"), texts=("attack", "hospital", "metric"))
    labels = {c.get("label") for c in run.posing(threat) if c.get("label")}
    rows = table[(table.metric != "") & table.attack.isin(labels) & table["round"].map(np.isfinite).astype(bool)]
    measured = {}
    for (attack, hospital, rnd), group in rows.groupby(["attack", "hospital", "round"], sort=False):
        values = group.drop_duplicates("metric", keep="last").set_index("metric")["value"]
        said = [fmt.format(values[m]) for m, fmt in LEAKAGE_METRICS.items() if m in values]
        if "failed" in values.index:
            said.append("the attack could not use the update")
        measured[f"{attack} on {hospital}, round {int(rnd)}"] = ", ".join(said)
    return measured


def residual(run: Run, baseline: Run | None, threat: str, attacks: list[dict]) -> str:
    """The residual risk of ``threat`` as the attacks run measured it (or why it was not measured)."""
    if threat == "dropout" and run.rounds:
        sampled = sum(len(r.get("sampled", [])) for r in run.rounds)
        dropped = sum(len(r.get("dropped", {})) for r in run.rounds)
        observed = f"observed: {dropped} of {sampled} sampled replies missing"
        if not attacks:
            return f"not measured (no availability model run); {observed}"
        return observed
    if not attacks:
        return "not measured"
    parts = []
    if baseline is not None:
        with_attack, without = run.final("auroc"), baseline.final("auroc")
        parts.append(f"global AUROC {number(with_attack, '.3f')} with the attack vs {number(without, '.3f')} "
                     f"without (change {number(with_attack - without, '+.3f')})")
    else:
        parts.append(f"global AUROC {number(run.final('auroc'), '.3f')} under attack (no baseline run given: "
                     "effect not measured)")
    attackers = {h for a in attacks for h in a.get("hospitals", [])}
    selections = [r["aggregation"] for r in run.rounds if r.get("aggregation", {}).get("not_selected")]
    if attackers and selections:  # a selecting rule (Krum...): did it aggregate an attacker's update?
        picked = sum(bool(attackers & set(s.get("aggregated", []))) for s in selections)
        parts.append(f"{run.rule} selected an attacker's update in {picked} of {len(selections)} rounds")
    if attackers and run.rounds:
        norms = pd.DataFrame([{"hospital": h, "norm": n} for r in run.rounds
                              for h, n in r.get("update_norms", {}).items()])
        if not norms.empty:
            bad = norms[norms.hospital.isin(attackers)].norm.median()
            good = norms[~norms.hospital.isin(attackers)].norm.median()
            if np.isfinite(bad) and np.isfinite(good) and good > 0:
                parts.append(f"attacker update norm {bad / good:.1f}x the honest median")
    return "; ".join(parts)


def threat_rows(run: Run, baseline: Run | None) -> pd.DataFrame:
    """One row per threat: the property it endangers, mitigations enabled, attacks run, measured residual risk."""
    rows = []
    for threat, prop in THREATS.items():
        attacks = run.posing(threat)
        names = [f"{a['title']} ({', '.join(a['hospitals'])})" if a.get("hospitals") else a["title"] for a in attacks]
        risk = residual(run, baseline, threat, [a for a in attacks if a["family"] != "attack"])
        measured = measured_leakage(run, threat)
        if measured:
            names = [n for n in names if n not in {a["title"] for a in attacks if a["family"] == "attack"}]
            names += list(measured)
            risk = "; ".join(measured.values())
        rows.append({"property": prop, "threat": threat,
                     "mitigations enabled": "; ".join(mitigations(run, threat)) or "none",
                     "attacks run": "; ".join(names) or "none",
                     "residual risk (measured)": risk})
    return pd.DataFrame(rows)
