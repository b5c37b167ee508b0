"""Binary classification metrics, global and per hospital, as tidy rows."""

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

METRICS = ("auroc", "auprc", "accuracy", "loss", "brier")


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC, accuracy at 0.5, log loss and Brier score of risks ``p``.

    AUROC and AUPRC are NaN when ``y`` holds a single class (a small hospital's
    test split may have no deaths); the other metrics are always defined.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    both_classes = 0 < y.sum() < len(y)
    return {
        "auroc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "auprc": float(average_precision_score(y, p)) if both_classes else float("nan"),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((p - y) ** 2)),
    }


def tidy_metrics(
    server_round: int,
    y: np.ndarray,
    p: np.ndarray,
    offsets: np.ndarray,
    hospitals: list[str],
) -> list[dict]:
    """Rows (round, scope, metric, value): the pooled set as "global", then each hospital."""
    rows = [
        {"round": server_round, "scope": "global", "metric": m, "value": v}
        for m, v in binary_metrics(y, p).items()
    ]
    for h, lo, hi in zip(hospitals, offsets[:-1], offsets[1:]):
        rows += [
            {"round": server_round, "scope": h, "metric": m, "value": v}
            for m, v in binary_metrics(y[lo:hi], p[lo:hi]).items()
        ]
    return rows
