"""``make demo`` (``fedsim demo``): what fedsim is for, in a couple of minutes on a laptop CPU.

One federation of synthetic ICU hospitals trained four ways (FedAvg, DP-SGD,
central DP, SecAgg+: AUROC and each hospital's epsilon), one hospital's update
inverted by a curious server into a patient's scan (without and with DP-SGD),
and a sign-flipping attack against FedAvg and the coordinate-wise median.
Writes tables, figures (``overview.png`` first), the risk report of the DP-SGD
run and ``summary.txt`` into one results folder. Runs are cached like every
study's (``fedsim.studies.run_grid``): a second demo takes seconds.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim import adversaries, attacks
from fedsim._tf import note_device
from fedsim.experiment import Experiment
from fedsim.federation import synthetic_federation
from fedsim.governance import report
from fedsim.plots import plot_comparison, plot_overview, plot_reconstructions
from fedsim.privacy import DPSGD, CentralDP, SecAgg
from fedsim.studies import compare, compare_mitigations, run_grid

N_HOSPITALS, N_PATIENTS, ROUNDS, LEARNING_RATE = 10, 5000, 12, 0.3
PRIVACY = {"FedAvg": None, "DP-SGD": DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0),
           "central DP": CentralDP(noise_multiplier=1.0, clipping_norm=1.0), "SecAgg+": SecAgg()}
UNITS = {"record": "patient record", "hospital": "hospital"}


def experiments() -> tuple[dict[str, Experiment], dict[str, Experiment], Experiment, attacks.GradientInversion]:
    """The demo's runs: privacy techniques and poisoning on one ICU federation (by label), and the worst case
    for a hospital on scans (batch size 1, one local step) with the gradient inversion that watches it."""
    fed = synthetic_federation("icu_mortality", n_hospitals=N_HOSPITALS, n_patients=N_PATIENTS, seed=0,
                               quantity_skew=0.5, label_skew=0.5)
    base = Experiment(federation=fed, rounds=ROUNDS, learning_rate=LEARNING_RATE, seed=0)
    privacy = {label: base.replace(name=label, privacy=technique) for label, technique in PRIVACY.items()}
    flip = adversaries.SignFlip(hospitals=0.2, scale=8.0)
    poisoning = {"FedAvg, 20% sign flip": base.replace(name="FedAvg, 20% sign flip", adversaries=flip),
                 "median, 20% sign flip": base.replace(name="median, 20% sign flip", strategy="fedmedian",
                                                       adversaries=flip)}
    scans = synthetic_federation("lesion_scans", n_hospitals=4, n_patients=400, seed=0)
    worst_case = Experiment(federation=scans, model="cnn", rounds=1, batch_size=1, local_steps=1, seed=0)
    spy = attacks.GradientInversion(hospital=1, round=1, method="geiping", steps=500)
    return privacy, poisoning, worst_case, spy


def privacy_table(results: dict) -> pd.DataFrame:
    """One row per (technique, hospital): final global AUROC, the hospital's largest epsilon (NaN without DP),
    its unit and the hospital's training records."""
    rows = []
    for technique, res in results.items():
        sizes = res.federation.summary().set_index("hospital").n_train
        ledger = res.privacy
        for hospital in res.federation.hospitals:
            spent = ledger[ledger.hospital == hospital] if not ledger.empty else ledger
            rows.append({"technique": technique, "hospital": hospital, "n_train": int(sizes[hospital]),
                         "auroc": res.final("auroc"),
                         "epsilon": float(spent.epsilon.max()) if len(spent) else float("nan"),
                         "unit": UNITS.get(spent.unit.iloc[0], spent.unit.iloc[0]) if len(spent) else ""})
    return pd.DataFrame(rows)


def run(out: str | os.PathLike = "results/demo", cache="default") -> list[str]:
    """Run the demo into ``out``; returns the summary's lines (also written to ``summary.txt``)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    privacy, poisoning, worst_case, spy = experiments()
    done = {t.label: t.result for t in run_grid({**privacy, **poisoning}, cache=cache, desc="demo")}
    leakage = compare_mitigations(worst_case, spy, {"no protection": {}, "DP-SGD": {"privacy": PRIVACY["DP-SGD"]}},
                                  cache=cache)

    trained = {label: done[label] for label in privacy}
    spent = privacy_table(trained)
    leaks = pd.concat([res.tables["reconstructions"].iloc[[0]].assign(mitigation=label)
                       for label, res in leakage.attacked.items()], ignore_index=True)
    under_attack = {"FedAvg, no attack": trained["FedAvg"], **{label: done[label] for label in poisoning}}
    curves = compare(trained)
    attacked = compare(under_attack)
    attacked_auroc = attacked[(attacked.scope == "global") & (attacked.metric == "auroc")]

    spent.to_csv(folder / "privacy.csv", index=False)
    leakage.table().to_csv(folder / "leakage.csv", index=False)
    curves.to_csv(folder / "metrics.csv", index=False)
    attacked.to_csv(folder / "poisoning.csv", index=False)
    shape = worst_case.federation.image_shape
    figures = {"overview.png": plot_overview(spent, leaks, attacked_auroc, shape),
               "auroc.png": plot_comparison(curves), "poisoning.png": plot_comparison(attacked),
               "reconstructions.png": plot_reconstructions(leakage.attacked, shape)}
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=110)
    paths = _report(privacy["DP-SGD"], trained["DP-SGD"], folder / "report")

    lines = summary(privacy["FedAvg"].federation, spent, leakage, leaks, under_attack)
    written = ["overview.png (start here)", *list(figures)[1:], "privacy.csv", "leakage.csv", "poisoning.csv",
               "metrics.csv", f"report/{paths['html'].name}", "summary.txt"]
    lines.append(f"  wrote {folder}/: {', '.join(written)}")
    (folder / "summary.txt").write_text("\n".join(lines) + "\n")
    return lines


def _report(experiment: Experiment, result, folder: Path) -> dict[str, Path]:
    """The risk report of the DP-SGD run: its audit log (copied from the cached run, or the run rerun here)."""
    folder.mkdir(parents=True, exist_ok=True)
    if result.audit_path is not None and Path(result.audit_path).exists():
        shutil.copyfile(result.audit_path, folder / "audit.jsonl")
    else:
        experiment.replace(out=folder).run()
    return report(folder)


def summary(fed, spent: pd.DataFrame, leakage, leaks: pd.DataFrame, attacked: dict) -> list[str]:
    """A few lines: what each technique costs, what one update leaks, what poisoning does."""
    parts = []
    for technique, rows in spent.groupby("technique", sort=False):
        eps = rows.epsilon[np.isfinite(rows.epsilon)]
        if len(eps):
            low, high = f"{eps.min():.2g}", f"{eps.max():.2g}"
            privacy = f", ε {low if low == high else f'{low} to {high}'} per {rows.unit.iloc[0]}"
        else:
            privacy = "" if technique == "FedAvg" else ", no ε: the server sees only the sum"
        parts.append(f"{technique} {rows.auroc.iloc[0]:.3f}{privacy}")
    prior = leakage.attacked["no protection"].attacks.query("metric == 'psnr_prior'").value.iloc[0]
    psnr = dict(zip(leaks.mitigation, leaks.psnr))
    finals = {label: res.final("auroc") for label, res in attacked.items()}
    clean, (fedavg, median) = finals.pop("FedAvg, no attack"), finals.values()
    n_bad = next(res for label, res in attacked.items() if "sign flip" in label).adversaries.hospital.nunique()
    return [
        f"fedsim demo: {fed.n_hospitals} synthetic hospitals, {len(fed.data)} ICU patients, {ROUNDS} rounds",
        "  privacy    AUROC " + " | ".join(parts),
        f"  leakage    one update (batch size 1) gives a patient's scan back to the server: PSNR "
        f"{psnr['no protection']:.1f} dB (the average scan: {prior:.1f} dB); under DP-SGD {psnr['DP-SGD']:.1f} dB",
        f"  poisoning  {n_bad} of {fed.n_hospitals} hospitals flip their updates: FedAvg AUROC {clean:.3f} -> "
        f"{fedavg:.3f}; the median keeps {median:.3f}",
    ]


def main(out: str | os.PathLike = "results/demo") -> int:
    """Run the demo and print its summary."""
    note_device()
    for line in run(out):
        print(line)
    return 0
