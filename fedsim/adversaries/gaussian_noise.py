"""Gaussian noise instead of an update."""

from dataclasses import dataclass

from flwr.app import Message

from fedsim.adversaries.base import Adversary, Turn
from fedsim.validation import Positive, param


@dataclass(frozen=True)
class GaussianNoise(Adversary):
    """Sends the global weights plus Gaussian noise of standard deviation ``std``, without training."""

    name = "gaussian_noise"
    title = "Gaussian noise"
    threats = ("poisoning",)

    std: float = param(1.0, Positive())

    def attack(self, turn: Turn) -> Message:
        rng = turn.rng()
        return turn.reply([g + rng.normal(0.0, self.std, g.shape).astype(g.dtype) for g in turn.global_weights])
