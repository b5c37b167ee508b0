"""How close a reconstruction comes to the records really used: image and record metrics.

Reconstructions are matched one-to-one to the true records (Hungarian
assignment on squared error, scipy), as an attacker cannot know the order of
a batch. Images: ``mse``, ``psnr`` (dB, pixel range 1) and ``ssim`` (Wang et
al. 2004, Gaussian window of sigma 1.5), and ``psnr_prior``, the PSNR of
the federation's average scan: what an attacker knows without any update. Tabular records are decoded back to
the original units first: each numeric feature's absolute error as a share of
its range in the training data (``rel_error[<feature>]``, their mean
``mean_rel_error``), the share of categorical values recovered exactly
(``categorical_match``). Both get ``label_accuracy``.
"""

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

from fedsim.federation import Federation, Preprocessor


def match(reconstructed: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each reconstructed row, the index of its true row (one-to-one, least total squared error)."""
    cost = ((reconstructed[:, None, :] - candidates[None, :, :]) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for pixels in [0, 1]."""
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two images in [0, 1] (Gaussian window, sigma 1.5)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = 0.01**2, 0.03**2

    def blur(image):
        return gaussian_filter(image, 1.5, truncate=3.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def image_scores(reconstructed: np.ndarray, truth: np.ndarray, image_shape: tuple[int, int]) -> dict[str, float]:
    """Mean mse, psnr and ssim over matched pairs of flattened images."""
    pairs = [(r.reshape(image_shape), t.reshape(image_shape)) for r, t in zip(reconstructed, truth)]
    return {
        "mse": float(np.mean([np.mean((r - t) ** 2) for r, t in pairs])),
        "psnr": float(np.mean([min(psnr(r, t), 100.0) for r, t in pairs])),  # capped: exact matches are inf
        "ssim": float(np.mean([ssim(r, t) for r, t in pairs])),
    }


def decode(pre: Preprocessor, x: np.ndarray) -> pd.DataFrame:
    """Model inputs back to records in the original units; one-hot groups to their likeliest category."""
    n_numeric = len(pre.numeric)
    columns = {name: x[:, j] * pre.std[j] + pre.mean[j] for j, name in enumerate(pre.numeric)}
    start = n_numeric + len(pre.flagged)
    for name in pre.categorical:
        levels = pre.categories[name]
        block = x[:, start : start + len(levels)]
        columns[name] = np.asarray(levels, dtype=object)[block.argmax(axis=1)] if levels else np.nan
        start += len(levels)
    return pd.DataFrame(columns)


def record_scores(reconstructed: np.ndarray, truth: np.ndarray, fed: Federation) -> dict[str, float]:
    """Per-feature relative error (numeric) and exact-match rate (categorical) of matched records."""
    pre = fed.preprocessor
    got, want = decode(pre, reconstructed), decode(pre, truth)
    train = fed.data[fed.data["split"] == "train"]
    scores = {}
    for name in pre.numeric:
        lo, hi = train[name].min(), train[name].max()
        span = float(hi - lo) or 1.0
        scores[f"rel_error[{name}]"] = float(np.mean(np.abs(np.clip(got[name], lo, hi) - want[name]) / span))
    out = {"mean_rel_error": float(np.mean(list(scores.values()))) if scores else float("nan"),
           "max_rel_error": float(np.max(list(scores.values()))) if scores else float("nan")}
    if pre.categorical:
        out["categorical_match"] = float(np.mean([(got[c] == want[c]).mean() for c in pre.categorical]))
    return {**out, **scores}


def score(reconstructed: np.ndarray, labels: np.ndarray, candidates: np.ndarray, candidate_labels: np.ndarray,
          fed: Federation) -> dict[str, float]:
    """All metrics of a reconstruction against the records that could have produced it."""
    index = match(reconstructed, candidates)
    truth, true_labels = candidates[index], candidate_labels[index]
    # Labels are recovered as a multiset: compare sorted labels, not positions.
    metrics = {"label_accuracy": float(np.mean(np.sort(labels) == np.sort(true_labels)))}
    if fed.image_shape is not None:
        metrics.update(image_scores(reconstructed, truth, fed.image_shape))
        # What an attacker gets with no update at all: the average scan as the guess.
        prior = np.broadcast_to(fed.x_train.mean(axis=0), truth.shape)
        metrics["psnr_prior"] = image_scores(prior, truth, fed.image_shape)["psnr"]
    else:
        metrics.update(record_scores(reconstructed, truth, fed))
    return metrics
