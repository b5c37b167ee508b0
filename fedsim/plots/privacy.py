"""What privacy costs: utility against epsilon, and who pays."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from fedsim.plots.base import done


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
    return done(fig)


def privacy_cost_by_hospital(table: pd.DataFrame, federation, metric: str = "auroc"):
    """Each hospital's metric loss against the no-privacy run, by hospital size: do small hospitals pay more?"""
    rows = table[(table.scope != "global") & (table.metric == metric)]
    reference = rows[rows.technique == "none"].groupby("scope").value.median()
    private = rows[rows.technique != "none"].assign(
        cost=lambda d: d.scope.map(reference) - d.value,
        n_train=lambda d: d.scope.map(federation.summary().set_index("hospital").n_train),
    )
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    sns.scatterplot(private, x="n_train", y="cost", hue="technique", style="parameters", ax=ax, alpha=0.8)
    ax.axhline(0, color="black", lw=1)
    ax.set(xscale="log", xlabel="hospital training records (log scale)", ylabel=f"{metric.upper()} lost to privacy")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)  # beside the points
    return done(fig)
