"""What a hospital is asked to do in a round (``TrainingRecipe``): the one place train-config keys are spelled.

The server builds one recipe per run (``Plan.recipe``; ``fedsim.privacy.DPSGD``
adds its DP-SGD settings to it), encodes it into every train message's
config (``encode``), and each hospital decodes it once (``decode``). The
attacks, adversaries, availability models and governance read recipes, never
keys. Beside the recipe, a train config carries the run's public seed and the
round Flower numbers it with (``round_and_seed``).
"""

import math
from dataclasses import dataclass

import numpy as np

from fedsim.randomness import hospital_rng
from fedsim.training import SAMPLINGS, DPTraining, Trainer, local_batches
from fedsim.validation import Integer, NoneValue, Positive, Real, check_fields, param

LEARNING_RATE, EPOCHS, BATCH_SIZE, MAX_STEPS = "lr", "local-epochs", "batch-size", "local-steps"
PROXIMAL_MU = "proximal-mu"  # Flower's FedProx writes it too
DP_CLIP, DP_NOISE, DP_SAMPLING = "dpsgd-clip", "dpsgd-noise", "dpsgd-sampling"
SEED, ROUND = "seed", "server-round"  # the run's public seed; the round (Flower's key)


@dataclass(frozen=True)
class TrainingRecipe:
    """How a hospital trains in a round (and how an attack's shadow models are trained the same way).

    ``epochs`` passes over the rows in mini-batches of ``batch_size`` with SGD
    at ``learning_rate``; ``max_steps`` caps the optimizer steps;
    ``proximal_mu``: FedProx's proximal term; ``dp=(l2_norm_clip,
    noise_multiplier[, sampling])`` trains with DP-SGD, as
    ``fedsim.privacy.DPSGD`` does (``fedsim.training.DPTraining``).
    """

    epochs: int = param(1, Integer(min=1))
    batch_size: int = param(32, Integer(min=1))
    learning_rate: float = param(0.05, Positive())
    dp: DPTraining | tuple | None = None
    max_steps: int | None = param(None, Integer(min=1), NoneValue())
    proximal_mu: float = param(0.0, Real(min=0))

    def __post_init__(self):
        check_fields(self)
        if self.dp is not None:
            ok = isinstance(self.dp, (tuple, list)) and len(self.dp) in (2, 3) and Positive().accepts(self.dp[0])[0] \
                and Real(min=0).accepts(self.dp[1])[0] and (len(self.dp) == 2 or self.dp[2] in SAMPLINGS)
            if not ok:
                raise ValueError(f"dp: must be None or (l2_norm_clip > 0, noise_multiplier >= 0[, sampling in "
                                 f"{list(SAMPLINGS)}]), got {self.dp!r}")
            object.__setattr__(self, "dp", DPTraining(float(self.dp[0]), float(self.dp[1]), *self.dp[2:]))

    # --- the message -----------------------------------------------------------------
    def encode(self, seed: int | None = None) -> dict:
        """The recipe (and the run's public ``seed``) as train-config entries: what the server sends each hospital."""
        config = {LEARNING_RATE: float(self.learning_rate), EPOCHS: int(self.epochs), BATCH_SIZE: int(self.batch_size)}
        if seed is not None:
            config[SEED] = int(seed)
        if self.max_steps is not None:
            config[MAX_STEPS] = int(self.max_steps)
        if self.proximal_mu:
            config[PROXIMAL_MU] = float(self.proximal_mu)
        return {**config, **self.dp_entries()}

    def dp_entries(self) -> dict:
        """The entries that set DP-SGD's clipping and noise (none without DP-SGD): what the audit log records."""
        if self.dp is None:
            return {}
        return {DP_CLIP: self.dp.l2_norm_clip, DP_NOISE: self.dp.noise_multiplier, DP_SAMPLING: self.dp.sampling}

    @classmethod
    def decode(cls, config) -> "TrainingRecipe":
        """The recipe a train config carries; a missing or malformed entry is a ValueError naming its key."""
        return cls(epochs=read(config, EPOCHS, int), batch_size=read(config, BATCH_SIZE, int),
                   learning_rate=read(config, LEARNING_RATE, float), dp=dp_of(config),
                   max_steps=read(config, MAX_STEPS, int, None), proximal_mu=read(config, PROXIMAL_MU, float, 0.0))

    # --- what a hospital does with it --------------------------------------------------
    def steps(self, n_rows: int) -> int:
        """The optimizer steps a hospital with ``n_rows`` rows runs (one batch per step)."""
        steps = self.epochs * math.ceil(n_rows / self.batch_size)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def batches(self, n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The row order and batch bounds of one local pass (``fedsim.training.local_batches``)."""
        return local_batches(n_rows, self.epochs, self.batch_size, rng, self.max_steps, self.dp)

    def train(self, trainer: Trainer, weights, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        """Train ``trainer``'s model from ``weights`` on (x, y) with this recipe: new weights, mean loss, steps run."""
        return trainer.fit(weights, x, y, epochs=self.epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, rng=rng, proximal_mu=self.proximal_mu,
                           max_steps=self.max_steps, dp=self.dp)

    def fit(self, trainer: Trainer, weights, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        """Train ``trainer``'s model from ``weights`` on (x, y) with this recipe; the new weights."""
        return self.train(trainer, weights, x, y, rng)[0]

    def rng(self, server_round: int, seed: int, hospital: int, secret: int) -> np.random.Generator:
        """The generator of ``hospital``'s local training in ``server_round`` of a run with public ``seed``: its
        batches, its noise (``recipe.rng(*round_and_seed(config), hospital, secret)`` on a hospital).

        Plain training draws from the public seed, so a run repeats from its
        config. DP-SGD draws from the hospital's ``secret``
        (``fedsim.randomness``), never from what the server sent: a server
        that could regenerate the noise could strip it from the update.
        """
        if self.dp is not None:
            return hospital_rng(secret, seed, server_round, hospital)
        return np.random.default_rng([seed, server_round, hospital])

    # --- a run's recipe, read back --------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict, local: bool = False) -> "TrainingRecipe":
        """The recipe of a run from its ``Result.config``.

        ``local=False``: the whole run as one central training (``rounds *
        local_epochs`` epochs; a centralized baseline's own epochs).
        ``local=True``: one hospital's local training in one round (its
        ``local_steps`` cap included; the central recipe has no cap).
        DP-SGD settings are those every hospital trained with (its
        ``client_training``: the train config it was sent).
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
        return cls(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                   dp=dp_of(config.get("client_training", {})),
                   max_steps=int(steps) if local and steps is not None else None)

    @classmethod
    def from_experiment(cls, experiment, local: bool = False) -> "TrainingRecipe":
        """The recipe of a ``fedsim.Experiment`` (see ``from_config``)."""
        return cls.from_config(experiment.config(), local=local)


def dp_of(config) -> DPTraining | None:
    """The DP-SGD settings a train config carries, or None (plain training)."""
    if DP_CLIP not in config:
        return None
    return DPTraining(read(config, DP_CLIP, float), read(config, DP_NOISE, float),
                      read(config, DP_SAMPLING, str, "poisson"))


def read(config, key: str, kind: type, default=...):
    """``config[key]`` as a ``kind``; a missing (without ``default``) or malformed entry is a ValueError naming it."""
    if key not in config:
        if default is ...:
            raise ValueError(f"train config: no {key!r} entry")
        return default
    try:
        return kind(config[key])
    except (TypeError, ValueError):
        raise ValueError(f"train config: {key!r} = {config[key]!r} is not a {kind.__name__}") from None


def round_and_seed(config) -> tuple[int, int]:
    """The server round and the run's public seed a train config carries (0 where absent)."""
    return int(config.get(ROUND, 0)), int(config.get(SEED, 0))
