"""The honest-but-curious server: attacks on one hospital's update, as Experiment observers.

``GradientInversion`` and ``MembershipInference`` watch one hospital in one
round. With ``target="update"`` a gradient inversion inverts that hospital's
reply (the weights it sent back minus the global weights it received), which
is what a plain FedAvg server, or a server behind central DP, holds. With ``target="aggregate"`` it inverts the
change of the global model over the round, which is all a SecAgg+ server (or
anyone who sees the released models) gets; that change only shows at the next
round's broadcast, so the run needs one more round.

The simulator knows which records the hospital trained on (it replays the
hospital's batch plan), so every reconstruction is scored against the truth:
rows of ``Result.attacks`` and, record by record, ``Result.tables["reconstructions"]``.
``MembershipInference`` asks, for each of the hospital's training and test
records, whether the update was trained on it (``fedsim.attacks.attack_update``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsim._replies import add_report
from fedsim.attacks import membership
from fedsim.attacks.inversion import METHODS, invert_gradient, update_as_gradient
from fedsim.attacks.scores import match, score
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, RoundObserver
from fedsim.engine.apps import local_rng, local_schedule
from fedsim.training import batch_plan, trainer_for

TARGETS = ("update", "aggregate")


def _positive_int(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class _UpdateAttack(Component):
    """An attack on ``hospital``'s update of round ``round`` (a hospital id or index)."""

    hospital: str | int = 0
    round: int = 1
    target = "update"

    def install(self, plan: Plan) -> None:
        hospitals = plan.federation.hospitals
        if isinstance(self.hospital, int) and not isinstance(self.hospital, bool):
            if not 0 <= self.hospital < len(hospitals):
                raise ValueError(f"hospital: index {self.hospital} out of range 0..{len(hospitals) - 1}")
            index = self.hospital
        elif self.hospital in hospitals:
            index = hospitals.index(self.hospital)
        else:
            raise ValueError(f"hospital: unknown {self.hospital!r}; allowed: a hospital id or index")
        if plan.secagg is not None and self.target == "update":
            raise ValueError("target: under SecAgg+ the server never sees one hospital's update"
                             + ("; use target='aggregate'" if isinstance(self, GradientInversion) else ""))
        if self.target == "aggregate" and self.round >= plan.rounds:
            raise ValueError(f"round: the aggregate of round {self.round} shows in the next round's broadcast; "
                             f"run at least {self.round + 1} rounds")
        observer = _Observation(self, plan, index)
        plan.observers.append(observer)
        add_report(plan, "attacks", observer.table)
        if isinstance(self, GradientInversion):
            add_report(plan, "reconstructions", observer.reconstruction_table)

    def evaluate(self, plan: Plan, index: int, sent: list[np.ndarray], returned: list[np.ndarray]
                 ) -> tuple[dict[str, float], list[dict]]:
        """The attack on one update: metrics, and optional per-record rows."""
        raise NotImplementedError


@dataclass(frozen=True)
class GradientInversion(_UpdateAttack):
    """Invert ``hospital``'s update of round ``round`` (see ``fedsim.attacks.invert_gradient``).

    ``hospital``: a hospital id or index. ``batch_size``: how many records to
    reconstruct (default: the run's batch size, capped by the records used).
    """

    method: str = "geiping"
    target: str = "update"
    steps: int = 500
    learning_rate: float = 0.1
    total_variation: float | None = None
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: unknown {self.method!r}; allowed: {list(METHODS)}")
        if self.target not in TARGETS:
            raise ValueError(f"target: unknown {self.target!r}; allowed: {list(TARGETS)}")
        _positive_int("round", self.round)
        _positive_int("steps", self.steps)
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)

    @property
    def name(self) -> str:
        return f"gradient inversion ({self.method})"

    def evaluate(self, plan, index, sent, returned):
        fed = plan.federation
        config = {**plan.train_config(), "server-round": self.round}
        x, y = fed.train_rows(index)
        schedule = local_schedule(config)
        order, bounds = batch_plan(len(x), rng=local_rng(config, index), **schedule)
        used = order[: bounds[-1]]  # the rows the hospital trained on this round (the simulator knows)
        model = trainer_for(plan.model_fn, fed.n_features).model
        trainable = {v.ref() for v in model.trainable_variables}
        gradient = [g for g, v in zip(update_as_gradient(sent, returned, plan.learning_rate, len(bounds) - 1),
                                      model.weights) if v.ref() in trainable]
        low, high = (0.0, 1.0) if fed.image_shape is not None else (fed.x_train.min(0), fed.x_train.max(0) + 1e-6)
        found = invert_gradient(
            plan.model_fn, sent, gradient, fed.n_features,
            batch_size=self.batch_size or min(schedule["batch_size"], len(used)), method=self.method,
            steps=self.steps, learning_rate=self.learning_rate, total_variation=self.total_variation,
            input_range=(low, high), image_shape=fed.image_shape, seed=self.seed,
        )
        truth = used[match(found.x, x[used])]
        records = [{"record": i, "label": float(y[t]), "recovered_label": float(label), "original": x[t].copy(),
                    "reconstruction": row} for i, (row, label, t) in enumerate(zip(found.x, found.labels, truth))]
        return score(found.x, found.labels, x[used], y[used], fed), records


@dataclass(frozen=True)
class MembershipInference(_UpdateAttack):
    """Membership inference on ``hospital``'s update of round ``round``: its training vs test records.

    LiRA's ``n_shadows`` shadows repeat the hospital's local training (same
    epochs, batch size, learning rate, step cap and DP-SGD) from the same
    global weights; ``method="loss"`` needs none.
    """

    method: str = "lira"
    n_shadows: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.method not in membership.METHODS:
            raise ValueError(f"method: unknown {self.method!r}; allowed: {list(membership.METHODS)}")
        _positive_int("round", self.round)
        if self.method != "loss" and (isinstance(self.n_shadows, bool) or not isinstance(self.n_shadows, int)
                                      or self.n_shadows < 2 or self.n_shadows % 2):
            raise ValueError(f"n_shadows: must be an even integer >= 2 (IN/OUT pairs), got {self.n_shadows!r}")

    @property
    def name(self) -> str:
        return f"membership inference ({self.method})"

    def evaluate(self, plan, index, sent, returned):
        settings = plan.train_config()
        recipe = membership.TrainingRecipe(
            epochs=plan.local_epochs, batch_size=plan.batch_size, learning_rate=plan.learning_rate,
            max_steps=plan.local_steps,
            dp=(settings["dpsgd-clip"], settings["dpsgd-noise"]) if "dpsgd-clip" in settings else None)
        attack = membership.attack_update(
            plan.federation, plan.federation.hospitals[index], plan.model_fn, sent, returned, recipe=recipe,
            method=self.method, n_shadows=self.n_shadows, round=self.round, seed=self.seed, progress=False)
        return attack.metrics().set_index("metric")["value"].to_dict(), []


class _Observation(RoundObserver):
    """One run's state of an update attack: the global weights it saw, its rows."""

    def __init__(self, attack: _UpdateAttack, plan: Plan, index: int):
        self.attack, self.plan, self.index = attack, plan, index
        self.hospital = plan.federation.hospitals[index]
        self.broadcast: dict[int, list[np.ndarray]] = {}
        self.rows: list[dict] = []
        self.records: list[dict] = []

    def on_exchange(self, exchange: Exchange) -> None:
        if exchange.message_type != "train":
            return
        r, attack = exchange.server_round, self.attack
        if r in (attack.round, attack.round + 1) and r not in self.broadcast:  # only the rounds the attack reads
            sent = self._model_arrays(m.content for m in exchange.sent.values())
            if sent is not None:
                self.broadcast[r] = sent
        if attack.target == "update" and r == attack.round and not self.rows:
            reply = exchange.replies.get(self.hospital)
            returned = None if reply is None or not reply.has_content() else self._model_arrays([reply.content])
            if returned is None:
                reason = "not sampled" if self.hospital not in exchange.sent else "no readable update"
                self.rows.append(self._row("observed", 0.0, reason))
                return
            self._attack(self.broadcast[r], returned)
        elif attack.target == "aggregate" and r == attack.round + 1 and r in self.broadcast and not self.rows:
            self._attack(self.broadcast[attack.round], self.broadcast[r])

    def _model_arrays(self, contents) -> list[np.ndarray] | None:
        """The first plain set of model weights among message contents (not masked vectors)."""
        model = trainer_for(self.plan.model_fn, self.plan.federation.n_features).model
        shapes = [tuple(v.shape) for v in model.weights]
        for content in contents:
            for record in content.array_records.values():
                arrays = record.to_numpy_ndarrays()
                if [a.shape for a in arrays] == shapes and all(a.dtype.kind == "f" for a in arrays):
                    return arrays
        return None

    def _attack(self, sent: list[np.ndarray], returned: list[np.ndarray]) -> None:
        try:
            metrics, records = self.attack.evaluate(self.plan, self.index, sent, returned)
        except (ValueError, ArithmeticError) as error:  # e.g. a hostile update: the run goes on, the failure is a row
            self.rows.append(self._row("failed", float("nan"), f"{type(error).__name__}: {error}"))
            return
        self.rows += [self._row(metric, value) for metric, value in metrics.items()]
        key = {"attack": self.attack.name, "hospital": self.hospital, "round": self.attack.round}
        self.records += [{**key, **record} for record in records]

    def _row(self, metric: str, value: float, note: str = "") -> dict:
        return {"attack": self.attack.name, "hospital": self.hospital, "round": self.attack.round,
                "metric": metric, "value": float(value), "details": note or f"target={self.attack.target}"}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["attack", "hospital", "round", "metric", "value", "details"])

    def reconstruction_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=["attack", "hospital", "round", "record", "label",
                                                   "recovered_label", "original", "reconstruction"])
