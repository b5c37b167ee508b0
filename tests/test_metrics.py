import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fedsim.metrics import binary_metrics, grouped_metrics


@pytest.mark.parametrize("seed", range(5))
def test_grouped_metrics_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 60, size=12)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    y = (rng.random(offsets[-1]) < 0.3).astype(float)
    p = np.round(rng.random(offsets[-1]) * 0.5 + 0.3 * y, 1)  # coarse: many ties
    got = grouped_metrics(y, p, offsets)
    for g in range(len(sizes)):
        yg, pg = y[offsets[g]:offsets[g + 1]], p[offsets[g]:offsets[g + 1]]
        if 0 < yg.sum() < len(yg):
            assert got["auroc"][g] == pytest.approx(roc_auc_score(yg, pg))
            assert got["auprc"][g] == pytest.approx(average_precision_score(yg, pg))
        else:
            assert np.isnan(got["auroc"][g]) and np.isnan(got["auprc"][g])
        assert got["accuracy"][g] == pytest.approx(np.mean((pg >= 0.5) == (yg == 1)))
        assert got["brier"][g] == pytest.approx(np.mean((pg - yg) ** 2))


def test_single_set_metrics_and_empty_groups():
    y = np.array([0, 0, 1, 1.0])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p)
    assert m["auroc"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    empty = grouped_metrics(y, p, np.array([0, 0, 4]))
    assert np.isnan(empty["accuracy"][0]) and empty["auroc"][1] == pytest.approx(0.75)
