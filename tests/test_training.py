import numpy as np
import pytest

from fedsim._tf import tf
from fedsim.models import logreg, mlp, resolve_model
from fedsim.training import Trainer, batch_plan, trainer_for


def test_batch_plan_visits_every_row_once_per_epoch():
    order, bounds = batch_plan(10, 2, 4, np.random.default_rng(0))
    assert bounds.tolist() == [0, 4, 8, 10, 14, 18, 20]  # partial last batch per epoch
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:]) == list(range(10))
    _, capped = batch_plan(10, 2, 4, np.random.default_rng(0), max_steps=2)
    assert capped.tolist() == [0, 4, 8]


def test_one_model_and_one_trace_serve_every_hospital():
    trainer = trainer_for(mlp, 7)
    assert trainer_for(mlp, 7) is trainer
    rng = np.random.default_rng(0)
    weights = trainer.initial_weights(0)
    for n in (5, 40, 333):  # hospitals of different sizes
        x = rng.normal(size=(n, 7)).astype(np.float32)
        y = (rng.random(n) < 0.3).astype(np.float32)
        new, loss, steps = trainer.fit(weights, x, y, epochs=2, batch_size=16, learning_rate=0.1, rng=rng)
        assert steps == 2 * -(-n // 16) and np.isfinite(loss)
        assert not np.allclose(new[0], weights[0])
        trainer.predict(new, x)
    assert trainer.train_function.experimental_get_tracing_count() == 1
    assert trainer.predict_function.experimental_get_tracing_count() == 1


def test_initial_weights_depend_only_on_seed():
    trainer = trainer_for(logreg, 3)
    a, b, c = trainer.initial_weights(1), trainer.initial_weights(1), trainer.initial_weights(2)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])


def test_logistic_regression_learns_a_separable_rule():
    trainer = trainer_for(logreg, 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    weights, _, _ = trainer.fit(trainer.initial_weights(0), x, y, epochs=5, batch_size=32,
                                learning_rate=0.5, rng=rng)
    assert np.mean((trainer.predict(weights, x) > 0.5) == y) > 0.95


def test_proximal_term_keeps_weights_near_the_global_model():
    trainer = trainer_for(logreg, 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    start = trainer.initial_weights(0)

    def drift(mu):
        new, _, _ = trainer.fit(start, x, y, epochs=3, batch_size=16, learning_rate=0.1,
                                rng=np.random.default_rng(0), proximal_mu=mu)
        return np.linalg.norm(new[0] - start[0])

    assert drift(5.0) < 0.5 * drift(0.0)


def two_logits(n):
    return tf.keras.Sequential([tf.keras.Input((n,)), tf.keras.layers.Dense(2)])


def two_outputs(n):
    x = tf.keras.Input((n,))
    return tf.keras.Model(x, [tf.keras.layers.Dense(1)(x), tf.keras.layers.Dense(1)(x)])


def one_value_per_row(n):
    return tf.keras.Sequential([tf.keras.Input((n,)), tf.keras.layers.Dense(1), tf.keras.layers.Reshape(())])


def other_width(n):
    return tf.keras.Sequential([tf.keras.Input((n + 1,)), tf.keras.layers.Dense(1)])


@pytest.mark.parametrize("model, message", [
    (lambda n: "logreg", r"must return a tf.keras model with one logit output \(n, 1\); got str"),
    (two_logits, r"one logit output \(n, 1\); got output shape \(None, 2\)"),
    (two_outputs, "got list of 2 outputs"),
    (one_value_per_row, r"got output shape \(None,\)"),
    (other_width, r"does not take inputs of shape \(n, 3\)"),
    (lambda: None, "calling it with n_features=3 failed"),
    ("cnn", "'cnn' needs square images"),
    (["mlp"], "unknown"),
])
def test_models_that_do_not_give_one_logit_per_row_are_refused(model, message):
    with pytest.raises(ValueError, match=f"^model: .*{message}"):
        resolve_model(model, 3)
    if callable(model):
        with pytest.raises(ValueError, match=f"^model: .*{message}"):
            Trainer(model, 3)


def test_a_custom_model_with_one_logit_is_accepted():
    def small(n):
        return tf.keras.Sequential([tf.keras.Input((n,)), tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])

    assert resolve_model(small, 3) is small and resolve_model("mlp") is mlp
