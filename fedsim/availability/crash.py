"""Crashes: the ClientApp fails mid-round, after training."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.availability.base import is_train, round_and_seed, targets
from fedsim.components import HOSPITALS, Component
from fedsim.engine import Plan
from fedsim.validation import Integer, NoneValue, Real, Seq, param


@dataclass(frozen=True)
class Crash(Component):
    """The ClientApp of ``hospitals`` raises mid-round, after training, with probability ``rate``.

    ``rounds`` limits the crashes to those rounds (default: any round).
    """

    family = "availability"
    name = "crash"
    threats = ("dropout",)

    hospitals: Sequence[str] | float = param(0.1, *HOSPITALS)
    rate: float = param(1.0, Real(min=0, max=1, min_open=True))
    rounds: Sequence[int] | None = param(None, Seq(Integer(min=1), what="a list of round numbers >= 1"),
                                         NoneValue())

    def install(self, plan: Plan) -> None:
        chosen, rate, rounds = targets(self.hospitals, plan, 0xC7), float(self.rate), self.rounds

        def crash_mod(message, context, call_next):
            reply = call_next(message, context)
            hospital = int(context.node_config["partition-id"])
            if is_train(message) and hospital in chosen:
                server_round, seed = round_and_seed(message)
                if (rounds is None or server_round in rounds) and \
                        np.random.default_rng([seed, server_round, hospital, 0xC7]).random() < rate:
                    raise RuntimeError(f"ClientApp crashed mid-round {server_round} (simulated Crash)")
            return reply

        plan.add_mod("availability", crash_mod)
