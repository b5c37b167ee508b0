"""Inner-product manipulation (Xie et al. 2019): colluders push against the honest mean."""

from dataclasses import dataclass

from flwr.app import Message

from fedsim.adversaries.base import Colluders, Turn
from fedsim.validation import Positive, param


@dataclass(frozen=True)
class IPM(Colluders):
    """Every colluder sends -epsilon * the mean honest update."""

    name = "ipm"
    title = "IPM"
    threats = ("poisoning",)

    epsilon: float = param(0.5, Positive())

    def attack(self, turn: Turn) -> Message:
        return self.send(turn, -self.epsilon * self.honest_updates(turn).mean(0))
