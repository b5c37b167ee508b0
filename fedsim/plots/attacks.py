"""What the attacks achieve: reconstructions, leakage against utility, membership ROC curves."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fedsim.plots.base import done


def plot_reconstructions(runs, image_shape: tuple[int, int]):
    """Each run's best reconstructed scan under the original it came from.

    ``runs``: a Result or a {label: Result} dict (e.g. ``LeakageComparison.attacked``),
    each with a gradient inversion in its observers. Titles give the scan's PSNR
    and, where the attack rebuilt several records (a batch), the mean PSNR over
    them: the number ``Result.attacks`` reports.
    """
    runs = runs if isinstance(runs, dict) else {runs.name: runs}
    fig, axes = plt.subplots(2, len(runs), figsize=(1.9 * len(runs), 4.2), squeeze=False, constrained_layout=True)
    for column, (label, res) in enumerate(runs.items()):
        records = res.tables.get("reconstructions", pd.DataFrame())
        top, bottom = axes[0, column], axes[1, column]
        if not records.empty:
            record = records.loc[records.psnr.idxmax()]
            original, found = record["original"], np.clip(record["reconstruction"], 0, 1)
            top.imshow(original.reshape(image_shape), cmap="gray", vmin=0, vmax=1)
            bottom.imshow(found.reshape(image_shape), cmap="gray", vmin=0, vmax=1)
            bottom.set_title(f"{record['psnr']:.1f} dB" if len(records) == 1 else
                             f"best of {len(records)}: {record['psnr']:.1f} dB\nmean {records.psnr.mean():.1f} dB",
                             fontsize=8)
        top.set_title(label, fontsize=9)
        for ax in (top, bottom):
            ax.grid(False)  # a seaborn theme's gridlines would cross the scans
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstruction")
    return done(fig)


def plot_leakage(table: pd.DataFrame, metric: str = "psnr"):
    """An attack metric against the model's AUROC, one point per mitigation (``LeakageComparison.table()``)."""
    rows = table[table.metric == metric]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    sns.scatterplot(rows, x="auroc", y="value", hue="mitigation", style="mitigation", s=90, ax=ax)
    _labels_apart(ax, rows["auroc"].to_numpy(float), rows["value"].to_numpy(float), list(rows["mitigation"]))
    prior = table[table.metric == f"{metric}_prior"]
    if not prior.empty:
        ax.axhline(prior.value.mean(), color="black", ls="--", lw=1)
        ax.annotate("guessing the average scan", (ax.get_xlim()[0], prior.value.mean()), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set(xlabel="global AUROC of the trained model (utility)", ylabel=f"attack {metric} (higher = more leakage)")
    ax.legend([], [], frameon=False)
    return done(fig)


def _labels_apart(ax, xs, ys, labels, gap: float = 0.045) -> None:
    """Each point's label beside it, moved up or down (with a leader line) until no two labels overlap."""
    ax.figure.canvas.draw()  # the axes limits as drawn
    to_axes = ax.transAxes.inverted()
    points = to_axes.transform(ax.transData.transform(np.column_stack([xs, ys])))
    placed = []  # (x, y) of labels already placed, in axes fractions
    for i in np.argsort(points[:, 1]):
        x, y = points[i]
        y_label = y + 0.02
        while any(abs(px - x) < 0.22 and abs(py - y_label) < gap for px, py in placed):
            y_label += gap / 2
        placed.append((x, y_label))
        moved = abs(y_label - y - 0.02) > 1e-9
        ax.annotate(labels[i], (xs[i], ys[i]), xytext=(x + 0.012, y_label), textcoords="axes fraction", fontsize=8,
                    va="center", arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if moved else None)


def plot_roc(curves: pd.DataFrame, ax=None):
    """ROC curves on log-log axes (low false-positive rates are what matters), chance as a dashed line.

    ``curves``: rows of (label, fpr, tpr, n_non_members), one curve per label
    (``MembershipAttack.curve()``). Draws into ``ax`` if given (and returns
    its Figure, still open), else into a new Figure, closed before it is returned.
    """
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), constrained_layout=True)
    # Zero rates cannot be drawn on log axes: clip at half the smallest non-zero FPR.
    floor = 0.5 / max(1, int(curves.n_non_members.max()))
    for label, curve in curves.groupby("label", sort=False):
        ax.plot(curve.fpr.clip(lower=floor), curve.tpr.clip(lower=floor), lw=1.8, label=label)
    ax.plot([floor, 1], [floor, 1], color="grey", ls="--", lw=1, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="false positive rate",
           ylabel="true positive rate", title="Membership inference")
    ax.legend(loc="lower right", fontsize=8)
    return ax.figure if fig is None else done(fig)
