"""Dropout: hospitals offline at random."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.availability.base import Unavailable, is_train, round_and_seed, targets
from fedsim.components import HOSPITALS, Component
from fedsim.engine import Plan
from fedsim.validation import NoneValue, Real, param


@dataclass(frozen=True)
class Dropout(Component):
    """Each round, each of ``hospitals`` (default: all) is offline with probability ``rate``."""

    family = "availability"
    name = "dropout"
    threats = ("dropout",)

    rate: float = param(0.1, Real(min=0, max=1, max_open=True))
    hospitals: Sequence[str] | float | None = param(None, *HOSPITALS, NoneValue())

    def install(self, plan: Plan) -> None:
        chosen, rate = targets(self.hospitals, plan, 0xD0), float(self.rate)

        def dropout_mod(message, context, call_next):
            hospital = int(context.node_config["partition-id"])
            if is_train(message) and hospital in chosen:
                server_round, seed = round_and_seed(message)
                if np.random.default_rng([seed, server_round, hospital, 0xD0]).random() < rate:
                    raise Unavailable(f"dropped out of round {server_round} (Dropout rate {rate:g})")
            return call_next(message, context)

        plan.add_mod("availability", dropout_mod)
