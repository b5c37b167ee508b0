"""Sign flipping: the update reversed and amplified."""

from dataclasses import dataclass

from flwr.app import Message

from fedsim.adversaries.base import Adversary, Turn
from fedsim.engine.messages import weights_of
from fedsim.validation import Positive, param


@dataclass(frozen=True)
class SignFlip(Adversary):
    """Sends ``-scale`` times its honest update (scale 1: the update reversed)."""

    name = "sign_flip"
    title = "sign flip"
    threats = ("poisoning",)

    scale: float = param(4.0, Positive())

    def attack(self, turn: Turn) -> Message:
        honest = turn.honest()
        if honest.has_error():
            return honest
        w = weights_of(honest.content)
        return turn.reply([g - self.scale * (wi - g) for wi, g in zip(w, turn.global_weights)], honest)
