"""How the hospitals of a federation differ."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fedsim.plots.base import done


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
        _hospital_ticks(ax, len(order))
    fig.suptitle(repr(fed))
    return done(fig)


def _hospital_ticks(ax, n_hospitals: int) -> None:
    """Hospital ids readable: level while they fit, turned upright (and smaller) for many hospitals."""
    if n_hospitals <= 12:
        ax.tick_params(axis="x", rotation=0, labelsize=9)
    else:
        ax.tick_params(axis="x", rotation=90, labelsize=8 if n_hospitals <= 30 else 6)


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
    scans_ax.grid(False)
    scans_ax.set(title=f"Training images, {fed.target} = 0 (top) and 1 (bottom)", yticks=[],
                 xticks=(np.arange(len(shown)) + 0.5) * width - 1, xticklabels=shown)
    _hospital_ticks(scans_ax, len(shown))
