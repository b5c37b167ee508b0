"""Metrics by round: one run over its hospitals, or several runs side by side."""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from fedsim.plots.base import done


def plot_rounds(metrics: pd.DataFrame, metric: str = "auroc", title: str = ""):
    """The global metric by round (bold) over each hospital's (faint)."""
    rows = metrics[metrics.metric == metric]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    hospitals = rows[rows.scope != "global"]
    if not hospitals.empty:
        sns.lineplot(hospitals, x="round", y="value", units="scope", estimator=None,
                     color="grey", alpha=0.25, lw=0.8, ax=ax)
    sns.lineplot(rows[rows.scope == "global"], x="round", y="value", color="tab:blue", lw=2.5, ax=ax,
                 label="global test set")
    ax.set(ylabel=metric.upper(), title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return done(fig)


def plot_comparison(table: pd.DataFrame, metric: str = "auroc"):
    """Global metric by round, one line per run of a ``fedsim.compare`` table."""
    rows = table[(table.metric == metric) & (table.scope == "global")]
    fig, ax = plt.subplots(figsize=(8.5, 4), constrained_layout=True)
    sns.lineplot(rows, x="round", y="value", hue="run", ax=ax)
    ax.set(ylabel=f"global {metric.upper()}", xlabel="round (epoch for baselines)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=None, frameon=False)  # beside, over no line
    return done(fig)
