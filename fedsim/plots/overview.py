"""One figure for the whole mission: what privacy costs, what an update leaks, what poisoning does."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

from fedsim.plots.base import done


def plot_overview(privacy: pd.DataFrame, leakage: pd.DataFrame, poisoning: pd.DataFrame, image_shape=None):
    """Four panels: utility by privacy technique, epsilon per hospital, a scan rebuilt from one update, poisoning.

    ``privacy``: one row per (technique, hospital) with ``auroc`` (the run's final global AUROC), ``epsilon``
    (NaN without DP), ``unit`` and ``n_train``. ``leakage``: one row per mitigation with ``original``,
    ``reconstruction`` (flat arrays) and ``psnr``. ``poisoning``: ``run``, ``round``, ``value`` (global AUROC).
    """
    fig = plt.figure(figsize=(13, 8.2), constrained_layout=True)
    grid = fig.add_gridspec(2, 2)
    _utility(privacy, fig.add_subplot(grid[0, 0]))
    _epsilon(privacy, fig.add_subplot(grid[0, 1]))
    _leakage(leakage, fig, grid[1, 0], image_shape)
    _poisoning(poisoning, fig.add_subplot(grid[1, 1]))
    fig.suptitle("fedsim: what federated learning leaks, resists and costs", fontsize=14, weight="bold")
    return done(fig)


def _utility(privacy: pd.DataFrame, ax) -> None:
    notes = {"FedAvg": ": no protection", "SecAgg+": ": the server sees only the sum"}
    runs = privacy.groupby("technique", sort=False).agg(auroc=("auroc", "first"), epsilon=("epsilon", "max"),
                                                        unit=("unit", "first")).reset_index()
    sns.barplot(runs, y="technique", x="auroc", hue="technique", ax=ax, legend=False)
    for i, row in runs.iterrows():
        note = (f"ε ≤ {row.epsilon:.3g} per {row.unit}" if np.isfinite(row.epsilon)
                else "no ε" + notes.get(row.technique, ""))
        ax.annotate(f"{row.auroc:.3f}", (0.505, i), va="center", fontsize=9, color="white", weight="bold")
        ax.annotate(note, (row.auroc + 0.005, i), va="center", fontsize=9)
    ax.set(xlim=(0.5, 1), xlabel="global AUROC (bars start at 0.5, a coin flip)", ylabel="",
           title="1 · What each technique costs in accuracy")
    ax.grid(False, axis="y")


def _epsilon(privacy: pd.DataFrame, ax) -> None:
    spent = privacy[np.isfinite(privacy.epsilon)]
    spent = spent.assign(technique=spent.technique + " (ε per " + spent.unit + ")")
    sns.scatterplot(spent, x="n_train", y="epsilon", hue="technique", style="technique", s=80, ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="hospital training records (log scale)", ylabel="ε spent (log scale)",
           title="2 · Each hospital's ε (smaller = more private; the units differ)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.legend(title=None, fontsize=8)


def _leakage(leakage: pd.DataFrame, fig, cell, image_shape) -> None:
    panels = cell.subgridspec(1, len(leakage) + 1)
    first = leakage.iloc[0]
    shown = [("original", first.original, None)]
    shown += [(row.mitigation, np.clip(row.reconstruction, 0, 1), row.psnr) for _, row in leakage.iterrows()]
    for i, (label, image, psnr) in enumerate(shown):
        ax = fig.add_subplot(panels[0, i])
        ax.imshow(np.reshape(image, image_shape), cmap="gray", vmin=0, vmax=1)
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label if psnr is None else f"rebuilt, {label}\n{psnr:.1f} dB PSNR", fontsize=9)
        if i == 1:
            ax.set_xlabel("3 · A curious server rebuilds a patient's scan\nfrom one hospital's update", fontsize=10)


def _poisoning(poisoning: pd.DataFrame, ax) -> None:
    sns.lineplot(poisoning, x="round", y="value", hue="run", style="run", marker="o", ax=ax)
    ax.set(xlabel="round", ylabel="global AUROC", title="4 · Hospitals that poison the model, and a robust aggregator")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title=None, fontsize=8)
