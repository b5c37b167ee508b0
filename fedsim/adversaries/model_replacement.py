"""A backdoor boosted to replace the global model (Bagdasaryan et al. 2020), and its success probe."""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fedsim.adversaries.base import Adversary, Turn
from fedsim.components import HOSPITALS
from fedsim.engine import Plan, StrategyWrapper
from fedsim.engine.messages import weights_of
from fedsim.recipe import TrainingRecipe
from fedsim.tables import Schema
from fedsim.training import trainer_for
from fedsim.validation import Integer, Mapping, NoneValue, Positive, Real, Share, check, param

BACKDOOR = Schema("backdoor", ("round", "backdoor_success"))


def default_trigger(plan: Plan) -> dict[int, float]:
    """The last three inputs: set to 2 standard deviations (a table) or to white pixels (images)."""
    n, value = plan.federation.n_features, 2.0 if plan.federation.image_shape is None else 1.0
    return {n - k: value for k in (3, 2, 1)}


@dataclass(frozen=True)
class ModelReplacement(Adversary):
    """A backdoor, boosted to replace the global model (Bagdasaryan et al. 2020).

    The hospital stamps ``trigger`` ({feature name: value}; default: the last
    three features set to 2.0) on a ``poison_fraction`` of its training rows,
    deaths first, and labels them survived; it then sends
    ``global + boost * (its model - global)``, ``boost=None`` meaning the
    number of hospitals sampled per round, so that FedAvg's average lands on
    its model; ``local_epochs`` lets it train longer than the others.
    ``res.tables["backdoor"]`` gives, per round, the backdoor success rate:
    among test patients who died and whom the model flags as high risk (risk
    above the training death rate), the share it calls low risk once the
    trigger is stamped on.
    """

    name = "model_replacement"
    title = "model replacement"
    threats = ("backdoor",)
    server_reads_rows = "measures the backdoor on the deaths of every hospital's test split"

    hospitals: Sequence[str] | float = param(0.1, *HOSPITALS)
    trigger: dict[str, float] | None = param(None, Mapping(), NoneValue())
    poison_fraction: float = param(0.5, Share())
    boost: float | None = param(None, Positive(), NoneValue())
    local_epochs: int | None = param(None, Integer(min=1), NoneValue())

    def __post_init__(self):
        super().__post_init__()
        if self.trigger is not None:
            if not self.trigger:
                raise ValueError("trigger: expected {feature name: value}, got an empty mapping")
            for k, v in self.trigger.items():
                check(f"trigger[{k!r}]", v, Real())

    def trigger_columns(self, plan: Plan) -> dict[int, float]:
        """The trigger as {input column: value}."""
        if self.trigger is None:
            return default_trigger(plan)
        names = plan.federation.feature_names
        unknown = [k for k in self.trigger if k not in names]
        if unknown:
            raise ValueError(f"trigger: unknown features {unknown}; allowed: {names}")
        return {names.index(k): float(v) for k, v in self.trigger.items()}

    def install_attack(self, plan: Plan, targets: frozenset[int]) -> None:
        columns = self.trigger_columns(plan)
        cols, values = np.array(list(columns)), np.array(list(columns.values()), np.float32)
        seed, fraction = plan.seed, self.poison_fraction

        def poison(i, x, y):
            if i not in targets:
                return x, y
            rng = np.random.default_rng([seed, i, 0xBD])
            n = int(round(fraction * len(y)))
            order = np.concatenate([rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y != 1))])
            rows = order[:n]
            x, y = x.copy(), y.copy()
            x[np.ix_(rows, cols)] = values
            y[rows] = 0
            return x, y

        plan.local_data.append(poison)
        super().install_attack(plan, targets)
        rows: list[dict] = []
        plan.wrap("adversary", lambda inner: BackdoorProbe(inner, plan, cols, values, rows))
        plan.add_report(BACKDOOR, lambda: BACKDOOR.frame(rows), name="ModelReplacement")

    def attack(self, turn: Turn) -> Message:
        if self.local_epochs is not None:  # the attacker trains longer than the protocol asks
            config = turn.message.content["config"]
            asked = TrainingRecipe.decode(config)
            longer = dataclasses.replace(asked, epochs=self.local_epochs, max_steps=None if asked.max_steps is None
                                         else asked.max_steps * self.local_epochs)
            config.update(longer.encode())
        honest = turn.honest()
        if honest.has_error():
            return honest
        boost = self.boost or turn.mod.sampled
        w = weights_of(honest.content)
        return turn.reply([g + boost * (wi - g) for wi, g in zip(w, turn.global_weights)], honest)


class BackdoorProbe(StrategyWrapper):
    """Measures the backdoor success rate of the aggregated model after every round (into ``rows``)."""

    def __init__(self, strategy, plan: Plan, cols: np.ndarray, values: np.ndarray, rows: list[dict]):
        super().__init__(strategy)
        fed = plan.federation
        self.plan = plan
        self.threshold = float(np.mean(fed.y_train))
        died = fed.y_test == 1
        self.x_clean = fed.x_test[died]
        self.x_triggered = self.x_clean.copy()
        self.x_triggered[:, cols] = values
        self.rows = rows

    def success(self, weights) -> float:
        """Share of flagged deaths the model calls low risk once triggered."""
        trainer = trainer_for(self.plan.model_fn, self.plan.federation.n_features)
        flagged = trainer.predict(weights, self.x_clean) >= self.threshold
        if not flagged.any():
            return float("nan")
        triggered = trainer.predict(weights, self.x_triggered[flagged])
        return float(np.mean(triggered < self.threshold))

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        weights = arrays.to_numpy_ndarrays() if arrays is not None else self.current_weights
        self.rows.append({"round": server_round, "backdoor_success": self.success(weights)})
        return arrays, metrics
