"""tf.keras models for binary risk prediction: each maps features to one logit."""

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


MODELS: dict[str, ModelFn] = {"logreg": logreg, "mlp": mlp}


def resolve_model(model: str | ModelFn) -> ModelFn:
    """A model name or a callable ``n_features -> tf.keras.Model`` (one logit out)."""
    if callable(model):
        return model
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; allowed: {sorted(MODELS)} or a callable")
    return MODELS[model]
