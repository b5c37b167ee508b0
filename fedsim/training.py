"""The compiled local training step, shared by every hospital in the process.

A ``Trainer`` owns ONE tf.keras model and ONE traced ``tf.function`` that runs
a whole local training pass (all epochs, all batches) inside the graph. Each
hospital's turn is: assign the global weights, run the pass over that
hospital's rows, read the weights back. Nothing is rebuilt or retraced.

DP-SGD is a second traced pass over the same model: tensorflow-privacy's
per-example clipping (fast gradient clipping for dense models, vectorised
per-example gradients for convolutions) bounds every example's gradient, then Gaussian noise is
added to the clipped batch gradient. Clip norm, noise multiplier and the
expected batch size are tensor inputs, so every DP setting shares the one
trace. Its batches are sampled as the accountant composes them
(``DPTraining``, ``poisson_plan``): each record joins each step
independently, so batches vary in size and may be empty; the clipped
gradients are summed and divided by the *expected* batch size (dividing by
the realized one would change the sensitivity the accountant assumes), and
an empty batch still takes its noisy step.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads, gradient_clipping_utils, layer_registry  # noqa: E402, I001
from tensorflow_privacy.privacy.optimizers import clip_and_aggregate_gradients  # noqa: E402, I001

from fedsim._tf import tf
from fedsim.models import ModelFn, build_model, resolve_model
from fedsim.randomness import kept_global_generators

Weights = list[np.ndarray]


def batch_plan(
    n: int, epochs: int, batch_size: int, rng: np.random.Generator, max_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row order and batch boundaries for ``epochs`` shuffled passes over ``n`` rows.

    Batch ``b`` is ``order[bounds[b]:bounds[b + 1]]``; each epoch ends with its
    partial batch. ``max_steps`` caps the number of batches.
    """
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)]).astype(np.int32)
    starts = [e * n + np.arange(0, n, batch_size) for e in range(epochs)]
    bounds = np.append(np.concatenate(starts), epochs * n).astype(np.int32)
    if max_steps is not None:
        bounds = bounds[: max_steps + 1]
    return order, bounds


SAMPLINGS = ("poisson", "shuffle")


class DPTraining(NamedTuple):
    """DP-SGD's settings of a hospital's local training (``fedsim.recipe.TrainingRecipe.dp``).

    ``sampling``: ``"poisson"`` (each record joins each step independently
    with probability batch / rows, what the accountant's Poisson subsampling
    composes) or ``"shuffle"`` (shuffled fixed-size batches, accounted
    without amplification).
    """

    l2_norm_clip: float
    noise_multiplier: float
    sampling: str = "poisson"


def poisson_plan(n: int, epochs: int, batch_size: int, rng: np.random.Generator, max_steps: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """DP-SGD's batches: at each of ``epochs * ceil(n / batch_size)`` steps (capped at ``max_steps``) every one of
    the ``n`` rows joins independently with probability ``batch_size / n`` (Poisson subsampling).

    Returned as ``batch_plan`` returns them (batch ``b`` is ``order[bounds[b]:bounds[b + 1]]``); batches vary in
    size, and may be empty.
    """
    steps = epochs * math.ceil(n / batch_size)
    steps = steps if max_steps is None else min(steps, max_steps)
    chosen = rng.random((steps, n)) < min(1.0, batch_size / n)
    order = np.nonzero(chosen)[1].astype(np.int32)
    return order, np.concatenate([[0], np.cumsum(chosen.sum(axis=1))]).astype(np.int32)


def local_batches(n: int, epochs: int, batch_size: int, rng: np.random.Generator, max_steps: int | None = None,
                  dp: DPTraining | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A local pass's batches: Poisson-sampled under DP-SGD's default, shuffled otherwise (``batch_plan``)."""
    if dp is not None and dp.sampling == "poisson":
        return poisson_plan(n, epochs, batch_size, rng, max_steps)
    return batch_plan(n, epochs, batch_size, rng, max_steps)


def expected_batch(n: int, batch_size: int) -> int:
    """The expected size of a DP-SGD batch of a hospital with ``n`` rows: what its clipped sum is divided by."""
    return min(batch_size, n)


def bce_loss(labels, logits):
    """Binary cross-entropy of one-logit outputs, averaged over the batch: every training objective here."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def noise_draws(rng: np.random.Generator, steps: int, n_parameters: int) -> np.ndarray:
    """DP-SGD's standard normal draws of one hospital's local pass, (steps, parameters), from its generator.

    Drawn after the batch plan, from the same generator, so that a pass
    repeats exactly for a seed, alone or in a cohort.
    """
    return rng.standard_normal((steps, n_parameters), dtype=np.float32)


class Trainer:
    """One model, its SGD optimizer and its traced train/predict functions."""

    def __init__(self, model_fn: ModelFn, n_features: int):
        self.model_fn = model_fn
        self.n_features = n_features
        self.model = build_model(model_fn, n_features)
        self.loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        self.model.compile(loss=self.loss)  # fast gradient clipping reads the loss's reduction here
        self._initial: dict[int, Weights] = {}
        self.optimizer = tf.keras.optimizers.SGD(learning_rate=0.1)
        self.optimizer.build(self.model.trainable_variables)  # no variables created while tracing
        weight_specs = [tf.TensorSpec(v.shape, v.dtype) for v in self.model.weights]
        x_spec = tf.TensorSpec([None, n_features], tf.float32)
        scalar = tf.TensorSpec([], tf.float32)
        # weights, x, y, row order, batch bounds, learning rate: what every training pass takes.
        plan_specs = [weight_specs, x_spec, tf.TensorSpec([None], tf.float32),
                      tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32), scalar]
        self.train_function = tf.function(self._train_pass, input_signature=[*plan_specs, scalar])  # + proximal mu
        self.n_parameters = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
        self.dp_train_function = tf.function(  # + clip, noise multiplier, expected batch, normal draws per step
            self._dp_train_pass,
            input_signature=[*plan_specs, scalar, scalar, scalar, tf.TensorSpec([None, self.n_parameters], tf.float32)],
        )
        self.predict_function = tf.function(self._predict_pass, input_signature=[weight_specs, x_spec])
        self.logits_function = tf.function(self._logits_pass, input_signature=[weight_specs, x_spec])
        # Traced once, here; calling the concrete functions skips per-call argument binding.
        self._train = self.train_function.get_concrete_function()
        self._predict = self.predict_function.get_concrete_function()
        self._dp_train = None  # traced on first DP-SGD use

    def _inputs(self, weights: Sequence[np.ndarray]) -> list[tf.Tensor]:
        """Weights as tensors of the model's dtypes (FedOpt strategies send float64)."""
        variables = self.model.weights
        if len(weights) != len(variables):
            raise ValueError(f"weights: expected {len(variables)} arrays for this model, got {len(weights)}")
        return [tf.constant(w, dtype=v.dtype) for w, v in zip(weights, variables)]

    def _assign(self, weights):
        for variable, value in zip(self.model.weights, weights):
            variable.assign(value)

    def _train_pass(self, weights, x, y, order, bounds, learning_rate, proximal_mu):
        """Assign weights, run every batch of the plan, return (new weights, mean loss)."""
        self._assign(weights)
        self.optimizer.learning_rate.assign(learning_rate)
        variables = self.model.trainable_variables
        trainable = {v.ref() for v in variables}
        anchor = [w for v, w in zip(self.model.weights, weights) if v.ref() in trainable]
        total = tf.constant(0.0)
        n_steps = tf.shape(bounds)[0] - 1
        for b in tf.range(n_steps):
            idx = order[bounds[b] : bounds[b + 1]]
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                logits = self.model(xb, training=True)[:, 0]
                loss = bce_loss(yb, logits)
                # FedProx: mu/2 * ||w - w_global||^2 keeps the local model near the global one.
                prox = tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in zip(variables, anchor)])
                objective = loss + 0.5 * proximal_mu * prox
            grads = tape.gradient(objective, variables)
            self.optimizer.apply_gradients(zip(grads, variables))
            total += loss
        mean_loss = total / tf.cast(tf.maximum(n_steps, 1), tf.float32)
        return [v.read_value() for v in self.model.weights], mean_loss

    def _dp_train_pass(self, weights, x, y, order, bounds, learning_rate, l2_norm_clip, noise_multiplier, expected,
                       noise):
        """DP-SGD: per-example clipping (tensorflow-privacy), summed over the batch and divided by the expected
        batch size, Gaussian noise, SGD step; an empty batch takes the noise alone."""
        self._assign(weights)
        self.optimizer.learning_rate.assign(learning_rate)
        variables = self.model.trainable_variables
        sizes = [int(np.prod(v.shape)) for v in variables]
        total = tf.constant(0.0)
        n_steps = tf.shape(bounds)[0] - 1
        for b in tf.range(n_steps):
            idx = order[bounds[b] : bounds[b + 1]]
            grads, loss = self._clipped_sum(tf.gather(x, idx), tf.gather(y, idx)[:, None], l2_norm_clip, expected)
            # One example moves the clipped sum by at most clip: divided by the expected batch, the noise is
            # noise_multiplier * clip / expected. The draws come from the hospital's own secret generator
            # (``noise_draws``), the same ones the cohort trainer uses, so runs with one noise_seed repeat exactly
            # on both paths; tensorflow-privacy's add_aggregate_noise draws the same Gaussian from a stateful
            # generator whose state would carry over.
            stddev = noise_multiplier * l2_norm_clip / expected
            noisy = [g + stddev * tf.reshape(d, tf.shape(g)) for g, d in zip(grads, tf.split(noise[b], sizes))]
            self.optimizer.apply_gradients(zip(noisy, variables))
            total += loss
        mean_loss = total / tf.cast(tf.maximum(n_steps, 1), tf.float32)
        return [v.read_value() for v in self.model.weights], mean_loss

    def _clipped_sum(self, xb, yb, l2_norm_clip, expected):
        """The batch's clipped gradients summed and divided by ``expected`` (zero for an empty batch), and its loss."""
        realized = tf.cast(tf.shape(xb)[0], tf.float32)

        def clipped():
            grads, logits = self._clipped_mean_gradient(xb, yb, l2_norm_clip)
            return [g * (realized / expected) for g in grads], self.loss(yb, logits)

        def empty():
            return [tf.zeros_like(v) for v in self.model.trainable_variables], tf.constant(0.0)

        return tf.cond(realized > 0, clipped, empty)

    def _clipped_mean_gradient(self, xb, yb, l2_norm_clip):
        """The batch mean of per-example gradients, each clipped to ``l2_norm_clip`` (tensorflow-privacy).

        Fast gradient clipping (norms without per-example gradients) where every
        layer is registered (Dense, Embedding); otherwise (convolutions)
        tensorflow-privacy's vectorised per-example clipping.
        """
        if self._fast_clipping:
            grads, logits, _ = clip_grads.compute_clipped_gradients_and_outputs(
                self.model, l2_norm_clip, self.registry, xb, yb, clipping_loss=self.loss
            )
            return grads, logits
        variables = self.model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            logits = self.model(xb, training=True)
            losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=yb, logits=logits)[:, 0]
        grads = clip_and_aggregate_gradients.clip_and_aggregate_gradients(
            tape, losses, variables, l2_norm_clip=l2_norm_clip, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return grads, logits

    def _predict_pass(self, weights, x):
        return tf.sigmoid(self._logits_pass(weights, x))

    def _logits_pass(self, weights, x):
        self._assign(weights)
        return self.model(x, training=False)[:, 0]

    def initial_weights(self, seed: int) -> Weights:
        """Freshly initialised weights, the same for the same seed."""
        if seed not in self._initial:
            with kept_global_generators():  # Keras seeds them: a run's own (secret) draws stay as they were
                tf.keras.utils.set_random_seed(seed)
                fresh = self.model_fn(self.n_features)
                fresh.build((None, self.n_features))
            self._initial[seed] = fresh.get_weights()
        return [w.copy() for w in self._initial[seed]]

    def fit(
        self,
        weights: Sequence[np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        rng: np.random.Generator,
        proximal_mu: float = 0.0,
        max_steps: int | None = None,
        dp: DPTraining | tuple[float, float] | None = None,
    ) -> tuple[Weights, float, int]:
        """Local SGD from ``weights`` on (x, y): new weights, mean loss, steps run.

        ``dp`` (``DPTraining``, or ``(l2_norm_clip, noise_multiplier)`` with
        Poisson sampling) trains with DP-SGD instead (FedProx's proximal term
        is not supported there).
        """
        dp = None if dp is None else DPTraining(*dp)
        order, bounds = local_batches(len(x), epochs, batch_size, rng, max_steps, dp)
        lr = tf.constant(learning_rate, tf.float32)
        if dp is None:
            new, loss = self._train(self._inputs(weights), x, y, order, bounds, lr,
                                    tf.constant(proximal_mu, tf.float32))
        else:
            new, loss = self.dp_pass()(self._inputs(weights), x, y, order, bounds, lr,
                                       tf.constant(dp.l2_norm_clip, tf.float32),
                                       tf.constant(dp.noise_multiplier, tf.float32),
                                       tf.constant(expected_batch(len(x), batch_size), tf.float32),
                                       noise_draws(rng, len(bounds) - 1, self.n_parameters))
        return [w.numpy() for w in new], float(loss), len(bounds) - 1

    def dp_pass(self):
        """The DP-SGD concrete function, traced on first use."""
        if self._dp_train is None:
            self.registry = layer_registry.make_default_layer_registry()
            self._fast_clipping = gradient_clipping_utils.all_trainable_layers_are_registered(
                self.model, self.registry)
            logger = tf.get_logger()
            level = logger.level
            logger.setLevel("ERROR")  # AutoGraph notes about tensorflow-privacy helpers it runs as-is
            try:
                self._dp_train = self.dp_train_function.get_concrete_function()
            finally:
                logger.setLevel(level)
        return self._dp_train

    def gradient(self, weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> Weights:
        """The batch-mean loss gradient on (x, y), one array per trainable variable: what one SGD step reveals."""
        self._assign(self._inputs(weights))
        with tf.GradientTape() as tape:
            logits = self.model(tf.constant(x, tf.float32), training=True)[:, 0]
            loss = bce_loss(tf.constant(y, tf.float32), logits)
        return [g.numpy() for g in tape.gradient(loss, self.model.trainable_variables)]

    def predict(self, weights: Sequence[np.ndarray], x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Risk (probability of the positive class) for each row of ``x``."""
        return self._chunked(self._predict, weights, x, chunk)

    def logits(self, weights: Sequence[np.ndarray], x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """The model's logit for each row of ``x`` (exact where the risk rounds to 0 or 1)."""
        return self._chunked(self.logits_function, weights, x, chunk)

    def _chunked(self, function, weights, x, chunk):
        weights = self._inputs(weights)
        parts = [function(weights, x[i : i + chunk]).numpy() for i in range(0, len(x), chunk)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


_TRAINERS: dict[tuple[ModelFn, int], Trainer] = {}


def trainer_for(model_fn: ModelFn, n_features: int) -> Trainer:
    """The process-wide Trainer for this model and input width (built once)."""
    key = (model_fn, n_features)
    if key not in _TRAINERS:
        _TRAINERS[key] = Trainer(model_fn, n_features)
    return _TRAINERS[key]


def initial_weights(model, n_features: int, seed: int = 0) -> Weights:
    """Fresh weights of a model (a name from ``fedsim.models`` or a callable), the same for the same seed."""
    return trainer_for(resolve_model(model), n_features).initial_weights(seed)
