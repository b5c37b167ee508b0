"""Seaborn figures for federations and tidy result tables.

Each function returns its Figure, already closed: Jupyter shows it once (as
the cell's value), scripts save it with ``fig.savefig``.
"""

import matplotlib.pyplot as plt
import numpy as np
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


def privacy_utility(table: pd.DataFrame, metric: str = "auroc"):
    """Epsilon (log scale) against the global metric, one line per technique, seed intervals.

    ``table`` is a ``fedsim.sweep`` table. The run without privacy (epsilon
    infinite) is the dashed reference line.
    """
    rows = table[(table.scope == "global") & (table.metric == metric)]
    private = rows[np.isfinite(rows.epsilon)]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    if not private.empty:
        sns.lineplot(private, x="epsilon", y="value", hue="technique", style="technique", markers=True,
                     dashes=False, errorbar=("pi", 100), err_style="bars", estimator="median", ax=ax)
        ax.set_xscale("log")
    baseline = rows[~np.isfinite(rows.epsilon)]
    if not baseline.empty:
        ax.axhline(baseline.value.median(), color="black", ls="--", lw=1, label="no privacy")
    ax.set(xlabel="epsilon (largest over hospitals; smaller = more private)", ylabel=f"global {metric.upper()}")
    ax.legend(loc="lower right", fontsize=8)
    return _done(fig)


def privacy_cost_by_hospital(table: pd.DataFrame, federation, metric: str = "auroc"):
    """Each hospital's metric loss against the no-privacy run, by hospital size: do small hospitals pay more?"""
    rows = table[(table.scope != "global") & (table.metric == metric)]
    reference = rows[rows.technique == "none"].groupby("scope").value.median()
    private = rows[rows.technique != "none"].assign(
        cost=lambda d: d.scope.map(reference) - d.value,
        n_train=lambda d: d.scope.map(federation.summary().set_index("hospital").n_train),
    )
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    sns.scatterplot(private, x="n_train", y="cost", hue="technique", style="parameters", ax=ax, alpha=0.8)
    ax.axhline(0, color="black", lw=1)
    ax.set(xscale="log", xlabel="hospital training records", ylabel=f"{metric.upper()} lost to privacy")
    ax.legend(fontsize=7, loc="upper right")
    return _done(fig)
