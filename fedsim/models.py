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


def resolve_model(model: str | ModelFn, n_features: int | None = None) -> ModelFn:
    """A model name or a callable ``n_features -> tf.keras.Model`` (one logit out).

    Given ``n_features``, the model is also built and checked (``build_model``), once per
    (model, n_features) in a process.
    """
    if not (callable(model) or isinstance(model, str) and model in MODELS):
        raise ValueError(f"model: unknown {model!r}; allowed: {sorted(MODELS)} or a callable")
    model_fn = model if callable(model) else MODELS[model]
    if n_features is not None and (model_fn, n_features) not in _CHECKED:
        build_model(model_fn, n_features)
        _CHECKED.add((model_fn, n_features))
    return model_fn


_CHECKED: set[tuple[ModelFn, int]] = set()


def build_model(model_fn: ModelFn, n_features: int) -> tf.keras.Model:
    """``model_fn(n_features)`` built, checked to be a tf.keras model giving one logit per row (n, 1)."""
    wanted = "model: must return a tf.keras model with one logit output (n, 1)"
    try:
        model = model_fn(n_features)
    except TypeError as error:
        raise ValueError(f"model: calling it with n_features={n_features} failed ({error})") from None
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"{wanted}; got {type(model).__name__}")
    try:
        model.build((None, n_features))
        output = model(tf.zeros((2, n_features)), training=False)
    except (TypeError, ValueError, tf.errors.OpError) as error:
        raise ValueError(f"model: does not take inputs of shape (n, {n_features}) "
                         f"({str(error).strip().splitlines()[0]})") from None
    if not tf.is_tensor(output):
        raise ValueError(f"{wanted}; got {type(output).__name__} of {len(tf.nest.flatten(output))} outputs")
    if output.shape != (2, 1):
        raise ValueError(f"{wanted}; got output shape {(None, *output.shape[1:])}")
    return model
