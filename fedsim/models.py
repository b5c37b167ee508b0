"""tf.keras models for binary risk prediction: each maps features (or flattened pixels) to one logit."""

from collections.abc import Callable

from fedsim._tf import tf

ModelFn = Callable[[int], tf.keras.Model]


def logreg(n_features: int) -> tf.keras.Model:
    """Logistic regression: one dense unit."""
    return tf.keras.Sequential(
        [tf.keras.Input((n_features,)), tf.keras.layers.Dense(1, name="logit")]
    )


def mlp(n_features: int, hidden: tuple[int, ...] = (64, 64)) -> tf.keras.Model:
    """Multi-layer perceptron with ReLU hidden layers (features-64-64-1 by default)."""
    layers = [tf.keras.Input((n_features,))]
    layers += [tf.keras.layers.Dense(h, activation="relu") for h in hidden]
    layers.append(tf.keras.layers.Dense(1, name="logit"))
    return tf.keras.Sequential(layers)


def cnn(n_features: int, filters: int = 12, activation: str = "tanh") -> tf.keras.Model:
    """A small CNN for square grayscale scans given as flattened pixels (side x side inputs).

    Three 5x5 convolutions (strides 2, 2, 1) and one dense logit, after the
    LeNet variant of the gradient-inversion papers. The smooth ``tanh`` default
    keeps second derivatives, which gradient-matching attacks need: ReLU nets are
    harder to invert by optimisation but leak through other attacks.
    """
    side = round(n_features**0.5)
    if side * side != n_features:
        raise ValueError(f"model: 'cnn' needs square images as flattened pixels; {n_features} inputs is not a square")
    conv = {"kernel_size": 5, "padding": "same", "activation": activation}
    return tf.keras.Sequential([
        tf.keras.Input((n_features,)),
        tf.keras.layers.Reshape((side, side, 1)),
        tf.keras.layers.Conv2D(filters, strides=2, **conv),
        tf.keras.layers.Conv2D(filters, strides=2, **conv),
        tf.keras.layers.Conv2D(filters, strides=1, **conv),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(1, name="logit"),
    ])


MODELS: dict[str, ModelFn] = {"logreg": logreg, "mlp": mlp, "cnn": cnn}


def resolve_model(model: str | ModelFn) -> ModelFn:
    """A model name or a callable ``n_features -> tf.keras.Model`` (one logit out)."""
    if callable(model):
        return model
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; allowed: {sorted(MODELS)} or a callable")
    return MODELS[model]
