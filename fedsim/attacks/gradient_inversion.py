"""Gradient inversion by an honest-but-curious server, as an Experiment observer."""

from dataclasses import dataclass

import numpy as np

from fedsim.attacks.inversion import METHODS, invert_gradient, update_as_gradient
from fedsim.attacks.scores import match, psnr, score
from fedsim.attacks.update_attack import TARGETS, UpdateAttack
from fedsim.tables import Schema
from fedsim.training import batch_plan, trainer_for
from fedsim.validation import Integer, NoneValue, Options, Positive, Real, param

RECONSTRUCTIONS = Schema("reconstructions", ("attack", "hospital", "round", "record", "label", "recovered_label",
                                             "psnr", "original", "reconstruction"))


@dataclass(frozen=True)
class GradientInversion(UpdateAttack):
    """Invert ``hospital``'s update of round ``round`` (see ``fedsim.attacks.invert_gradient``).

    ``hospital``: a hospital id or index. ``target``: ``"update"`` (one
    hospital's reply) or ``"aggregate"`` (the round's change of the global
    model, what a SecAgg+ server sees). ``batch_size``: how many records to
    reconstruct (default: the run's batch size, capped by the records used).
    The simulator knows which records the hospital trained on (it replays the
    hospital's batch plan), so every reconstruction is scored against the
    truth: rows of ``Result.attacks`` and, record by record,
    ``Result.tables["reconstructions"]`` (the audit log keeps only the scores).
    """

    name = "gradient_inversion"
    threats = ("update leakage",)
    server_reads_rows = "scores each reconstruction against the rows the hospital trained on"
    targets = TARGETS
    record_table = RECONSTRUCTIONS

    method: str = param("geiping", Options(*METHODS))
    target: str = param("update", Options(*TARGETS))
    steps: int = param(500, Integer(min=1))
    learning_rate: float = param(0.1, Positive())
    total_variation: float | None = param(None, Real(min=0), NoneValue())
    batch_size: int | None = param(None, Integer(min=1), NoneValue())
    seed: int = param(0, Integer(min=0))

    @property
    def label(self) -> str:
        return f"gradient inversion ({self.method})"

    def evaluate(self, plan, index, sent, returned):
        fed = plan.federation
        recipe = plan.recipe
        x, y = fed.train_rows(index)
        rng = recipe.rng(self.round, plan.seed, index, plan.secret)
        order, bounds = batch_plan(len(x), recipe.epochs, recipe.batch_size, rng, recipe.max_steps)
        used = order[: bounds[-1]]  # the rows the hospital trained on this round (the simulator knows)
        model = trainer_for(plan.model_fn, fed.n_features).model
        trainable = {v.ref() for v in model.trainable_variables}
        gradient = [g for g, v in zip(update_as_gradient(sent, returned, recipe.learning_rate, len(bounds) - 1),
                                      model.weights) if v.ref() in trainable]
        low, high = (0.0, 1.0) if fed.image_shape is not None else (fed.x_train.min(0), fed.x_train.max(0) + 1e-6)
        found = invert_gradient(
            plan.model_fn, sent, gradient, fed.n_features,
            batch_size=self.batch_size or min(recipe.batch_size, len(used)), method=self.method,
            steps=self.steps, learning_rate=self.learning_rate, total_variation=self.total_variation,
            input_range=(low, high), image_shape=fed.image_shape, seed=self.seed,
        )
        truth = used[match(found.x, x[used])]
        images = fed.image_shape is not None
        records = [{"record": i, "label": float(y[t]), "recovered_label": float(label),
                    "psnr": min(psnr(np.clip(row, 0, 1), x[t]), 100.0) if images else float("nan"),
                    "original": x[t].copy(), "reconstruction": row}
                   for i, (row, label, t) in enumerate(zip(found.x, found.labels, truth))]
        return score(found.x, found.labels, x[used], y[used], fed), records
