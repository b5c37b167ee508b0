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
    """Four panels: hospital sizes, outcome prevalence, then age (if present) and missingness for tables,
    or the scans' mean intensity and example scans for images."""
    summary = fed.summary().sort_values("n", ascending=False)
    order = list(summary.hospital)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    sns.barplot(summary, x="hospital", y="n", color="tab:blue", ax=axes[0, 0])
    axes[0, 0].set(title="Patients per hospital", xlabel="")
    sns.barplot(summary, x="hospital", y="prevalence", color="tab:red", ax=axes[0, 1])
    axes[0, 1].axhline(fed.y_train.mean(), color="k", lw=1, ls="--", label="pooled")
    axes[0, 1].set(title=f"Prevalence of {fed.target}", xlabel="")
    axes[0, 1].legend()
    if fed.image_shape is not None:
        _image_panels(fed, order, axes[1, 0], axes[1, 1])
    else:
        _table_panels(fed, order, axes[1, 0], axes[1, 1])
    for ax in axes.flat[:3]:
        ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.suptitle(repr(fed))
    return _done(fig)


def _table_panels(fed, order, age_ax, missing_ax):
    """Age by hospital (if present) and the share of missing values per feature and hospital."""
    if "age" in fed.data.columns:
        sns.boxplot(fed.data, x=fed.site, y="age", order=order, color="tab:green", fliersize=0, ax=age_ax)
        age_ax.set(title="Age by hospital", xlabel="")
    else:
        age_ax.set_axis_off()
    features = fed.preprocessor.features
    missing = fed.data[features].isna().groupby(fed.data[fed.site]).mean()
    sns.heatmap(missing.loc[order].T, cmap="Greys", vmin=0, vmax=1, ax=missing_ax,
                cbar_kws={"label": "share missing"})
    missing_ax.set(title="Missing values", xlabel="", ylabel="")


def _image_panels(fed, order, intensity_ax, scans_ax, n_shown=6):
    """Mean intensity of each training image by hospital; one training image per label of the largest hospitals."""
    intensity = pd.DataFrame({fed.site: np.repeat(fed.hospitals, np.diff(fed.train_offsets)),
                              "intensity": fed.x_train.mean(axis=1)})
    sns.boxplot(intensity, x=fed.site, y="intensity", order=order, color="tab:green", fliersize=0, ax=intensity_ax)
    intensity_ax.set(title="Mean pixel intensity of each training image", xlabel="")
    shown = order[:n_shown]
    blank = np.zeros(fed.image_shape, np.float32)
    rows = []
    for label in (0, 1):
        tiles = []
        for hospital in shown:
            images, y = fed.images("train", hospital), fed.train_rows(fed.hospitals.index(hospital))[1]
            hits = np.flatnonzero(y == label)
            tiles.append(np.pad(images[hits[0]] if len(hits) else blank, ((0, 1), (0, 1)), constant_values=1))
        rows.append(np.hstack(tiles))
    width = fed.image_shape[1] + 1
    scans_ax.imshow(np.vstack(rows), cmap="gray", vmin=0, vmax=1)
    scans_ax.set(title=f"Training images, {fed.target} = 0 (top) and 1 (bottom)", yticks=[],
                 xticks=(np.arange(len(shown)) + 0.5) * width - 1, xticklabels=shown)
    scans_ax.tick_params(axis="x", rotation=90, labelsize=7)


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


def plot_reconstructions(runs, image_shape: tuple[int, int]):
    """Each run's first reconstructed scan under the original it came from.

    ``runs``: a Result or a {label: Result} dict (e.g. ``DefenseComparison.attacked``),
    each with a gradient inversion in its observers. Titles give the PSNR.
    """
    from fedsim.attacks.scores import psnr

    runs = runs if isinstance(runs, dict) else {runs.name: runs}
    fig, axes = plt.subplots(2, len(runs), figsize=(1.9 * len(runs), 4.2), squeeze=False, constrained_layout=True)
    for column, (label, res) in enumerate(runs.items()):
        records = res.tables.get("reconstructions", pd.DataFrame())
        top, bottom = axes[0, column], axes[1, column]
        if not records.empty:
            record = records.iloc[0]
            original, found = record["original"], np.clip(record["reconstruction"], 0, 1)
            top.imshow(original.reshape(image_shape), cmap="gray", vmin=0, vmax=1)
            bottom.imshow(found.reshape(image_shape), cmap="gray", vmin=0, vmax=1)
            bottom.set_title(f"{min(psnr(found, original), 100.0):.1f} dB", fontsize=9)
        top.set_title(label, fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstruction")
    return _done(fig)


def plot_leakage(table: pd.DataFrame, metric: str = "psnr"):
    """An attack metric against the model's AUROC, one point per defense (``fedsim.attacks.defense_table``)."""
    rows = table[table.metric == metric]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    sns.scatterplot(rows, x="auroc", y="value", hue="defense", style="defense", s=90, ax=ax)
    for _, row in rows.iterrows():
        ax.annotate(row["defense"], (row["auroc"], row["value"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    prior = table[table.metric == f"{metric}_prior"]
    if not prior.empty:
        ax.axhline(prior.value.mean(), color="black", ls="--", lw=1)
        ax.annotate("guessing the average scan", (ax.get_xlim()[0], prior.value.mean()), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set(xlabel="global AUROC of the trained model (utility)", ylabel=f"attack {metric} (higher = more leakage)")
    ax.legend([], [], frameon=False)
    return _done(fig)
