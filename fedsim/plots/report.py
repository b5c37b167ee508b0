"""The figures of the risk report, each from one tidy table."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

PARTICIPATION_CODES = {"not sampled": 0, "responded": 1, "excluded": 2, "dropped": 3, "rejected": 4}


def attack_effect(curves: pd.DataFrame):
    """Global AUROC by round (``round``, ``value``), one line per ``run`` (with and without the attack)."""
    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    sns.lineplot(curves, x="round", y="value", hue="run", marker="o", ax=ax)
    ax.set(title="Global AUROC by round: the attack's effect", ylabel="AUROC")
    return fig


def update_norms(norms: pd.DataFrame):
    """Each update's L2 norm (``round``, ``norm``), coloured by ``role`` (honest or attacker)."""
    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    sns.stripplot(norms, x="round", y="norm", hue="role", ax=ax,
                  palette={"honest": "tab:blue", "attacker": "tab:red"})
    ax.set(title="Update L2 norm per hospital and round", ylabel="L2 norm of the update")
    return fig


def epsilon_by_hospital(privacy: pd.DataFrame, caps: dict[str, float]):
    """Epsilon per ``hospital`` and ``mechanism``, each hospital's cap (``caps``) as a black bar."""
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * privacy.hospital.nunique()), 3.2), constrained_layout=True)
    sns.barplot(privacy, x="hospital", y="epsilon", hue="mechanism", ax=ax)
    finite = privacy.epsilon[np.isfinite(privacy.epsilon)]
    top = 1.5 * float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    order = list(privacy.hospital.unique())
    for hospital, cap in caps.items():
        if hospital in order:
            i = order.index(hospital)
            if cap <= top:
                ax.plot([i - 0.4, i + 0.4], [cap, cap], color="k", lw=2)
            else:  # a cap far above what was spent: written at the top instead of squashing the bars
                ax.annotate(f"cap {cap:g}", (i, top), ha="center", va="top", fontsize=7)
    ax.set_ylim(0, top)
    ax.set(title="Epsilon spent per hospital (black: the hospital's max_epsilon)", xlabel="")
    ax.tick_params(axis="x", rotation=90)
    return fig


def participation_grid(grid: pd.DataFrame):
    """Hospitals by round, each cell a ``PARTICIPATION_CODES`` status."""
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * grid.shape[1] + 3), max(2.5, 0.25 * len(grid))),
                           constrained_layout=True)
    cmap = matplotlib.colors.ListedColormap(["#eeeeee", "#4c9a2a", "#999999", "#e69f00", "#c0392b"])
    sns.heatmap(grid, cmap=cmap, vmin=-0.5, vmax=4.5, cbar_kws={"ticks": list(PARTICIPATION_CODES.values())},
                ax=ax, linewidths=0.5, linecolor="white")
    ax.collections[0].colorbar.set_ticklabels(list(PARTICIPATION_CODES))
    ax.set(title="Participation by round", xlabel="round", ylabel="")
    return fig


def auroc_by_hospital(last: pd.DataFrame, global_auroc: float):
    """Each hospital's final AUROC (``scope``, ``value``) against the global one."""
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(last)), 3.2), constrained_layout=True)
    sns.barplot(last.sort_values("value"), x="scope", y="value", color="tab:blue", ax=ax)
    ax.axhline(global_auroc, color="k", ls="--", lw=1, label="global")
    ax.set(title="Final AUROC per hospital (released ones)", xlabel="", ylabel="AUROC",
           ylim=(min(0.4, float(last.value.min()) - 0.05), 1))
    ax.tick_params(axis="x", rotation=90)
    ax.legend()
    return fig
