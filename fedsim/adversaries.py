"""Malicious hospitals for ``Experiment(adversaries=...)``.

Each adversary is a component whose ``hospitals`` are a list of hospital ids
or a fraction of the federation (drawn from the experiment seed). It acts in
the malicious hospitals' ClientApp only, as a Flower mod (model poisoning:
the reply is rewritten) or through ``Plan.local_data`` (data poisoning: the
hospital trains on altered records):

- ``LabelFlip``: trains on flipped outcomes;
- ``SignFlip``: sends its update reversed (and amplified by ``scale``);
- ``GaussianNoise``: sends the global model plus Gaussian noise, no training;
- ``ModelReplacement``: trains a backdoor (a trigger pattern in a few
  features makes the model call a high-risk patient low-risk) and scales its
  update so that it replaces the global model (Bagdasaryan et al. 2020); the
  backdoor success rate per round is ``res.tables["backdoor"]``;
- ``ALIE``: "A little is enough" (Baruch et al. 2019), colluding hospitals
  send mean - z * std of the honest updates;
- ``IPM``: inner-product manipulation (Xie et al. 2019), colluding hospitals
  send -epsilon * the mean honest update;
- ``FreeRider``: sends the global model back without training;
- ``InflatedClaim``: trains honestly but claims ``factor`` times its examples.

Colluders (ALIE, IPM) estimate the honest updates from their own data by
default; ``omniscient=True`` lets them see the honest hospitals' updates of
the round (training is deterministic for a seed, so they recompute exactly
what the others send). Which hospitals attack is ``res.tables["attacks"]``.
Adversary mods are the outermost ClientApp mods: a malicious hospital
controls what it sends, after any client-side privacy mod.
"""

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict

from fedsim._replies import (StrategyWrapper, add_report, claimed_examples, copy_message, flat, number,
                             replace_weights, set_claim, unflat, weights_of)
from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.training import trainer_for


def _sampled_per_round(plan: Plan) -> int:
    n = plan.federation.n_hospitals
    fraction = getattr(plan.strategy, "fraction_train", 1.0)
    return min(n, max(int(n * fraction), getattr(plan.strategy, "min_train_nodes", 1)))


def select_hospitals(field_name: str, hospitals, plan: Plan, salt: int = 0) -> list[int]:
    """Indices of ``hospitals``: ids (checked) or a fraction drawn from the plan's seed."""
    fed = plan.federation
    if isinstance(hospitals, float):
        k = max(1, round(hospitals * fed.n_hospitals))
        rng = np.random.default_rng([plan.seed, 0xAD, salt])
        return sorted(int(i) for i in rng.choice(fed.n_hospitals, k, replace=False))
    unknown = [h for h in hospitals if h not in fed.hospitals]
    if unknown:
        raise ValueError(f"{field_name}: unknown hospitals {unknown}; allowed: ids of the federation "
                         f"({fed.hospitals[0]!r}...) or a fraction in (0, 1]")
    return sorted(fed.hospitals.index(h) for h in hospitals)


def check_hospitals(owner, field_name: str = "hospitals") -> None:
    """Validate a ``hospitals`` field (ids or a fraction) and store ids as a tuple."""
    value = getattr(owner, field_name)
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, float) and not isinstance(value, bool):
        if not 0 < value <= 1:
            raise ValueError(f"{field_name}: a fraction must be in (0, 1], got {value!r}")
        return
    if not isinstance(value, Sequence) or not value or not all(isinstance(h, str) for h in value):
        raise ValueError(f"{field_name}: expected a list of hospital ids or a fraction in (0, 1], got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{field_name}: hospitals listed twice in {value!r}")
    object.__setattr__(owner, field_name, tuple(value))


class _Turn:
    """One malicious hospital's train message: what an adversary may read and do."""

    def __init__(self, message: Message, context: Context, call_next, hospital: int, mod: "_AttackMod"):
        self.message, self.context, self.call_next = message, context, call_next
        self.hospital, self.mod = hospital, mod
        config = message.content["config"]
        self.seed, self.round = int(config["seed"]), int(config["server-round"])
        self.global_weights = weights_of(message.content)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.round, self.hospital, 0xBAD, salt])

    def honest(self) -> Message:
        """The reply this hospital would send if it were honest."""
        return self.honest_of(self.hospital)

    def honest_of(self, j: int) -> Message:
        """The honest reply of hospital ``j`` this round (cached; colluders share it in-process)."""
        key = (self.seed, self.round, j)
        cache = self.mod.cache
        if key not in cache:
            if any(k[:2] != key[:2] for k in cache):
                cache.clear()
            context = self.context
            if j != self.hospital:
                context = Context(run_id=context.run_id, node_id=context.node_id,
                                  node_config={**dict(context.node_config), "partition-id": j},
                                  state=RecordDict(), run_config=context.run_config)
            cache[key] = self.call_next(copy_message(self.message), context)
        return cache[key]

    def honest_update_of(self, j: int) -> np.ndarray:
        reply = self.honest_of(j)
        if reply.has_error():
            raise RuntimeError(f"hospital {j}'s honest update failed: {reply.error.reason}")
        return flat(weights_of(reply.content)) - flat(self.global_weights)

    def reply(self, weights: Sequence[np.ndarray], template: Message | None = None, claim=None) -> Message:
        """A train reply carrying ``weights`` (metrics from ``template``, else made up)."""
        if template is not None and template.has_content():
            content = copy.deepcopy(template.content)
            replace_weights(content, weights)
        else:
            content = RecordDict({"arrays": ArrayRecord([np.asarray(w) for w in weights]),
                                  "metrics": MetricRecord({"num-examples": self.mod.sizes[self.hospital],
                                                           "train_loss": 0.0, "local_steps": 0})})
        if claim is not None:
            set_claim(content, claim)
        return Message(content, reply_to=self.message)


class _AttackMod:
    """The Flower mod of one adversary: acts on train messages of its hospitals only."""

    def __init__(self, adversary: "Adversary", targets: frozenset[int], plan: Plan):
        self.adversary, self.targets = adversary, targets
        self.n_hospitals = plan.federation.n_hospitals
        self.sampled = _sampled_per_round(plan)
        fed = plan.federation
        self.sizes = [int(n) for n in np.diff(fed.train_offsets)]
        self.cache: dict[tuple, Message] = {}

    def __call__(self, message: Message, context: Context, call_next) -> Message:
        hospital = int(context.node_config["partition-id"])
        if (hospital not in self.targets or message.metadata.message_type != MessageType.TRAIN
                or "arrays" not in message.content.array_records):  # legacy (SecAgg+) messages: left alone
            return call_next(message, context)
        return self.adversary.attack(_Turn(message, context, call_next, hospital, self))


@dataclass(frozen=True)
class Adversary(Component):
    """Base class: ``hospitals`` are ids or a fraction of the federation; override ``attack``."""

    hospitals: Sequence[str] | float = 0.2

    def __post_init__(self):
        check_hospitals(self)

    @property
    def name(self) -> str:
        return type(self).__name__

    def details(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "hospitals"}
        return ", ".join(f"{k}={v!r}" for k, v in fields.items())

    def install(self, plan: Plan) -> None:
        targets = select_hospitals("hospitals", self.hospitals, plan)
        ids = [plan.federation.hospitals[i] for i in targets]
        add_report(plan, "attacks", lambda: pd.DataFrame(
            {"attack": self.name, "hospital": ids, "details": self.details()}))
        self.install_attack(plan, frozenset(targets))

    def install_attack(self, plan: Plan, targets: frozenset[int]) -> None:
        """Default: a ClientApp mod calling ``attack`` (outermost: it controls what is sent)."""
        plan.client_mods.insert(0, _AttackMod(self, targets, plan))

    def attack(self, turn: _Turn) -> Message:
        return turn.honest()


@dataclass(frozen=True)
class LabelFlip(Adversary):
    """Data poisoning: the hospital trains on flipped outcomes (died <-> survived)."""

    def install_attack(self, plan: Plan, targets: frozenset[int]) -> None:
        def flip(i, x, y):
            return (x, (1 - y).astype(y.dtype)) if i in targets else (x, y)

        plan.local_data.append(flip)


@dataclass(frozen=True)
class SignFlip(Adversary):
    """Sends ``-scale`` times its honest update (scale 1: the update reversed)."""

    scale: float = 4.0

    def __post_init__(self):
        super().__post_init__()
        number("scale", self.scale, 0, strict=True)

    def attack(self, turn: _Turn) -> Message:
        honest = turn.honest()
        if honest.has_error():
            return honest
        w = weights_of(honest.content)
        return turn.reply([g - self.scale * (wi - g) for wi, g in zip(w, turn.global_weights)], honest)


@dataclass(frozen=True)
class GaussianNoise(Adversary):
    """Sends the global weights plus Gaussian noise of standard deviation ``std``, without training."""

    std: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        number("std", self.std, 0, strict=True)

    def attack(self, turn: _Turn) -> Message:
        rng = turn.rng()
        return turn.reply([g + rng.normal(0.0, self.std, g.shape).astype(g.dtype) for g in turn.global_weights])


@dataclass(frozen=True)
class FreeRider(Adversary):
    """Sends the global weights back (plus optional disguising noise) and claims its true size."""

    disguise_std: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        number("disguise_std", self.disguise_std, 0)

    def attack(self, turn: _Turn) -> Message:
        rng = turn.rng()
        return turn.reply([g + (rng.normal(0.0, self.disguise_std, g.shape).astype(g.dtype)
                                if self.disguise_std else 0) for g in turn.global_weights])


@dataclass(frozen=True)
class InflatedClaim(Adversary):
    """Trains honestly but claims ``factor`` times its number of examples (more weight in FedAvg)."""

    factor: float = 50.0

    def __post_init__(self):
        super().__post_init__()
        number("factor", self.factor, 1, strict=True)

    def attack(self, turn: _Turn) -> Message:
        honest = turn.honest()
        if honest.has_error():
            return honest
        claim = claimed_examples(honest.content)
        return turn.reply(weights_of(honest.content), honest, claim=int(round(claim * self.factor)))


@dataclass(frozen=True)
class _Colluders(Adversary):
    omniscient: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.omniscient, bool):
            raise ValueError(f"omniscient: must be True or False, got {self.omniscient!r}")

    def honest_updates(self, turn: _Turn) -> np.ndarray:
        """The updates the colluders know: every honest hospital's (omniscient) or their own."""
        mod = turn.mod
        pool = [j for j in range(mod.n_hospitals) if j not in mod.targets] if self.omniscient else sorted(mod.targets)
        return np.stack([turn.honest_update_of(j) for j in pool])

    def send(self, turn: _Turn, update: np.ndarray) -> Message:
        template = turn.honest() if not self.omniscient else None
        weights = unflat(flat(turn.global_weights) + update, turn.global_weights)
        return turn.reply(weights, template)


@dataclass(frozen=True)
class ALIE(_Colluders):
    """"A little is enough" (Baruch et al. 2019): every colluder sends mean - z * std of the honest updates.

    ``z=None`` takes the paper's z_max for n hospitals and m colluders:
    s = floor(n / 2 + 1) - m, z = Phi^-1((n - s) / n).
    """

    z: float | None = None

    def __post_init__(self):
        super().__post_init__()
        number("z", self.z, 0, allow_none=True)

    def z_for(self, n: int, m: int) -> float:
        if self.z is not None:
            return float(self.z)
        s = math.floor(n / 2 + 1) - m
        return NormalDist().inv_cdf(min(max((n - s) / n, 0.5), 0.999))

    def attack(self, turn: _Turn) -> Message:
        updates = self.honest_updates(turn)
        z = self.z_for(turn.mod.sampled, len(turn.mod.targets))
        return self.send(turn, updates.mean(0) - z * updates.std(0))


@dataclass(frozen=True)
class IPM(_Colluders):
    """Inner-product manipulation (Xie et al. 2019): every colluder sends -epsilon * mean honest update."""

    epsilon: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        number("epsilon", self.epsilon, 0, strict=True)

    def attack(self, turn: _Turn) -> Message:
        return self.send(turn, -self.epsilon * self.honest_updates(turn).mean(0))


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
    its model; ``local_epochs`` lets it train longer than the others. ``res.tables["backdoor"]`` gives, per round, the backdoor
    success rate: among test patients who died and whom the model flags as
    high risk (risk above the training death rate), the share it calls low
    risk once the trigger is stamped on.
    """

    hospitals: Sequence[str] | float = 0.1
    trigger: dict[str, float] | None = None
    poison_fraction: float = 0.5
    boost: float | None = None
    local_epochs: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.trigger is not None:
            if not isinstance(self.trigger, dict) or not self.trigger:
                raise ValueError(f"trigger: expected {{feature name: value}}, got {self.trigger!r}")
            for k, v in self.trigger.items():
                number(f"trigger[{k!r}]", v)
        if not (isinstance(self.poison_fraction, (int, float)) and 0 < self.poison_fraction <= 1):
            raise ValueError(f"poison_fraction: must be in (0, 1], got {self.poison_fraction!r}")
        number("boost", self.boost, 0, strict=True, allow_none=True)
        if self.local_epochs is not None and (isinstance(self.local_epochs, bool) or not isinstance(
                self.local_epochs, int) or self.local_epochs < 1):
            raise ValueError(f"local_epochs: must be an integer >= 1 or None, got {self.local_epochs!r}")

    def trigger_columns(self, plan: Plan) -> dict[int, float]:
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
        probe = BackdoorProbe(plan.strategy, plan, cols, values)
        plan.strategy = probe
        add_report(plan, "backdoor", probe.table)

    def attack(self, turn: _Turn) -> Message:
        if self.local_epochs is not None:  # the attacker trains longer than the protocol asks
            config = turn.message.content["config"]
            config["local-epochs"] = self.local_epochs
            if "local-steps" in config:
                config["local-steps"] = int(config["local-steps"]) * self.local_epochs
        honest = turn.honest()
        if honest.has_error():
            return honest
        boost = self.boost or turn.mod.sampled
        w = weights_of(honest.content)
        return turn.reply([g + boost * (wi - g) for wi, g in zip(w, turn.global_weights)], honest)


class BackdoorProbe(StrategyWrapper):
    """Measures the backdoor success rate of the aggregated model after every round."""

    def __init__(self, strategy, plan: Plan, cols: np.ndarray, values: np.ndarray):
        super().__init__(strategy)
        fed = plan.federation
        self.trainer = trainer_for(plan.model_fn, fed.n_features)
        self.threshold = float(np.mean(fed.y_train))
        died = fed.y_test == 1
        self.x_clean = fed.x_test[died]
        self.x_triggered = self.x_clean.copy()
        self.x_triggered[:, cols] = values
        self.rows: list[dict] = []

    def success(self, weights) -> float:
        flagged = self.trainer.predict(weights, self.x_clean) >= self.threshold
        if not flagged.any():
            return float("nan")
        triggered = self.trainer.predict(weights, self.x_triggered[flagged])
        return float(np.mean(triggered < self.threshold))

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        weights = arrays.to_numpy_ndarrays() if arrays is not None else self.current_weights
        self.rows.append({"round": server_round, "backdoor_success": self.success(weights)})
        return arrays, metrics

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["round", "backdoor_success"])


ATTACKS = {cls.__name__: cls for cls in (LabelFlip, SignFlip, GaussianNoise, ModelReplacement, ALIE, IPM,
                                         FreeRider, InflatedClaim)}

__all__ = ["ALIE", "ATTACKS", "Adversary", "BackdoorProbe", "FreeRider", "GaussianNoise", "IPM", "InflatedClaim",
           "LabelFlip", "ModelReplacement", "SignFlip", "select_hospitals"]
