"""The honest-but-curious server: attacks on one hospital's update, as Experiment observers.

An ``UpdateAttack`` watches one hospital in one round. With
``target="update"`` it attacks that hospital's reply (the weights it sent
back and the global weights it received), which is what a plain FedAvg
server, or a server behind central DP, holds. With ``target="aggregate"``
(where the attack supports it) it attacks the change of the global model
over the round, which is all a SecAgg+ server (or anyone who sees the
released models) gets; that change only shows at the next round's
broadcast, so the run needs one more round.

Its rows are ``Result.attacks`` (``ATTACKS``: attack, hospital, round,
metric, value, details); an update the attack cannot use (a hostile or
malformed reply) becomes a ``failed`` row, never a crash.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, RoundObserver
from fedsim.tables import Schema
from fedsim.training import trainer_for
from fedsim.validation import Integer, Text, param

ATTACKS = Schema("attacks", ("attack", "hospital", "round", "metric", "value", "details"))
TARGETS = ("update", "aggregate")


@dataclass(frozen=True)
class UpdateAttack(Component):
    """Base of attacks on ``hospital``'s update of round ``round`` (a hospital id or index).

    Override ``evaluate(plan, index, sent, returned) -> (metrics, records)``;
    ``targets`` lists what it can attack (``"update"``, ``"aggregate"``);
    ``record_table`` names a per-record table it fills (or None).
    """

    family = "attack"
    targets: ClassVar[tuple[str, ...]] = ("update",)
    target: ClassVar[str] = "update"  # what it reads; attacks with several targets make this a field
    record_table: ClassVar[Schema | None] = None

    hospital: str | int = param(0, Integer(min=0), Text())
    round: int = param(1, Integer(min=1))

    @property
    def label(self) -> str:
        """The attack's name in tables (its title)."""
        return self.title or self.name

    def describe(self) -> dict:
        return {**super().describe(), "label": self.label}

    def install(self, plan: Plan) -> None:
        index = plan.federation.index_of(self.hospital)
        if plan.secagg is not None and self.target == "update":
            raise ValueError("target: under SecAgg+ the server never sees one hospital's update"
                             + ("; use target='aggregate'" if "aggregate" in self.targets else ""))
        if self.target == "aggregate" and self.round >= plan.rounds:
            raise ValueError(f"round: the aggregate of round {self.round} shows in the next round's broadcast; "
                             f"run at least {self.round + 1} rounds")
        observer = Observation(self, plan, index)
        plan.observers.append(observer)
        plan.add_report(ATTACKS, observer.table, name=type(self).__name__)
        if self.record_table is not None:
            plan.add_report(self.record_table, observer.record_frame, name=type(self).__name__)

    def evaluate(self, plan: Plan, index: int, sent: list[np.ndarray], returned: list[np.ndarray]
                 ) -> tuple[dict[str, float], list[dict]]:
        """The attack on one update: metrics, and optional per-record rows (``record_table``)."""
        raise NotImplementedError


class Observation(RoundObserver):
    """One run's state of an update attack: the global weights it saw, its rows."""

    def __init__(self, attack: UpdateAttack, plan: Plan, index: int):
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
                try:
                    arrays = record.to_numpy_ndarrays()
                except ValueError:  # undecodable bytes from a hostile hospital
                    continue
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
        key = {"attack": self.attack.label, "hospital": self.hospital, "round": self.attack.round}
        self.records += [{**key, **record} for record in records]

    def _row(self, metric: str, value: float, note: str = "") -> dict:
        return {"attack": self.attack.label, "hospital": self.hospital, "round": self.attack.round,
                "metric": metric, "value": float(value), "details": note or f"target={self.attack.target}"}

    def table(self):
        return ATTACKS.frame(self.rows)

    def record_frame(self):
        return self.attack.record_table.frame(self.records)

