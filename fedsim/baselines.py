"""The two reference points of every federated run: pooled data and no collaboration.

Both return the same ``Result`` type as an Experiment; an "epoch" plays the
part of a round, so give them ``rounds * local_epochs`` epochs for equal work.
"""

import numpy as np

from fedsim._tf import note_device
from fedsim.federation import Federation
from fedsim.metrics import binary_metrics, tidy_metrics
from fedsim.models import ModelFn, resolve_model
from fedsim.results import Result, tidy
from fedsim.training import trainer_for
from fedsim.validation import Instance, Integer, check

# The name people read for each baseline (CLI output, notebooks, README), by its config name.
TITLES = {"centralized": "centralized", "local_only": "local only"}


def _check(fed: Federation, epochs: int) -> None:
    check("federation", fed, Instance(Federation, what="a fedsim Federation"))
    check("epochs", epochs, Integer(min=1))
    note_device()


def centralized(
    fed: Federation, model: str | ModelFn = "mlp", epochs: int = 20, batch_size: int = 32,
    learning_rate: float = 0.05, seed: int = 0,
) -> Result:
    """All hospitals' training rows pooled in one place (the upper reference)."""
    _check(fed, epochs)
    model_fn = resolve_model(model)
    trainer = trainer_for(model_fn, fed.n_features)
    weights = trainer.initial_weights(seed)
    hospitals = list(fed.hospitals)
    rows = tidy_metrics(0, fed.y_test, trainer.predict(weights, fed.x_test), fed.test_offsets, hospitals)
    for epoch in range(1, epochs + 1):
        weights, _, _ = trainer.fit(weights, fed.x_train, fed.y_train, epochs=1, batch_size=batch_size,
                                    learning_rate=learning_rate, rng=np.random.default_rng([seed, epoch]))
        rows += tidy_metrics(epoch, fed.y_test, trainer.predict(weights, fed.x_test), fed.test_offsets, hospitals)
    config = {"baseline": "centralized", "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "seed": seed}
    return Result(TITLES["centralized"], tidy(rows), weights, fed, model_fn, config)


def local_only(
    fed: Federation, model: str | ModelFn = "mlp", epochs: int = 20, batch_size: int = 32,
    learning_rate: float = 0.05, seed: int = 0,
) -> Result:
    """Each hospital trains alone on its own rows (the lower reference).

    A hospital's rows score its own model on its own test split. The
    ``"global"`` rows are the average local model: each hospital's model is
    scored on the pooled test set and the scores are averaged over hospitals.
    The returned weights are those of the largest hospital's model.
    """
    _check(fed, epochs)
    model_fn = resolve_model(model)
    trainer = trainer_for(model_fn, fed.n_features)
    initial = trainer.initial_weights(seed)
    models = [initial] * fed.n_hospitals
    rows = []
    for epoch in range(0, epochs + 1):
        pooled = []
        for i, hospital in enumerate(fed.hospitals):
            if epoch:
                x, y = fed.train_rows(i)
                models[i], _, _ = trainer.fit(models[i], x, y, epochs=1, batch_size=batch_size,
                                              learning_rate=learning_rate, rng=np.random.default_rng([seed, epoch, i]))
            x_test, y_test = fed.test_rows(i)
            own = binary_metrics(y_test, trainer.predict(models[i], x_test))
            rows += [{"round": epoch, "scope": hospital, "metric": m, "value": v} for m, v in own.items()]
            pooled.append(binary_metrics(fed.y_test, trainer.predict(models[i], fed.x_test)))
        rows += [{"round": epoch, "scope": "global", "metric": m, "value": float(np.mean([p[m] for p in pooled]))}
                 for m in pooled[0]]
    largest = int(np.argmax(np.diff(fed.train_offsets)))
    config = {"baseline": "local_only", "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "seed": seed}
    return Result(TITLES["local_only"], tidy(rows), models[largest], fed, model_fn, config)
