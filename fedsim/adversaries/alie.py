""""A little is enough" (Baruch et al. 2019): colluders hide inside the honest spread."""

import math
from dataclasses import dataclass
from statistics import NormalDist

from flwr.app import Message

from fedsim.adversaries.base import Colluders, Turn
from fedsim.validation import NoneValue, Real, param


@dataclass(frozen=True)
class ALIE(Colluders):
    """Every colluder sends mean - z * std of the honest updates.

    ``z=None`` takes the paper's z_max for n hospitals sampled and m colluders:
    s = floor(n / 2 + 1) - m, z = Phi^-1((n - s) / n).
    """

    name = "alie"
    title = "ALIE"
    threats = ("poisoning",)

    z: float | None = param(None, Real(min=0), NoneValue())

    def z_for(self, n: int, m: int) -> float:
        """The z of ``n`` hospitals sampled per round with ``m`` colluders."""
        if self.z is not None:
            return float(self.z)
        s = math.floor(n / 2 + 1) - m
        return NormalDist().inv_cdf(min(max((n - s) / n, 0.5), 0.999))

    def attack(self, turn: Turn) -> Message:
        updates = self.honest_updates(turn)
        z = self.z_for(turn.mod.sampled, len(turn.mod.targets))
        return self.send(turn, updates.mean(0) - z * updates.std(0))
