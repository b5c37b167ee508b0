"""The decision figure: candidate set-ups side by side, one panel per criterion (from the decision table)."""


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from fedsim.plots.base import done

PANELS = (
    ("utility and robustness (AUROC)", {"auroc": "clean", "auroc_poisoned": "under poisoning",
                                        "auroc_dropout": "under dropout"}),
    ("privacy (epsilon, log scale)", {"epsilon_record": "record, accountant",
                                      "epsilon_hospital": "hospital, accountant",
                                      "epsilon_audited_record": "record, audited lower bound",
                                      "epsilon_audited_hospital": "hospital, audited lower bound"}),
    ("leakage", {"mia_tpr@0.1%fpr": "MIA TPR at 0.1% FPR", "mia_auc": "MIA AUC",
                 "backdoor_success": "backdoor success"}),
    ("cost (x plain FedAvg)", {"compute_cost": "compute (FLOPs)", "communication_cost": "communication (bytes)",
                               "wall_time_cost": "wall time (this machine)"}),
)


def plot_decision(table: pd.DataFrame):
    """One row of panels: AUROC (with its interval) clean and under attack, epsilon per unit (accountant and
    audited), leakage and backdoor success, costs; one line per candidate. Without DP at a unit the accountant's
    epsilon is infinite: drawn at the panel's right edge and labelled ∞; an audited 0 at the left edge, labelled."""
    candidates = list(table.candidate)
    fig, axes = plt.subplots(2, 2, figsize=(11, 2 * (0.5 * len(candidates) + 1.6)), sharey=True,
                             constrained_layout=True)  # two by two: legible at a notebook's width
    for ax, (title, columns) in zip(axes.ravel(), PANELS):
        long = table.melt(id_vars="candidate", value_vars=[c for c in columns if c in table], var_name="measure")
        long["value"] = pd.to_numeric(long.value, errors="coerce")
        long["measure"] = long.measure.map(columns)
        if title.startswith("privacy"):
            _log_axis_with_edges(ax, long, candidates)
        sns.scatterplot(long.dropna(subset=["value"]), x="value", y="candidate", hue="measure", style="measure", s=70,
                        ax=ax, zorder=3)
        if title.startswith("utility"):
            low, high = table.auroc - table.auroc_low, table.auroc_high - table.auroc
            ax.errorbar(table.auroc, range(len(candidates)), xerr=[low.fillna(0), high.fillna(0)], fmt="none",
                        ecolor="k", elinewidth=1, capsize=3, zorder=2)
        if title.startswith("cost"):
            ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set(title=title, xlabel="", ylabel="")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="best", title=None)
    axes[0, 0].set_yticks(range(len(candidates)), [_wrap(c) for c in candidates])
    fig.suptitle("Candidate set-ups, measured: utility, privacy, leakage, cost")
    return done(fig)


def _log_axis_with_edges(ax, long: pd.DataFrame, candidates: list[str]) -> None:
    """A log axis for epsilons: infinite ones (no DP at that unit) drawn at the right edge, zeros (an audit that
    found nothing) at the left edge, each labelled, rather than off the axis or at a made-up value."""
    positive = long.value[np.isfinite(long.value) & (long.value > 0)]
    right = float(positive.max()) * 3 if len(positive) else 10.0
    left = float(positive.min()) / 3 if len(positive) else 0.01
    for value, edge, text, ha, dx in ((np.inf, right, "∞", "right", -4), (0.0, left, "0", "left", 4)):
        hit = long.value == value
        long.loc[hit, "value"] = edge
        for candidate in long[hit].candidate.unique():
            ax.annotate(text, (edge, candidates.index(candidate)), xytext=(dx, 6), textcoords="offset points",
                        ha=ha, fontsize=10)
    ax.set_xscale("log")
    ax.set_xlim(left / 1.5, right * 1.5)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # no mathtext needed
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _wrap(label: str, width: int = 28) -> str:
    words, lines, line = str(label).split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
