"""Seaborn figures for federations and tidy result tables.

Each function returns its Figure, already closed: Jupyter shows it once (as
the cell's value), scripts save it with ``fig.savefig``.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator


def _done(fig):
    """Close ``fig`` so pyplot does not show it a second time, and return it."""
    plt.close(fig)
    return fig


def plot_federation(fed):
    """Four panels: hospital sizes, outcome prevalence, age (if present), missingness."""
    summary = fed.summary().sort_values("n", ascending=False)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    sns.barplot(summary, x="hospital", y="n", color="tab:blue", ax=axes[0, 0])
    axes[0, 0].set(title="Patients per hospital", xlabel="")
    sns.barplot(summary, x="hospital", y="prevalence", color="tab:red", ax=axes[0, 1])
    axes[0, 1].axhline(fed.y_train.mean(), color="k", lw=1, ls="--", label="pooled")
    axes[0, 1].set(title=f"Prevalence of {fed.target}", xlabel="")
    axes[0, 1].legend()
    if "age" in fed.data.columns:
        order = list(summary.hospital)
        sns.boxplot(fed.data, x=fed.site, y="age", order=order, color="tab:green", fliersize=0, ax=axes[1, 0])
        axes[1, 0].set(title="Age by hospital", xlabel="")
    else:
        axes[1, 0].set_axis_off()
    features = fed.preprocessor.features
    missing = fed.data[features].isna().groupby(fed.data[fed.site]).mean()
    sns.heatmap(missing.loc[summary.hospital].T, cmap="Greys", vmin=0, vmax=1, ax=axes[1, 1],
                cbar_kws={"label": "share missing"})
    axes[1, 1].set(title="Missing values", xlabel="", ylabel="")
    for ax in axes.flat[:3]:
        ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.suptitle(repr(fed))
    return _done(fig)


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
    return _done(fig)


def plot_comparison(table: pd.DataFrame, metric: str = "auroc"):
    """Global metric by round, one line per run of a ``fedsim.compare`` table."""
    rows = table[(table.metric == metric) & (table.scope == "global")]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    sns.lineplot(rows, x="round", y="value", hue="run", ax=ax)
    ax.set(ylabel=f"global {metric.upper()}", xlabel="round (epoch for baselines)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _done(fig)
