"""Trust scores in the spirit of FLTrust (Cao et al. 2021)."""

import dataclasses
from dataclasses import dataclass

import numpy as np
from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedsim.components import Component
from fedsim.defenses.base import DEFENSES
from fedsim.engine import Plan, StrategyWrapper
from fedsim.engine.messages import flat, replace_weights, unflat
from fedsim.training import trainer_for
from fedsim.validation import Integer, param


class TrustScoreStrategy(StrategyWrapper):
    """FLTrust-style: cosine trust against the server's own root update, norms matched to it.

    Each round the server trains from the global model on its root data (the
    same local recipe as the hospitals). A reply's trust is
    ReLU(cosine(its update, the root update)); replies with zero trust are
    rejected; the others are rescaled to the root update's norm and weighted
    by trust (their ``num-examples`` claim is replaced by the trust score, so
    FedAvg computes FLTrust's trust-weighted mean).
    """

    def __init__(self, strategy: Strategy, plan: Plan, x_root: np.ndarray, y_root: np.ndarray,
                 log: list[dict] | None = None):
        super().__init__(strategy)
        self.x_root, self.y_root = x_root, y_root
        self.plan = plan
        self.weighted_by_key = getattr(strategy, "weighted_by_key", "num-examples")
        self.log: list[dict] = [] if log is None else log

    def root_update(self, server_round: int) -> np.ndarray:
        """The server's own update of this round, on its root data."""
        plan = self.plan
        rng = np.random.default_rng([plan.seed, server_round, 0x7157])
        trainer = trainer_for(plan.model_fn, plan.federation.n_features)
        plain = dataclasses.replace(plan.recipe, dp=None)  # the server trains its root data without DP-SGD
        weights = plain.fit(trainer, self.current_weights, self.x_root, self.y_root, rng)
        return flat(weights) - flat(self.current_weights)

    def process_replies(self, server_round: int, replies: list[Message]) -> list[Message]:
        g0 = self.root_update(server_round)
        g0_norm = float(np.linalg.norm(g0))
        kept = []
        for reply in replies:
            update = flat(self.update(reply))
            norm = float(np.linalg.norm(update))
            trust = max(0.0, float(update @ g0) / (norm * g0_norm)) if norm > 0 and g0_norm > 0 else 0.0
            self.log.append({"round": server_round, "hospital": self.hospital(reply), "defense": "TrustScore",
                             "action": "trust", "value": trust})
            if trust <= 0:
                self.reject(server_round, reply, "trust score 0 (its update points away from the root update)")
                continue
            replace_weights(reply.content, unflat(flat(self.current_weights) + update * (g0_norm / norm),
                                                  self.current_weights))
            for record in reply.content.metric_records.values():
                if self.weighted_by_key in record:
                    record[self.weighted_by_key] = trust
            kept.append(reply)
        return kept


@dataclass(frozen=True)
class TrustScore(Component):
    """A trust-score defense in the spirit of FLTrust (Cao et al. 2021).

    The server holds ``root_size`` clean patients, drawn with the experiment's
    seed from the pooled training data (a small sample it curated itself).
    """

    family = "defense"
    name = "trust_score"
    title = "trust score"
    threats = ("poisoning", "backdoor")
    server_reads_rows = "draws its root dataset from the hospitals' training rows"

    root_size: int = param(200, Integer(min=10))

    def install(self, plan: Plan) -> None:
        fed = plan.federation
        rng = np.random.default_rng([plan.seed, 0x2007])
        rows = rng.choice(len(fed.y_train), min(self.root_size, len(fed.y_train)), replace=False)
        log: list[dict] = []
        plan.wrap("defense", lambda inner: TrustScoreStrategy(inner, plan, fed.x_train[rows], fed.y_train[rows], log))
        plan.add_report(DEFENSES, lambda: DEFENSES.frame(log), name="TrustScore")
