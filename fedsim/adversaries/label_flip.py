"""Label flipping: data poisoning with reversed outcomes."""

from dataclasses import dataclass

from fedsim.adversaries.base import Adversary
from fedsim.engine import Plan


@dataclass(frozen=True)
class LabelFlip(Adversary):
    """Data poisoning: the hospital trains on flipped outcomes (died <-> survived)."""

    name = "label_flip"
    title = "label flip"
    threats = ("poisoning",)

    def install_attack(self, plan: Plan, targets: frozenset[int]) -> None:
        def flip(i, x, y):
            return (x, (1 - y).astype(y.dtype)) if i in targets else (x, y)

        plan.local_data.append(flip)
