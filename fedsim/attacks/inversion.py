"""Gradient inversion: rebuild the records behind one hospital's model update.

An honest-but-curious server holds the weights it sent and the weights a
hospital sent back. After one local step their difference is the learning rate
times the batch gradient; after several steps (FedAvg) the difference is still
a usable signal, treated as a gradient (Geiping et al. 2020). The attack
optimises dummy records until their gradient matches that signal:

- ``dlg``: squared-error gradient matching, labels optimised with the inputs
  (Zhu et al. 2019);
- ``idlg``: labels first, analytically, from the last layer's bias gradient
  (Zhao et al. 2020), then squared-error matching;
- ``geiping``: cosine-similarity matching with a total-variation prior for
  images (Geiping et al. 2020), labels as in iDLG.

Every model here ends in one logit, so the bias gradient of that logit is
``mean(sigmoid(z) - y)`` over the batch: for one record its sign is the label.
Adam drives the optimisation (DLG used L-BFGS, which TensorFlow does not ship);
dummies stay inside the known input range through a sigmoid
reparametrisation. One traced attack function per (model, input width, batch
size, method) is reused, on the process-wide model of ``fedsim.training``.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim._tf import tf
from fedsim.models import ModelFn, resolve_model
from fedsim.training import bce_loss, trainer_for
from fedsim.validation import Integer, Options, Positive, check

METHODS = ("dlg", "idlg", "geiping")


@dataclass(frozen=True)
class Reconstruction:
    """Dummy records whose gradient matches the observed one (model-input space)."""

    x: np.ndarray  # (batch, n_features)
    labels: np.ndarray  # (batch,) recovered 0/1 labels
    distance: float  # final gradient-matching loss


def recover_labels(gradient: Sequence[np.ndarray], batch_size: int = 1, mean_risk: float = 0.5) -> np.ndarray:
    """Labels from the bias gradient of the one-logit output (iDLG).

    The bias gradient is ``mean(p - y)``; for one record ``y = 1`` exactly when
    it is negative. For a batch, the count of positives is estimated as
    ``batch * (mean_risk - gradient)`` (``mean_risk``: the model's mean
    predicted risk), so the label multiset, not the order, is recovered.
    """
    bias = float(np.asarray(gradient[-1]).ravel()[0])
    if batch_size == 1:
        return np.array([1.0 if bias < 0 else 0.0], np.float32)
    positives = int(np.clip(round(batch_size * (mean_risk - bias)), 0, batch_size))
    return (np.arange(batch_size) < positives).astype(np.float32)


class _Inverter:
    """The traced optimisation loop for one (model, width, batch, method, image shape)."""

    def __init__(self, model_fn: ModelFn, n_features: int, batch: int, method: str,
                 image_shape: tuple[int, int] | None):
        self.trainer = trainer_for(model_fn, n_features)
        self.method = method
        self.image_shape = image_shape
        self.z = tf.Variable(tf.zeros([batch, n_features]))
        self.label_logits = tf.Variable(tf.zeros([batch]))
        self.optimizer = tf.keras.optimizers.Adam(learning_rate=0.1)
        self.optimizer.build([self.z, self.label_logits])
        weight_specs = [tf.TensorSpec(v.shape, v.dtype) for v in self.trainer.model.weights]
        grad_specs = [tf.TensorSpec(v.shape, v.dtype) for v in self.trainer.model.trainable_variables]
        row = tf.TensorSpec([n_features], tf.float32)
        scalar = tf.TensorSpec([], tf.float32)
        self.run = tf.function(self._run, input_signature=[
            weight_specs, grad_specs, row, row, tf.TensorSpec([batch], tf.float32),
            tf.TensorSpec([batch, n_features], tf.float32), tf.TensorSpec([], tf.int32), scalar, scalar,
        ]).get_concrete_function()

    def _total_variation(self, x):
        if self.image_shape is None:
            return tf.constant(0.0)
        image = tf.reshape(x, [-1, *self.image_shape])
        return (tf.reduce_mean(tf.abs(image[:, 1:] - image[:, :-1]))
                + tf.reduce_mean(tf.abs(image[:, :, 1:] - image[:, :, :-1])))

    def _distance(self, grads, target):
        if self.method == "geiping":
            dot = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, target)])
            norms = tf.sqrt(tf.add_n([tf.reduce_sum(g * g) for g in grads])) * tf.sqrt(
                tf.add_n([tf.reduce_sum(t * t) for t in target]))
            return 1.0 - dot / (norms + 1e-12)
        return tf.add_n([tf.reduce_sum(tf.square(g - t)) for g, t in zip(grads, target)])

    def _run(self, weights, target, low, high, labels, z0, steps, learning_rate, tv_weight):
        model = self.trainer.model
        for variable, value in zip(model.weights, weights):
            variable.assign(value)
        self.z.assign(z0)
        self.label_logits.assign(tf.zeros_like(self.label_logits))
        for variable in self.optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        self.optimizer.learning_rate.assign(learning_rate)
        variables = [self.z, self.label_logits] if self.method == "dlg" else [self.z]
        objective = tf.constant(0.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as outer:
                x = low + (high - low) * tf.sigmoid(self.z)
                y = tf.sigmoid(self.label_logits) if self.method == "dlg" else labels
                with tf.GradientTape() as inner:
                    logits = model(x, training=True)[:, 0]
                    loss = bce_loss(y, logits)
                grads = inner.gradient(loss, model.trainable_variables)
                objective = self._distance(grads, target) + tv_weight * self._total_variation(x)
            self.optimizer.apply_gradients(zip(outer.gradient(objective, variables), variables))
        x = low + (high - low) * tf.sigmoid(self.z)
        y = tf.sigmoid(self.label_logits) if self.method == "dlg" else labels
        return x, y, objective


_INVERTERS: dict[tuple, _Inverter] = {}


def invert_gradient(
    model: str | ModelFn,
    weights: Sequence[np.ndarray],
    gradient: Sequence[np.ndarray],
    n_features: int,
    *,
    batch_size: int = 1,
    method: str = "geiping",
    steps: int = 1000,
    learning_rate: float = 0.1,
    total_variation: float | None = None,
    input_range: tuple = (0.0, 1.0),
    image_shape: tuple[int, int] | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct ``batch_size`` records from the gradient of the model at ``weights``.

    ``n_features``: the model's input width (``Federation.n_features``).
    ``gradient``: one array per trainable variable (a batch-mean gradient).
    ``input_range``: (low, high), scalars or one value per input, known to the
    attacker (pixel range, a data dictionary's feature ranges).
    ``image_shape``: (height, width) of flattened images, for the
    total-variation prior; ``total_variation`` is its weight (default 1e-4 for
    ``geiping`` on images, else 0).
    """
    check("method", method, Options(*METHODS))
    batch_size, steps = check("batch_size", batch_size, Integer(min=1)), check("steps", steps, Integer(min=1))
    check("learning_rate", learning_rate, Positive())
    model_fn = resolve_model(model)
    trainer = trainer_for(model_fn, n_features)
    expected = [tuple(v.shape) for v in trainer.model.trainable_variables]
    if [np.shape(g) for g in gradient] != expected:
        raise ValueError(f"gradient: expected arrays of shapes {expected}, got {[np.shape(g) for g in gradient]}")
    if not all(np.isfinite(g).all() for g in gradient):
        raise ValueError("gradient: contains NaN or infinite values")
    low, high = (np.broadcast_to(np.asarray(b, np.float32), (n_features,)) for b in input_range)
    if not np.all(high > low):
        raise ValueError("input_range: every high must exceed its low")
    if total_variation is None:
        total_variation = 1e-4 if method == "geiping" and image_shape is not None else 0.0
    key = (model_fn, n_features, batch_size, method, image_shape)
    if key not in _INVERTERS:
        _INVERTERS[key] = _Inverter(model_fn, n_features, batch_size, method, image_shape)
    rng = np.random.default_rng(seed)
    z0 = rng.normal(0.0, 1.0 if batch_size > 1 else 0.1, (batch_size, n_features)).astype(np.float32)
    mean_risk = float(trainer.predict(weights, low + (high - low) / (1 + np.exp(-z0))).mean())
    labels = recover_labels(gradient, batch_size, mean_risk)
    weights = [tf.constant(w, v.dtype) for w, v in zip(weights, trainer.model.weights)]
    x, y, distance = _INVERTERS[key].run(
        weights, [tf.constant(g, tf.float32) for g in gradient], low, high, labels, z0,
        tf.constant(steps), tf.constant(learning_rate, tf.float32), tf.constant(total_variation, tf.float32))
    return Reconstruction(x.numpy(), np.round(y.numpy()).astype(np.float32), float(distance))


def update_as_gradient(sent: Sequence[np.ndarray], returned: Sequence[np.ndarray], learning_rate: float,
                       local_steps: int = 1) -> list[np.ndarray]:
    """The gradient signal in a plain SGD update: ``(sent - returned) / (lr * steps)``.

    Exact for one local step; for several steps, the average of the step
    gradients along the local trajectory.
    """
    return [(np.asarray(a, np.float32) - np.asarray(b, np.float32)) / (learning_rate * local_steps)
            for a, b in zip(sent, returned)]


def true_gradient(model: str | ModelFn, weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray
                  ) -> list[np.ndarray]:
    """The batch-mean gradient of the loss on rows (x, y): what one plain step reveals."""
    x = np.asarray(x, np.float32)
    return trainer_for(resolve_model(model), x.shape[1]).gradient(weights, x, np.asarray(y, np.float32))
