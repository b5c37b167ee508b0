"""How the target of a membership attack was trained, so that every shadow is trained the same way."""

from dataclasses import dataclass

import numpy as np

from fedsim.training import SAMPLINGS, DPTraining, Trainer
from fedsim.validation import Integer, NoneValue, Positive, Real, check_fields, param


@dataclass(frozen=True)
class TrainingRecipe:
    """How the target was trained; every shadow is trained the same way.

    ``epochs`` passes over the shadow's rows in mini-batches of ``batch_size``
    with SGD at ``learning_rate``; ``max_steps`` caps the optimizer steps;
    ``dp=(l2_norm_clip, noise_multiplier[, sampling])`` trains with DP-SGD, as
    ``fedsim.privacy.DPSGD`` does (``fedsim.training.DPTraining``).
    """

    epochs: int = param(1, Integer(min=1))
    batch_size: int = param(32, Integer(min=1))
    learning_rate: float = param(0.05, Positive())
    dp: DPTraining | tuple | None = None
    max_steps: int | None = param(None, Integer(min=1), NoneValue())

    def __post_init__(self):
        check_fields(self)
        if self.dp is not None:
            ok = isinstance(self.dp, (tuple, list)) and len(self.dp) in (2, 3) and Positive().accepts(self.dp[0])[0] \
                and Real(min=0).accepts(self.dp[1])[0] and (len(self.dp) == 2 or self.dp[2] in SAMPLINGS)
            if not ok:
                raise ValueError(f"dp: must be None or (l2_norm_clip > 0, noise_multiplier >= 0[, sampling in "
                                 f"{list(SAMPLINGS)}]), got {self.dp!r}")
            object.__setattr__(self, "dp", DPTraining(float(self.dp[0]), float(self.dp[1]), *self.dp[2:]))

    @classmethod
    def from_config(cls, config: dict, local: bool = False) -> "TrainingRecipe":
        """The recipe of a run from its ``Result.config``.

        ``local=False``: the whole run as one central training (``rounds *
        local_epochs`` epochs; a centralized baseline's own epochs).
        ``local=True``: one hospital's local training in one round (its
        ``local_steps`` cap included; the central recipe has no cap).
        DP-SGD settings are those every hospital trained with (its
        ``client_training``, read by ``DPTraining.from_config``).
        """
        if "baseline" in config:
            if config["baseline"] != "centralized" or local:
                what = "a local update" if local else f"a {config['baseline']!r} baseline"
                raise ValueError(f"recipe: cannot be derived for {what}; give recipe=TrainingRecipe(...)")
            return cls(epochs=int(config["epochs"]), batch_size=int(config["batch_size"]),
                       learning_rate=float(config["learning_rate"]))
        try:
            epochs = int(config["local_epochs"]) * (1 if local else int(config["rounds"]))
            batch_size, learning_rate = int(config["batch_size"]), float(config["learning_rate"])
        except KeyError as missing:
            raise ValueError(f"recipe: the run's config lacks {missing}; give recipe=TrainingRecipe(...)") from None
        steps = config.get("local_steps")
        training = config.get("client_training", {})
        dp = DPTraining.from_config(training)
        return cls(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, dp=dp,
                   max_steps=int(steps) if local and steps is not None else None)

    @classmethod
    def from_experiment(cls, experiment, local: bool = False) -> "TrainingRecipe":
        """The recipe of a ``fedsim.Experiment`` (see ``from_config``)."""
        return cls.from_config(experiment.config(), local=local)

    def fit(self, trainer: Trainer, weights, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        """Train ``trainer``'s model from ``weights`` on (x, y) with this recipe; the new weights."""
        new, _, _ = trainer.fit(weights, x, y, epochs=self.epochs, batch_size=self.batch_size,
                                learning_rate=self.learning_rate, rng=rng, max_steps=self.max_steps, dp=self.dp)
        return new
