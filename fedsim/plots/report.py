"""The figures of the risk report, each from one tidy table."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

PARTICIPATION_CODES = {"not sampled": 0, "aggregated": 1, "excluded": 2, "dropped": 3, "rejected": 4,
                       "not selected": 5}


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
    _shorten_ticks(ax)
    return fig


def participation_grid(grid: pd.DataFrame):
    """Hospitals by round, each cell a ``PARTICIPATION_CODES`` status."""
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * grid.shape[1] + 3), max(2.5, 0.25 * len(grid))),
                           constrained_layout=True)
    cmap = matplotlib.colors.ListedColormap(["#eeeeee", "#4c9a2a", "#999999", "#e69f00", "#c0392b", "#8e44ad"])
    grid = grid.set_axis([_short(h) for h in grid.index], axis=0)
    sns.heatmap(grid, cmap=cmap, vmin=-0.5, vmax=len(PARTICIPATION_CODES) - 0.5,
                cbar_kws={"ticks": list(PARTICIPATION_CODES.values())},
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
    _shorten_ticks(ax)
    ax.legend()
    return fig


def auroc_intervals(table: pd.DataFrame, global_auroc: float):
    """Each hospital's final AUROC (``scope``, ``auroc``) with its 95% interval (``auroc_low``, ``auroc_high``)."""
    table = table.sort_values("auroc")
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(table) + 1)), constrained_layout=True)
    positions = np.arange(len(table))
    ax.errorbar(table.auroc, positions, xerr=[(table.auroc - table.auroc_low).fillna(0),
                                              (table.auroc_high - table.auroc).fillna(0)],
                fmt="o", color="tab:blue", ecolor="k", capsize=3)
    ax.axvline(global_auroc, color="k", ls="--", lw=1, label="global")
    ax.axvline(0.5, color="grey", ls=":", lw=1, label="chance")
    ax.set_yticks(positions, [_short(s) for s in table.scope])
    ax.set(title="Final AUROC per hospital, 95% DeLong interval", xlabel="AUROC", ylabel="")
    ax.legend(fontsize=8)
    return fig


def reliability(bins: pd.DataFrame):
    """Observed event rate against mean predicted risk (``mean_risk``, ``observed``, ``n``) per bin of risk."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), constrained_layout=True)
    top = max(0.05, float(max(bins.mean_risk.max(), bins.observed.max())) * 1.1)
    ax.plot([0, top], [0, top], color="grey", ls=":", lw=1, label="perfect calibration")
    sns.scatterplot(bins, x="mean_risk", y="observed", size="n", ax=ax, color="tab:blue", legend=False)
    ax.plot(bins.mean_risk, bins.observed, color="tab:blue", lw=1)
    ax.set(xlim=(0, top), ylim=(0, top), title="Calibration (pooled test set, 10 bins of risk)",
           xlabel="mean predicted risk", ylabel="observed event rate")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _short(label, width: int = 28) -> str:
    """A tick label of at most ``width`` characters, on one line."""
    label = " ".join(str(label).split())
    return label if len(label) <= width else label[:width - 1] + "…"


def _shorten_ticks(ax) -> None:
    """Hospital names as tick labels of at most 28 characters (a long name would squash the axes)."""
    ax.set_xticks(ax.get_xticks(), [_short(t.get_text()) for t in ax.get_xticklabels()])
    ax.set_yticks(ax.get_yticks(), [_short(t.get_text()) for t in ax.get_yticklabels()])
