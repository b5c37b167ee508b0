"""The base of every malicious hospital: ``Adversary``, the ``Turn`` it acts on, colluders.

An adversary's ``hospitals`` are a list of hospital ids or a fraction of the
federation (drawn from the experiment seed). It acts in the malicious
hospitals' ClientApp only, at the ``adversary`` stage: as a Flower mod
calling ``attack(turn)`` (model poisoning: the reply is rewritten), or
through ``plan.local_data`` (data poisoning: the hospital trains on altered
records). Which hospitals attack is ``Result.adversaries``.
"""

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict

from fedsim.components import HOSPITALS, Component, pick_hospitals
from fedsim.engine import Plan
from fedsim.engine.messages import copy_message, flat, replace_weights, set_claim, unflat, weights_of
from fedsim.recipe import round_and_seed
from fedsim.tables import Schema
from fedsim.validation import Boolean, param

ADVERSARIES = Schema("adversaries", ("adversary", "hospital", "settings"))


class Turn:
    """One malicious hospital's train message: what an adversary may read and do.

    ``message``, ``hospital`` (index), ``round``, ``seed`` and
    ``global_weights`` describe the round; ``honest()`` is the reply the
    hospital would send if it were honest; ``reply(weights, template,
    claim)`` builds the reply the adversary sends instead; ``rng(salt)`` is
    the hospital's seeded generator for this round. In ``Adversary.attack``::

        def attack(self, turn):
            honest = turn.honest()                       # train as usual...
            noisy = [w + turn.rng().normal(0, 0.1, w.shape) for w in weights_of(honest.content)]
            return turn.reply(noisy, honest)             # ...then send something else
    """

    def __init__(self, message: Message, context: Context, call_next, hospital: int, mod: "AttackMod"):
        self.message, self.context, self.call_next = message, context, call_next
        self.hospital, self.mod = hospital, mod
        self.round, self.seed = round_and_seed(message.content["config"])
        self.global_weights = weights_of(message.content)

    def rng(self, salt: int = 0) -> np.random.Generator:
        """This hospital's generator for this round."""
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
        """Hospital ``j``'s honest update this round, as one vector."""
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


class AttackMod:
    """The Flower mod of one adversary: acts on train messages of its hospitals only."""

    def __init__(self, adversary: "Adversary", targets: frozenset[int], plan: Plan):
        self.adversary, self.targets = adversary, targets
        fed = plan.federation
        self.n_hospitals = fed.n_hospitals
        self.sampled = plan.sampled_per_round
        self.sizes = [int(n) for n in fed.n_train]
        self.cache: dict[tuple, Message] = {}

    def __call__(self, message: Message, context: Context, call_next) -> Message:
        hospital = int(context.node_config["partition-id"])
        if (hospital not in self.targets or message.metadata.message_type != MessageType.TRAIN
                or "arrays" not in message.content.array_records):  # legacy (SecAgg+) messages: left alone
            return call_next(message, context)
        return self.adversary.attack(Turn(message, context, call_next, hospital, self))


@dataclass(frozen=True)
class Adversary(Component):
    """Base class of malicious hospitals: ``hospitals`` are ids or a fraction of the federation.

    Override ``attack(turn)`` to rewrite what a malicious hospital sends (see
    ``Turn``), or ``install_attack(plan, targets)`` to act otherwise (e.g.
    through ``plan.local_data``).
    """

    family = "adversary"

    hospitals: Sequence[str] | float = param(0.2, *HOSPITALS)

    def details(self) -> str:
        """Its settings other than ``hospitals``, in words (the adversaries table)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "hospitals")

    def install(self, plan: Plan) -> None:
        targets = pick_hospitals(plan, self.hospitals)
        ids = [plan.federation.hospitals[i] for i in targets]
        plan.add_report(ADVERSARIES, lambda: ADVERSARIES.frame(
            {"adversary": self.name, "hospital": ids, "settings": self.details()}), name=type(self).__name__)
        self.install_attack(plan, frozenset(targets))

    def install_attack(self, plan: Plan, targets: frozenset[int]) -> None:
        """Default: a ClientApp mod at the ``adversary`` stage calling ``attack``."""
        plan.add_mod("adversary", AttackMod(self, targets, plan))

    def attack(self, turn: Turn) -> Message:
        """The reply a malicious hospital sends (default: the honest one)."""
        return turn.honest()


@dataclass(frozen=True)
class Colluders(Adversary):
    """Adversaries that coordinate (ALIE, IPM): they estimate the honest updates of the round.

    From their own data by default; ``omniscient=True`` lets them see every
    honest hospital's update (training is deterministic for a seed, so they
    recompute exactly what the others send).
    """

    omniscient: bool = param(False, Boolean())

    def honest_updates(self, turn: Turn) -> np.ndarray:
        """The updates the colluders know: every honest hospital's (omniscient) or their own."""
        mod = turn.mod
        pool = [j for j in range(mod.n_hospitals) if j not in mod.targets] if self.omniscient else sorted(mod.targets)
        return np.stack([turn.honest_update_of(j) for j in pool])

    def send(self, turn: Turn, update: np.ndarray) -> Message:
        """A reply carrying the global weights plus ``update``."""
        template = turn.honest() if not self.omniscient else None
        weights = unflat(flat(turn.global_weights) + update, turn.global_weights)
        return turn.reply(weights, template)
