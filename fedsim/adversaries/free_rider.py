"""Free riding: the global model sent back untrained."""

from dataclasses import dataclass

from flwr.app import Message

from fedsim.adversaries.base import Adversary, Turn
from fedsim.validation import Real, param


@dataclass(frozen=True)
class FreeRider(Adversary):
    """Sends the global weights back (plus optional disguising noise) and claims its true size."""

    name = "free_rider"
    title = "free riders"
    threats = ("free-riding",)

    disguise_std: float = param(0.0, Real(min=0))

    def attack(self, turn: Turn) -> Message:
        rng = turn.rng()
        return turn.reply([g + (rng.normal(0.0, self.disguise_std, g.shape).astype(g.dtype)
                                if self.disguise_std else 0) for g in turn.global_weights])
