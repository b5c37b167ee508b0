"""What the audit log says about the data and the final model's performance, for a reader who must sign it.

- ``provenance(fed)``: where the data came from, as plain data the report puts
  in words (a synthetic scenario with its knobs, or the user's table and its
  columns) and, for tables, how the preprocessor was fitted;
- ``evaluation(y, p, ...)``: per hospital and on the pooled test set, the
  final model's test size, events (positive outcomes), AUROC with its DeLong
  95% interval (DeLong, DeLong & Clarke-Pearson 1988, the default of R's
  pROC; O(n log n), so it is cheap on a pooled set of 10^5 patients), AUPRC
  beside the base rate (the AUPRC of a model that knows nothing), the event
  rate with its Wilson 95% interval, and calibration: mean predicted risk
  against the observed rate, calibration slope and intercept (logistic
  recalibration), and a 10-bin reliability table for the pooled set;
- ``bootstrap_auroc``: a percentile bootstrap interval of the mean AUROC of
  several models (seeds) on one test set, for study tables.

Only what a run may release is evaluated: hospitals whose metrics policies
withhold are left out by the caller. Federations of more than
``DETAILED_HOSPITALS`` hospitals are evaluated pooled only (the metrics table
keeps every hospital's AUROC per round); the log says so.
"""

import math

import numpy as np
from scipy import stats

import data_synthetic

BOOTSTRAP = 500  # resamples of the test set for a study's AUROC interval
CELLS = 2_000_000  # resamples x patients held at once by the bootstrap (memory stays ~100 MB)
DETAILED_HOSPITALS = 200  # above this many hospitals, the final model is evaluated pooled only
Z95 = float(stats.norm.ppf(0.975))


def provenance(fed) -> dict:
    """Where a federation's data came from (``Federation.provenance`` or, for the user's own, its columns)."""
    roster = fed.roster
    found = {"name": fed.name, "n_hospitals": fed.n_hospitals, "n_train": int(roster["n_train"].sum()),
             "n_test": int(roster["n_test"].sum()), "target": fed.target, "site": fed.site,
             "events_train": int(roster["events_train"].sum()), "images": fed.image_shape is not None}
    given = fed.provenance or {}
    if given.get("source") == "synthetic":
        found.update(given)
        if given["scenario"] in data_synthetic.list_scenarios():
            found["title"] = data_synthetic.load_card(given["scenario"]).title
    else:
        found.update(source="table" if fed.preprocessor is not None else "images",
                     columns=list(fed.preprocessor.features) if fed.preprocessor is not None else [])
    if fed.preprocessor is not None:
        found["preprocessing"] = fed.preprocessor.fitting  # "pooled" or "federated" (Preprocessor)
    return found


def wilson(events: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion ``events / n``."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = events / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_auroc(y: np.ndarray, scores: list[np.ndarray], rng: np.random.Generator,
                    resamples: int = BOOTSTRAP) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean AUROC of ``scores`` (one array per model) on ``y``.

    All resamples at once, as multiplicities: each weighs every patient by how
    often it was drawn, and its AUROC is the weighted Mann-Whitney statistic
    (ties count half). Resamples holding one class only are skipped.
    """
    y = np.asarray(y, np.float64)
    if not 0 < y.sum() < len(y):
        return math.nan, math.nan
    sorted_scores = []
    for p in scores:
        order = np.argsort(p, kind="stable")
        ps = np.asarray(p)[order]
        sorted_scores.append((order, y[order], np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])))  # tie blocks
    found = []
    chunk = max(1, CELLS // len(y))
    for start in range(0, resamples, chunk):
        drawn = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=min(chunk, resamples - start))
        total = np.zeros(len(drawn))
        for order, ys, starts in sorted_scores:
            weights = drawn[:, order].astype(np.float64)
            positive, negative = weights * ys, weights * (1 - ys)
            block_pos, block_neg = np.add.reduceat(positive, starts, axis=1), np.add.reduceat(negative, starts, axis=1)
            below = np.cumsum(block_neg, axis=1) - block_neg
            pairs = positive.sum(1) * negative.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                total += (block_pos * (below + 0.5 * block_neg)).sum(1) / pairs
        found.append(total[np.isfinite(total)] / len(scores))
    found = np.concatenate(found)
    return (float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))) if len(found) else (math.nan,
                                                                                                      math.nan)


def delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """AUROC (ties count half) and its DeLong 95% interval, clipped to [0, 1]; NaN where a class is missing.

    From midranks (Sun & Xu 2014): each positive's share of negatives it
    outranks and each negative's share of positives above it are the
    structural components whose variances give the AUROC's.
    """
    positives, negatives = p[y == 1], p[y == 0]
    m, n = len(positives), len(negatives)
    if not (m and n):
        return math.nan, math.nan, math.nan
    ranks = stats.rankdata(np.concatenate([positives, negatives]))
    v10 = (ranks[:m] - stats.rankdata(positives)) / n  # per positive: share of negatives below it
    v01 = 1 - (ranks[m:] - stats.rankdata(negatives)) / m  # per negative: share of positives above it
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return auc, math.nan, math.nan
    half = Z95 * math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """AUPRC as average precision: precision at each distinct score threshold, weighted by the recall it adds."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    ends = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), len(ps) - 1]  # last row of each block of tied scores
    hits = np.cumsum(ys)[ends]
    recall_added = np.diff(np.r_[0.0, hits]) / hits[-1]
    return float(np.sum(recall_added * hits / (ends + 1)))


def _calibration(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept: the logistic regression of the outcome on the model's logit (Newton)."""
    if not 0 < y.sum() < len(y):
        return math.nan, math.nan
    features = np.column_stack([np.ones(len(p)), np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))])
    beta = np.zeros(2)
    for _ in range(50):
        fitted = 1 / (1 + np.exp(-np.clip(features @ beta, -500, 500)))
        hessian = features.T @ (features * (fitted * (1 - fitted))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, features.T @ (y - fitted))
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return (float(beta[1]), float(beta[0])) if np.all(np.isfinite(beta)) else (math.nan, math.nan)


def scores(y: np.ndarray, p: np.ndarray) -> dict:
    """The evaluation of one test set (see the module docstring)."""
    n, events = len(y), int(y.sum())
    both = 0 < events < n
    auroc, low, high = delong(y, p)
    slope, intercept = _calibration(y, p)
    rate_low, rate_high = wilson(events, n)
    return {"n_test": n, "events": events, "base_rate": events / n if n else math.nan,
            "event_rate_low": rate_low, "event_rate_high": rate_high,
            "auroc": auroc, "auroc_low": low, "auroc_high": high,
            "auprc": average_precision(y, p) if both else math.nan,
            "mean_risk": float(p.mean()) if n else math.nan, "brier": float(np.mean((p - y) ** 2)) if n else math.nan,
            "calibration_slope": slope, "calibration_intercept": intercept}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted risk against the observed rate in ``bins`` equal-count bins of predicted risk."""
    if not len(y):
        return []
    order = np.argsort(p, kind="stable")
    return [{"bin": k, "n": int(len(part)), "mean_risk": float(p[part].mean()), "observed": float(y[part].mean())}
            for k, part in enumerate(np.array_split(order, min(bins, len(y)))) if len(part)]


def evaluation(y, p, offsets, hospitals, released: set[str]) -> dict:
    """Per released hospital and ``"global"``: ``scores`` of the final model; ``reliability`` of the pooled set.

    ``p``: the final model's risks for the pooled test rows ``y``, hospital
    ``i``'s at ``offsets[i]:offsets[i + 1]`` (of ``hospitals``); ``released``:
    the scopes whose metrics the run released. ``pooled_only`` is true when
    there are more than ``DETAILED_HOSPITALS`` hospitals and only the pooled
    set was evaluated.
    """
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    found = {}
    if "global" in released:
        found["global"] = scores(y, p)
    pooled_only = len(hospitals) > DETAILED_HOSPITALS
    for i, hospital in enumerate([] if pooled_only else hospitals):
        if hospital in released:
            lo, hi = offsets[i], offsets[i + 1]
            found[hospital] = scores(y[lo:hi], p[lo:hi])
    return {"scopes": found, "reliability": reliability(y, p) if "global" in released else [],
            "pooled_only": pooled_only}
