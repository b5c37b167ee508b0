"""Gradient inversion: records and scans come back out of one update, and defenses push them back."""

import numpy as np
import pytest

import fedsim as fs
from fedsim.attacks import invert_gradient, psnr, recover_labels, ssim, true_gradient, update_as_gradient
from fedsim.attacks.scores import decode, match, record_scores
from fedsim.models import cnn, mlp
from fedsim.privacy.sparsify import sparsify
from fedsim.training import trainer_for


def test_a_tabular_record_comes_back_from_one_gradient(small_fed):
    fed = small_fed
    weights = trainer_for(mlp, fed.n_features).initial_weights(0)
    low, high = fed.x_train.min(0), fed.x_train.max(0) + 1e-6
    for i in range(5):
        x, y = fed.x_train[i : i + 1], fed.y_train[i : i + 1]
        found = invert_gradient("mlp", weights, true_gradient("mlp", weights, x, y), fed.n_features,
                                method="idlg", steps=500, input_range=(low, high), seed=i)
        scores = record_scores(found.x, x, fed)
        assert found.labels.tolist() == y.tolist()
        # Every numeric feature within 5% of its range; sex and admission type exact.
        assert scores["max_rel_error"] < 0.05, scores
        assert scores["categorical_match"] == 1.0


def test_decode_returns_the_original_record(small_fed):
    fed = small_fed
    records = decode(fed.preprocessor, fed.x_train[:20])
    original = fed.data[fed.data["split"] == "train"].head(20).reset_index(drop=True)
    measured = original["age"].notna()
    assert np.allclose(records["age"][measured], original["age"][measured], atol=1e-3)
    assert (records["admission_type"] == original["admission_type"].astype(str)).all()


def test_labels_come_from_the_sign_of_the_bias_gradient():
    assert recover_labels([np.zeros(3), np.array([-0.2])]).tolist() == [1.0]
    assert recover_labels([np.zeros(3), np.array([0.3])]).tolist() == [0.0]
    # A batch of 4 with mean risk 0.5 and bias gradient 0.5 - 3/4: three positives.
    assert recover_labels([np.zeros(3), np.array([-0.25])], batch_size=4, mean_risk=0.5).sum() == 3


def test_one_sgd_step_reveals_the_gradient():
    trainer = trainer_for(mlp, 5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 5)).astype(np.float32), np.array([0, 1, 1, 0], np.float32)
    weights = trainer.initial_weights(0)
    new, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=4, learning_rate=0.1, rng=rng)
    for a, b in zip(update_as_gradient(weights, new, 0.1), true_gradient(mlp, weights, x, y)):
        assert np.allclose(a, b, atol=1e-5)


def test_image_scores():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32))
    assert ssim(image, image) == pytest.approx(1.0)
    assert psnr(image, np.clip(image + 0.01, 0, 1)) > 39
    assert ssim(image, rng.random((32, 32))) < 0.2
    assert match(np.array([[1.0, 1], [0, 0]]), np.array([[0.0, 0], [5, 5], [1, 1]])).tolist() == [2, 0]


def test_dpsgd_trains_convolutions_with_per_example_clipping():
    trainer = trainer_for(cnn, 1024)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 1024), dtype=np.float32), (rng.random(32) < 0.5).astype(np.float32)
    weights = trainer.initial_weights(0)
    plain, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1, rng=np.random.default_rng(1))
    # A clip no gradient reaches and no noise: exactly plain SGD.
    loose, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1,
                              rng=np.random.default_rng(1), dp=(1e6, 0.0))
    assert max(np.abs(a - b).max() for a, b in zip(plain, loose)) < 1e-5
    # A tight clip bounds each step: the update is at most lr * clip per step.
    tight, _, steps = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1,
                                  rng=np.random.default_rng(1), dp=(0.01, 0.0))
    moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(tight, weights)))
    assert moved <= 0.1 * 0.01 * steps + 1e-6


def test_sparsify_keeps_the_largest_entries():
    update = [np.array([[0.1, -5.0], [0.2, 3.0]]), np.array([-0.3, 4.0])]
    kept = sparsify(update, keep=0.5)
    assert np.count_nonzero(np.concatenate([k.ravel() for k in kept])) == 3
    assert kept[0][0, 1] == -5.0 and kept[0][0, 0] == 0.0 and kept[1][1] == 4.0


@pytest.mark.parametrize("make, field", [
    (lambda: fs.attacks.GradientInversion(method="magic"), "method"),
    (lambda: fs.attacks.GradientInversion(target="everyone"), "target"),
    (lambda: fs.attacks.GradientInversion(round=0), "round"),
    (lambda: fs.privacy.Sparsify(keep=0), "keep"),
])
def test_bad_attack_settings_raise_naming_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        make()


def test_bad_gradients_are_refused(small_fed):
    weights = trainer_for(mlp, small_fed.n_features).initial_weights(0)
    gradient = [np.zeros_like(w) for w in weights]
    with pytest.raises(ValueError, match="^gradient: expected arrays"):
        invert_gradient("mlp", weights, gradient[:-1], small_fed.n_features)
    gradient[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="^gradient: contains NaN"):
        invert_gradient("mlp", weights, gradient, small_fed.n_features)
