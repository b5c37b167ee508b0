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
    ("privacy (epsilon, log scale)", {"epsilon": "accountant", "epsilon_audited": "audited lower bound"}),
    ("leakage", {"mia_tpr@0.1%fpr": "MIA TPR at 0.1% FPR", "mia_auc": "MIA AUC",
                 "backdoor_success": "backdoor success"}),
    ("cost (x plain FedAvg)", {"compute_cost": "compute", "communication_cost": "communication"}),
)


def plot_decision(table: pd.DataFrame):
    """One row of panels: AUROC (with its interval) clean and under attack, epsilon accountant vs audited, leakage
    and backdoor success, compute and communication cost; one line per candidate. Without DP the accountant's
    epsilon is infinite: drawn at the panel's right edge and labelled."""
    candidates = list(table.candidate)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 0.55 * len(candidates) + 1.8),
                             sharey=True, constrained_layout=True)
    for ax, (title, columns) in zip(axes, PANELS):
        long = table.melt(id_vars="candidate", value_vars=[c for c in columns if c in table], var_name="measure")
        long["value"] = pd.to_numeric(long.value, errors="coerce")
        long["measure"] = long.measure.map(columns)
        infinite = np.isinf(long.value)
        if title.startswith("privacy"):
            finite = long.value[~infinite & (long.value > 0)]
            edge = max(10.0, float(finite.max()) * 3) if len(finite) else 10.0
            long.loc[infinite, "value"] = edge
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # no mathtext needed
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            for candidate in long[infinite].candidate:
                ax.annotate("∞ (no DP)", (edge, candidates.index(candidate)), xytext=(-4, 6),
                            textcoords="offset points", ha="right", fontsize=7)
        sns.scatterplot(long.dropna(subset=["value"]), x="value", y="candidate", hue="measure", style="measure", s=70,
                        ax=ax, zorder=3)
        if title.startswith("utility"):
            low, high = table.auroc - table.auroc_low, table.auroc_high - table.auroc
            ax.errorbar(table.auroc, range(len(candidates)), xerr=[low.fillna(0), high.fillna(0)], fmt="none",
                        ecolor="k", elinewidth=1, capsize=3, zorder=2)
        if title.startswith("cost"):
            ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set(title=title, xlabel="", ylabel="")
        ax.legend(fontsize=7, loc="best", title=None)
    axes[0].set_yticks(range(len(candidates)), [_wrap(c) for c in candidates])
    fig.suptitle("Candidate set-ups, measured: utility, privacy, leakage, cost")
    return done(fig)


def _wrap(label: str, width: int = 28) -> str:
    words, lines, line = str(label).split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
