"""An inflated example count: more weight in FedAvg than the hospital's data earns."""

from dataclasses import dataclass

from flwr.app import Message

from fedsim.adversaries.base import Adversary, Turn
from fedsim.engine.messages import claimed_examples, weights_of
from fedsim.validation import Real, param


@dataclass(frozen=True)
class InflatedClaim(Adversary):
    """Trains honestly but claims ``factor`` times its number of examples (more weight in FedAvg)."""

    name = "inflated_claim"
    title = "inflated claim"
    threats = ("poisoning",)

    factor: float = param(50.0, Real(min=1, min_open=True))

    def attack(self, turn: Turn) -> Message:
        honest = turn.honest()
        if honest.has_error():
            return honest
        claim = claimed_examples(honest.content)
        return turn.reply(weights_of(honest.content), honest, claim=int(round(claim * self.factor)))
