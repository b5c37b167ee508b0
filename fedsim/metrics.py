"""Binary classification metrics for many groups at once, as tidy rows.

One vectorised pass scores the pooled test set and every hospital's slice of
it, so evaluating 10,000 hospitals costs about what evaluating one does.
AUROC is the Mann-Whitney statistic (ties count half); AUPRC is average
precision over distinct thresholds (scikit-learn's definition; the tests check
both against scikit-learn).
"""

import numpy as np

METRICS = ("auroc", "auprc", "accuracy", "loss", "brier")


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of ``values[offsets[g]:offsets[g + 1]]`` for each group g (0 for empty groups)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def grouped_metrics(y: np.ndarray, p: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric for each group ``rows offsets[g]:offsets[g + 1]``.

    AUROC and AUPRC are NaN for a group with a single class (a small hospital's
    test split may hold no deaths); all metrics are NaN for an empty group.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = np.diff(offsets).astype(np.float64)
    if not len(y):  # no row at all (every hospital's evaluation was lost): every metric of every group is NaN
        return {m: np.full(len(n), np.nan) for m in METRICS}
    group = np.repeat(np.arange(len(n)), np.diff(offsets))
    with np.errstate(invalid="ignore", divide="ignore"):
        positives = _segment_sums(y, offsets)
        negatives = n - positives
        defined = (positives > 0) & (negatives > 0)

        # Rows sorted by score within each group; tie blocks share their average rank.
        order = np.lexsort((p, group))
        ps, ys, gs = p[order], y[order], group[order]
        new_block = np.r_[True, (ps[1:] != ps[:-1]) | (gs[1:] != gs[:-1])]
        block = np.cumsum(new_block) - 1
        block_start = np.flatnonzero(new_block)
        block_end = np.r_[block_start[1:], len(ps)]
        position = np.arange(len(ps)) - np.repeat(offsets[:-1], np.diff(offsets))  # 0-based within group
        first = position[block_start]
        mean_rank = (first + (first + block_end - block_start - 1)) / 2 + 1
        rank_sum = _segment_sums(ys * mean_rank[block], offsets)
        auroc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)

        # Average precision: descending thresholds, precision at the end of each tie block.
        # In ascending order, the rows scoring >= a block are those from its first row on.
        cum_y = np.concatenate([[0.0], np.cumsum(ys)])
        positives_below = cum_y[:-1] - cum_y[offsets[gs]]
        at_or_above_tp = positives[gs] - positives_below
        at_or_above_n = n[gs] - position
        precision = at_or_above_tp[block_start] / at_or_above_n[block_start]
        block_tp = _segment_sums(ys, np.r_[block_start, len(ps)])
        ap_terms = np.zeros(len(ps))
        ap_terms[block_start] = block_tp * precision
        auprc = _segment_sums(ap_terms, offsets) / positives

        correct = (p >= 0.5) == (y == 1)
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        return {
            "auroc": np.where(defined, auroc, np.nan),
            "auprc": np.where(defined, auprc, np.nan),
            "accuracy": _segment_sums(correct, offsets) / n,
            "loss": _segment_sums(loss, offsets) / n,
            "brier": _segment_sums((p - y) ** 2, offsets) / n,
        }


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The metrics of one set of labels ``y`` and risks ``p``."""
    return {m: float(v[0]) for m, v in grouped_metrics(y, p, np.array([0, len(y)])).items()}


def tidy_metrics(
    server_round: int,
    y: np.ndarray,
    p: np.ndarray,
    offsets: np.ndarray,
    hospitals: list[str],
) -> list[dict]:
    """Rows (round, scope, metric, value): the pooled set as "global", then each hospital."""
    rows = [{"round": server_round, "scope": "global", "metric": m, "value": v}
            for m, v in binary_metrics(y, p).items()]
    per_hospital = grouped_metrics(y, p, offsets)
    for i, hospital in enumerate(hospitals):
        rows += [{"round": server_round, "scope": hospital, "metric": m, "value": float(per_hospital[m][i])}
                 for m in METRICS]
    return rows
