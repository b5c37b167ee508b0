"""DP-SGD cost, measured side by side in one run; prints times and ratios.

Workload: the engine benchmark's (20 hospitals x ~600 training rows, MLP
features-64-64-1, batch 32, 1 local epoch). Per FedAvg round:
  fedsim plain SGD vs fedsim DP-SGD (tensorflow-privacy fast per-example
  clipping inside fedsim's compiled loop, the default).
For reference, one epoch of the same rows with tensorflow-privacy's Keras
paths via ``model.fit``: plain, DPKerasSGDOptimizer, its vectorized variant,
and DPSequential (fast clipping in a Keras model).

    python benchmarks/dpsgd.py
"""

from tensorflow_privacy.privacy.keras_models.dp_keras_model import DPSequential  # noqa: E402, I001
from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras, dp_optimizer_keras_vectorized  # noqa: E402
from timing import best_of, round_cost  # noqa: E402

import fedsim as fs
from fedsim._tf import tf
from fedsim.privacy import DPSGD


def keras_epoch(fed, kind):
    """One epoch of model.fit over all training rows with one of tensorflow-privacy's paths."""
    layers = [tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(64, activation="relu"),
              tf.keras.layers.Dense(1)]
    loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    if kind == "DPSequential":
        model = DPSequential(l2_norm_clip=1.0, noise_multiplier=1.0, layers=layers)
        optimizer = tf.keras.optimizers.SGD(0.05)
    else:
        model = tf.keras.Sequential(layers)
        if kind == "plain":
            optimizer = tf.keras.optimizers.SGD(0.05)
        else:
            module = dp_optimizer_keras if kind == "DPKerasSGDOptimizer" else dp_optimizer_keras_vectorized
            optimizer_class = getattr(module, kind)
            optimizer = optimizer_class(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=32,
                                        learning_rate=0.05)
            loss = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
    model.compile(optimizer=optimizer, loss=loss)
    x, y = fed.x_train, fed.y_train[:, None]
    n = len(y) - len(y) % 32  # microbatching needs whole batches
    def epoch():
        model.fit(x[:n], y[:n], batch_size=32, epochs=1, verbose=0)

    epoch()  # warm-up: trace
    return best_of(epoch, repeat=2)


def main():
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=20, n_patients=20 * 750, seed=0)
    print(f"workload: {fed!r}\n")
    plain = round_cost(fed, repeat=3)
    dp = round_cost(fed, repeat=3, privacy=DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0))
    print(f"fedsim round, plain SGD          {plain:6.2f} s")
    print(f"fedsim round, DP-SGD (default)   {dp:6.2f} s   DP/plain = {dp / plain:4.2f}x\n")
    reference = {kind: keras_epoch(fed, kind) for kind in
                 ("plain", "DPKerasSGDOptimizer", "VectorizedDPKerasSGDOptimizer", "DPSequential")}
    for kind, seconds in reference.items():
        print(f"model.fit epoch, {kind:30s} {seconds:6.2f} s   /plain = {seconds / reference['plain']:4.2f}x")


if __name__ == "__main__":
    main()
