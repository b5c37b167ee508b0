"""Norm bounding (Sun et al. 2019, "Can you really backdoor federated learning?")."""

from dataclasses import dataclass

import numpy as np
from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedsim.components import Component
from fedsim.defenses.base import DEFENSES
from fedsim.engine import Plan, StrategyWrapper
from fedsim.engine.messages import flat, replace_weights, unflat
from fedsim.validation import NoneValue, Positive, Real, param


class NormBoundStrategy(StrategyWrapper):
    """Clips every update to an L2 norm bound (fixed, or the round's median norm), adds optional noise."""

    def __init__(self, strategy: Strategy, max_norm: float | None = None, noise_std: float = 0.0, seed: int = 0,
                 log: list[dict] | None = None):
        super().__init__(strategy)
        self.max_norm, self.noise_std, self.seed = max_norm, noise_std, seed
        self.log: list[dict] = [] if log is None else log

    def process_replies(self, server_round: int, replies: list[Message]) -> list[Message]:
        updates = [flat(self.update(r)) for r in replies]
        norms = [float(np.linalg.norm(u)) for u in updates]
        bound = self.max_norm if self.max_norm is not None else float(np.median(norms))
        rng = np.random.default_rng([self.seed, server_round, 0x0B])
        for reply, update, norm in zip(replies, updates, norms, strict=True):
            scale = min(1.0, bound / norm) if norm > 0 else 1.0
            if scale < 1.0 or self.noise_std:
                update = update * scale
                if self.noise_std:
                    update = update + rng.normal(0.0, self.noise_std, update.shape)
                new = unflat(flat(self.current_weights) + update, self.current_weights)
                replace_weights(reply.content, new)
            if scale < 1.0:
                self.log.append({"round": server_round, "hospital": self.hospital(reply), "defense": "NormBound",
                                 "action": "clipped", "value": norm})
        return replies


@dataclass(frozen=True)
class NormBound(Component):
    """Norm bounding of each update (Sun et al. 2019), optionally with weak DP-style noise.

    ``max_norm=None`` bounds each update by the median norm of the round's
    updates (no tuning; robust while most hospitals are honest).
    ``noise_std`` adds Gaussian noise to every update after clipping.
    """

    family = "defense"
    name = "norm_bound"
    title = "norm bound"
    threats = ("poisoning", "backdoor")

    max_norm: float | None = param(None, Positive(), NoneValue())
    noise_std: float = param(0.0, Real(min=0))

    def install(self, plan: Plan) -> None:
        log: list[dict] = []
        plan.wrap("defense", lambda inner: NormBoundStrategy(inner, self.max_norm, self.noise_std, plan.seed, log))
        plan.add_report(DEFENSES, lambda: DEFENSES.frame(log), name="NormBound")
