"""Cohort training: every hospital of a round trained at once, in one compiled program.

A ``CohortTrainer`` holds one Keras model whose weights are stacked along a
hospital axis (a Dense kernel is (K, in, out)): K hospitals' local passes run
as one program, each hospital on its own rows, batch order, step count and
learning rate. Hospitals with fewer steps are masked once their steps are
done; a last partial batch is masked where it runs short. The result is, up
to floating-point summation order, what ``fedsim.training.Trainer`` gives
each hospital alone, for the same batch plans and the same noise.

A layer of the per-hospital model becomes its cohort form: ``Dense`` ->
``CohortDense`` (a batched matmul), ``Conv2D`` -> ``CohortConv2D`` (a grouped
convolution, one group per hospital, computed as a depthwise one); ``Reshape`` and ``Flatten`` act per
example as they are. A model with any other layer has no cohort form (its
hospitals are trained one after another).

DP-SGD: per-example gradient norms come from tensorflow-privacy's fast
gradient clipping (``clip_grads.compute_gradient_norms`` over its layer
registry, into which ``CohortDense`` is registered with the same
squared-norm rule as ``Dense``: an example's gradient is nonzero in its own
hospital's slice only, so its norm is the Dense one). The clipped mean
gradient of each hospital is the gradient of its clip-weighted losses, as in
tensorflow-privacy's ``compute_clipped_gradients_and_outputs``; rather than
a second forward and backward pass for it, it is assembled from what the
registry already handed over (each layer's inputs and the per-example
gradients at its pre-activation: a Dense kernel's gradient is their
clip-weighted outer product), which makes DP-SGD cost about one pass. Each
hospital's noise is drawn by its own seeded generator. Convolutions have no
fast-clipping rule in tensorflow-privacy: a model with one trains under
DP-SGD one hospital after another.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads, layer_registry  # noqa: I001
from tensorflow_privacy.privacy.fast_gradient_clipping.registry_functions import einsum_utils  # noqa: I001

from fedsim._tf import tf
from fedsim.models import ModelFn, build_model
from fedsim.training import DPTraining


class CohortDense(tf.keras.layers.Layer):
    """``tf.keras.layers.Dense`` for K hospitals at once: inputs (K * B, in), kernel (K, in, out)."""

    def __init__(self, dense: tf.keras.layers.Dense, cohort: int, batch: int):
        super().__init__(name=f"cohort_{dense.name}")
        self.units, self.use_bias, self.cohort, self.batch = dense.units, dense.use_bias, cohort, batch
        self.activation = dense.activation

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (self.cohort, int(input_shape[-1]), self.units))
        self.bias = self.add_weight("bias", (self.cohort, self.units)) if self.use_bias else None

    def pre_activation(self, x):
        """The layer's output before its activation, (K * B, out)."""
        z = tf.matmul(tf.reshape(x, (self.cohort, self.batch, -1)), self.kernel)
        if self.use_bias:
            z = z + self.bias[:, None, :]
        return tf.reshape(z, (self.cohort * self.batch, self.units))

    def call(self, x):
        return self.activation(self.pre_activation(x))


def _cohort_dense_norms(seen: list, layer, input_args, input_kwargs, tape, num_microbatches=None):
    """tensorflow-privacy registry function for ``CohortDense``: Dense's squared-norm rule on its pre-activation.

    Each (layer, inputs, per-example pre-activation gradients) the rule sees
    is appended to ``seen``: the clipped gradient is built from them.
    """
    (x,) = input_args
    base_vars = layer.pre_activation(x)
    tape.watch(base_vars)

    def sqr_norm_fn(grads):
        seen.append((layer, x, grads))
        return einsum_utils.compute_fast_einsum_squared_gradient_norm(
            "...b,bc->...c", x, grads, "c" if layer.use_bias else None, num_microbatches)

    return base_vars, layer.activation(base_vars), sqr_norm_fn


class CohortConv2D(tf.keras.layers.Layer):
    """``tf.keras.layers.Conv2D`` for K hospitals at once: one group of a grouped convolution per hospital."""

    def __init__(self, conv: tf.keras.layers.Conv2D, cohort: int, batch: int):
        super().__init__(name=f"cohort_{conv.name}")
        self.filters, self.kernel_size, self.strides = conv.filters, tuple(conv.kernel_size), tuple(conv.strides)
        self.padding, self.use_bias, self.activation = conv.padding.upper(), conv.use_bias, conv.activation
        self.cohort, self.batch = cohort, batch

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (self.cohort, *self.kernel_size, int(input_shape[-1]), self.filters))
        self.bias = self.add_weight("bias", (self.cohort, self.filters)) if self.use_bias else None

    def call(self, x):
        k, b, (h, w, c) = self.cohort, self.batch, x.shape[1:]
        grouped = tf.reshape(tf.transpose(tf.reshape(x, (k, b, h, w, c)), (1, 2, 3, 0, 4)), (b, h, w, k * c))
        # A grouped convolution as a depthwise one (every input channel with its hospital's f filters), summed over
        # each hospital's input channels: TensorFlow has no gradient of grouped convolutions on CPUs.
        kernel = tf.reshape(tf.transpose(self.kernel, (1, 2, 0, 3, 4)), (*self.kernel_size, k * c, self.filters))
        y = tf.nn.depthwise_conv2d(grouped, kernel, strides=(1, *self.strides, 1), padding=self.padding)
        out_h, out_w = y.shape[1], y.shape[2]
        y = tf.reduce_sum(tf.reshape(y, (b, out_h, out_w, k, c, self.filters)), axis=4)
        y = tf.transpose(y, (3, 0, 1, 2, 4))
        if self.use_bias:
            y = y + self.bias[:, None, None, None, :]
        return self.activation(tf.reshape(y, (k * b, out_h, out_w, self.filters)))


def _cohort_layer(layer, cohort: int, batch: int):
    if type(layer) is tf.keras.layers.Dense:
        return CohortDense(layer, cohort, batch)
    if type(layer) is tf.keras.layers.Conv2D and layer.groups == 1 and layer.data_format == "channels_last" \
            and tuple(layer.dilation_rate) == (1, 1) and len(set(layer.strides)) == 1:
        return CohortConv2D(layer, cohort, batch)  # ungrouped, undilated, channels_last, equal strides
    if type(layer) in (tf.keras.layers.Reshape, tf.keras.layers.Flatten):
        return layer.__class__.from_config(layer.get_config())
    return None


@functools.lru_cache(maxsize=256)
def cohort_form(model_fn: ModelFn, n_features: int) -> str | None:
    """Why ``model_fn`` has no cohort form (the layers it lacks), or None when it has one."""
    model = build_model(model_fn, n_features)
    odd = sorted({type(layer).__name__ for layer in model.layers if _cohort_layer(layer, 1, 1) is None})
    if odd or not isinstance(model, tf.keras.Sequential):
        return f"layers {odd} have no cohort form" if odd else "only Sequential models have a cohort form"
    return None


@dataclass(frozen=True)
class Task:
    """One hospital's local pass: its start weights, rows, batch plan and settings."""

    weights: Sequence[np.ndarray]
    x: np.ndarray
    y: np.ndarray
    order: np.ndarray
    bounds: np.ndarray
    learning_rate: float
    proximal_mu: float = 0.0
    noise: np.ndarray | None = None  # DP-SGD: (steps, parameters) standard normal draws
    expected: float | None = None  # DP-SGD: the expected batch size its clipped sums are divided by


class CohortTrainer:
    """K hospitals' local training in one traced program (see the module docstring).

    ``cohort`` hospitals of batch size ``batch`` per call; fewer tasks are
    padded with idle hospitals, so one trace serves every round.
    """

    def __init__(self, model_fn: ModelFn, n_features: int, cohort: int, batch: int):
        base = build_model(model_fn, n_features)
        self.cohort, self.batch, self.n_features = cohort, batch, n_features
        layers = [_cohort_layer(layer, cohort, batch) for layer in base.layers]
        self.model = tf.keras.Sequential([tf.keras.Input((n_features,)), *layers])
        self.model.build((None, n_features))
        self.shapes = [tuple(w.shape) for w in base.weights]
        self.dtypes = [w.dtype for w in base.weights]
        self.registry = layer_registry.make_default_layer_registry()
        self._seen: list = []  # what the registry saw in the step being traced
        self._seen_losses: list = []
        self.registry.insert(CohortDense, functools.partial(_cohort_dense_norms, self._seen))
        self.fast_clipping = all(isinstance(layer, CohortDense) or not layer.trainable_weights
                                 for layer in self.model.layers)
        n = cohort * batch
        stacked = [tf.TensorSpec(v.shape, v.dtype) for v in self.model.weights]
        plan = [stacked, tf.TensorSpec([None, n_features], tf.float32), tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None, n], tf.int32), tf.TensorSpec([None, n], tf.float32),
                tf.TensorSpec([None, cohort], tf.float32), tf.TensorSpec([cohort], tf.float32)]
        self._train = tf.function(self._train_pass, input_signature=[*plan, tf.TensorSpec([cohort], tf.float32)])
        self._dp_train = tf.function(self._dp_train_pass, input_signature=[
            *plan, tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32),
            tf.TensorSpec([cohort, None, sum(int(np.prod(s)) for s in self.shapes)], tf.float32)])

    # --- the traced passes ------------------------------------------------------------------------
    def _assign(self, weights):
        for variable, value in zip(self.model.weights, weights):
            variable.assign(value)

    def _per_hospital(self, values):
        return tf.reduce_sum(tf.reshape(values, (self.cohort, self.batch)), axis=1)

    def _step(self, grads, learning_rate, active):
        scale = learning_rate * active
        for variable, grad in zip(self.model.weights, grads):
            variable.assign_sub(tf.reshape(scale, (-1,) + (1,) * (len(variable.shape) - 1)) * grad)

    def _proximal(self, variables, weights, proximal_mu, active):
        """FedProx: mu/2 * ||w - w_global||^2 per hospital keeps each local model near the global one."""
        distance = tf.add_n([tf.reduce_sum(tf.reshape(tf.square(v - a), (self.cohort, -1)), axis=1)
                             for v, a in zip(variables, weights)])
        return tf.reduce_sum(active * 0.5 * proximal_mu * distance)

    def _train_pass(self, weights, x, y, index, mask, counts, learning_rate, proximal_mu):
        """Every hospital's batches, step by step; returns (new weights, each hospital's summed loss)."""
        self._assign(weights)
        variables = self.model.weights
        total = tf.zeros([self.cohort])
        for t in tf.range(tf.shape(index)[0]):
            xb, yb, m = tf.gather(x, index[t]), tf.gather(y, index[t]), mask[t]
            active = tf.cast(counts[t] > 0, tf.float32)
            with tf.GradientTape() as tape:
                logits = self.model(xb, training=True)[:, 0]
                losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=yb, logits=logits) * m
                loss = self._per_hospital(losses) / tf.maximum(counts[t], 1.0)
                proximal = functools.partial(self._proximal, variables, weights, proximal_mu, active)
                objective = tf.reduce_sum(active * loss) + tf.cond(tf.reduce_any(proximal_mu > 0), proximal,
                                                                   lambda: 0.0)
            self._step(tape.gradient(objective, variables), learning_rate, active)
            total += active * loss
        return [v.read_value() for v in variables], total

    def _masked_losses(self, labels, logits, weights):
        """Per-example losses for ``compute_gradient_norms`` (masked rows weigh 0), kept for the loss report."""
        self._seen_losses.append(weights * tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)[:, 0])
        return self._seen_losses[-1]

    def _clipped_gradients(self, weight):
        """Each hospital's gradient of its examples' losses times ``weight``, from the layers the registry saw.

        A Dense kernel's gradient is the sum over examples of input (x) times
        pre-activation gradient (g), the bias's the sum of g: per hospital, a
        batched x^T (weight * g).
        """
        k, b = self.cohort, self.batch
        grads = {}
        for layer, x, g in self._seen:
            scaled = tf.reshape(weight[:, None] * g, (k, b, -1))
            grads[layer.kernel.ref()] = tf.matmul(tf.reshape(x, (k, b, -1)), scaled, transpose_a=True)
            if layer.use_bias:
                grads[layer.bias.ref()] = tf.reduce_sum(scaled, axis=1)
        return [grads[v.ref()] for v in self.model.weights]

    def _dp_train_pass(self, weights, x, y, index, mask, counts, learning_rate, l2_norm_clip, noise_multiplier,
                       noise):
        """DP-SGD for every hospital: clipped per-example gradients (tensorflow-privacy), each its own noise."""
        self._assign(weights)
        variables = self.model.weights
        sizes = [int(np.prod(v.shape[1:])) for v in variables]
        total = tf.zeros([self.cohort])
        for t in tf.range(tf.shape(index)[0]):
            xb, yb, m = tf.gather(x, index[t]), tf.gather(y, index[t]), mask[t]
            active = tf.cast(counts[t] > 0, tf.float32)
            per_row = tf.repeat(tf.maximum(counts[t], 1.0), self.batch)
            self._seen.clear()
            self._seen_losses.clear()
            norms = clip_grads.compute_gradient_norms(self.model, self.registry, xb, yb[:, None], weight_batch=m,
                                                      per_example_loss_fn=self._masked_losses, trainable_vars=variables)
            weight = clip_grads.compute_clip_weights(l2_norm_clip, norms) / per_row  # m is in the gradients already
            grads = self._clipped_gradients(weight)
            # Each hospital's clipped sum is divided by its expected batch size: noise_multiplier * clip / it.
            stddev = noise_multiplier * l2_norm_clip / tf.maximum(counts[t], 1.0)
            draws = tf.split(noise[:, t], sizes, axis=1)
            noisy = [g + tf.reshape(stddev, (-1,) + (1,) * (len(g.shape) - 1)) * tf.reshape(d, g.shape)
                     for g, d in zip(grads, draws)]
            self._step(noisy, learning_rate, active)
            realized = self._per_hospital(m)  # the loss reported is the batch's mean, as Trainer reports it
            total += active * self._per_hospital(self._seen_losses[-1]) / tf.maximum(realized, 1.0)
        return [v.read_value() for v in variables], total

    # --- what the engine calls ------------------------------------------------------------------------
    def fit(self, tasks: Sequence[Task], dp: DPTraining | tuple | None = None
            ) -> list[tuple[list[np.ndarray], float, int]]:
        """Each task's (new weights, mean loss, steps), as ``Trainer.fit`` gives them one by one.

        Under DP-SGD (``DPTraining``, or ``(l2_norm_clip, noise_multiplier)``)
        a hospital's step divides by its task's ``expected`` batch size and is
        taken even when its batch is empty.
        """
        dp = None if dp is None else DPTraining(*dp)
        if not 0 < len(tasks) <= self.cohort:
            raise ValueError(f"tasks: between 1 and {self.cohort} per call, got {len(tasks)}")
        k, b = self.cohort, self.batch
        largest = max(int(np.diff(t.bounds).max(initial=0)) for t in tasks)
        if largest > b:
            raise ValueError(f"tasks: a batch of {largest} rows does not fit this trainer's {b} rows per hospital")
        steps = [len(t.bounds) - 1 for t in tasks]
        horizon = max(max(steps), 1)
        offsets = np.cumsum([0] + [len(t.y) for t in tasks])
        x = np.concatenate([t.x for t in tasks]).astype(np.float32, copy=False)
        y = np.concatenate([t.y for t in tasks]).astype(np.float32, copy=False)
        index = np.zeros((horizon, k, b), np.int32)
        mask = np.zeros((horizon, k, b), np.float32)
        counts = np.zeros((horizon, k), np.float32)
        for i, task in enumerate(tasks):
            starts, ends = task.bounds[:-1], task.bounds[1:]
            for s, (lo, hi) in enumerate(zip(starts, ends)):
                rows = task.order[lo:hi]
                index[s, i, : len(rows)] = offsets[i] + rows
                mask[s, i, : len(rows)] = 1.0
                counts[s, i] = len(rows) if dp is None else task.expected
        rates = np.zeros(k, np.float32)
        rates[: len(tasks)] = [t.learning_rate for t in tasks]
        stacked = [np.zeros((k, *shape), dtype.as_numpy_dtype) for shape, dtype in zip(self.shapes, self.dtypes)]
        for i, task in enumerate(tasks):
            for j, w in enumerate(task.weights):
                stacked[j][i] = w
        args = [stacked, x, y, index.reshape(horizon, k * b), mask.reshape(horizon, k * b), counts, rates]
        if dp is None:
            mus = np.zeros(k, np.float32)
            mus[: len(tasks)] = [t.proximal_mu for t in tasks]
            new, total = self._train(*args, mus)
        else:
            noise = np.zeros((k, horizon, sum(int(np.prod(s)) for s in self.shapes)), np.float32)
            for i, task in enumerate(tasks):
                noise[i, : len(task.noise)] = task.noise
            new, total = self._dp_train(*args, np.float32(dp.l2_norm_clip), np.float32(dp.noise_multiplier), noise)
        new, total = [w.numpy() for w in new], total.numpy()
        return [([w[i] for w in new], float(total[i] / max(steps[i], 1)), steps[i]) for i in range(len(tasks))]
