"""Server-side defenses for ``Experiment(defenses=...)``; they compose with each other and with DP.

Robust aggregation rules are Flower's own strategies, by name:
``strategy="krum" | "multikrum" | "bulyan" | "fedmedian" | "fedtrimmedavg"``
(``strategy_options={"num_malicious_nodes": 2}`` for the Krum family).
The components here add to whatever strategy runs:

- ``UpdateValidator``: a reply screen rejecting malformed or implausible
  updates (NaN/Inf, wrong keys, shapes or dtypes, absurd norms, implausible
  example counts) before any strategy sees them; every rejection lands in
  ``res.participation``. Experiments with adversaries or availability models
  get a basic one (structure and finiteness) even when none is given.
- ``NormBound``: bounds the L2 norm of every update (Sun et al. 2019,
  "Can you really backdoor federated learning?"), optionally adding weak
  Gaussian noise to each update.
- ``TrustScore``: FLTrust-style trust scores (Cao et al. 2021) from a small
  root dataset the server trains on itself.
- ``Wrap``: any strategy wrapper of your own, e.g. a ``StrategyWrapper``
  subclass written in a notebook cell.

What each defense did, round by round, is ``res.tables["defenses"]``.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedsim._replies import StrategyWrapper, add_report, claimed_examples, flat, number, replace_weights, unflat
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.training import trainer_for


def _log_report(plan: Plan, log: list[dict]) -> None:
    add_report(plan, "defenses", lambda: pd.DataFrame(
        log, columns=["round", "hospital", "defense", "action", "value"]))


# --------------------------------------------------------------------------- validator


class _Validator(ReplyScreen):
    def __init__(self, settings: "UpdateValidator"):
        self.settings = settings
        self._expected: dict[int, dict] = {}

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train":
            return {}
        rejected: dict[str, str] = {}
        norms, claims = {}, {}
        self._expected = {}  # decoded global weights by id, valid during this call only
        candidates = {h: m for h, m in exchange.replies.items() if m.has_content() and h not in exchange.rejected}
        key_sets = Counter(self._metric_keys(m) for m in candidates.values())
        usual_keys = key_sets.most_common(1)[0][0] if key_sets else None
        for hospital, reply in candidates.items():
            sent = exchange.sent.get(hospital)
            if sent is None or len(sent.content.array_records) != 1 or "arrays" not in sent.content.array_records:
                return {}  # not a Message-API train round (e.g. SecAgg+'s legacy records): nothing to check
            problem, norm, claim = self._check(sent, reply, usual_keys)
            if problem:
                rejected[hospital] = f"UpdateValidator: {problem}"
            else:
                norms[hospital], claims[hospital] = norm, claim
        s = self.settings
        if s.max_norm_ratio is not None and len(norms) >= 3:
            median = float(np.median(list(norms.values())))
            for hospital, norm in norms.items():
                if median > 0 and norm > s.max_norm_ratio * median:
                    rejected[hospital] = (f"UpdateValidator: absurd update norm {norm:.3g} "
                                          f"(> {s.max_norm_ratio:g} x the round's median {median:.3g})")
        if s.max_examples_ratio is not None and len(claims) >= 3:
            median = float(np.median(list(claims.values())))
            for hospital, claim in claims.items():
                if claim > s.max_examples_ratio * median:
                    rejected.setdefault(hospital, f"UpdateValidator: implausible num-examples {claim:g} "
                                                  f"(> {s.max_examples_ratio:g} x the round's median {median:g})")
        return rejected

    @staticmethod
    def _metric_keys(reply: Message) -> tuple:
        return tuple(sorted((name, tuple(sorted(r.keys()))) for name, r in reply.content.metric_records.items()))

    def _check(self, sent: Message, reply: Message, usual_keys) -> tuple[str | None, float, float]:
        s = self.settings
        content = reply.content
        if len(content.array_records) != 1:
            return f"expected one ArrayRecord, got {len(content.array_records)}", 0, 0
        expected = sent.content["arrays"]
        record = next(iter(content.array_records.values()))
        if list(record.keys()) != list(expected.keys()):
            return f"wrong array keys {list(record.keys())[:5]} (expected {list(expected.keys())[:5]})", 0, 0
        squared = 0.0
        if id(expected) not in self._expected:  # the global weights, decoded once per round
            self._expected[id(expected)] = {k: a.numpy().astype(np.float64) for k, a in expected.items()}
        global_weights = self._expected[id(expected)]
        for key in expected.keys():
            want, got = expected[key], record[key]
            if tuple(got.shape) != tuple(want.shape):
                return f"array {key!r} has shape {tuple(got.shape)}, expected {tuple(want.shape)}", 0, 0
            try:
                value = got.numpy()
            except Exception as error:  # undecodable bytes
                return f"array {key!r} cannot be read ({type(error).__name__})", 0, 0
            if not np.issubdtype(value.dtype, np.floating):
                return f"array {key!r} has dtype {value.dtype}, expected floating point", 0, 0
            if not np.all(np.isfinite(value)):
                return f"array {key!r} holds NaN or Inf", 0, 0
            squared += float(np.sum((value.astype(np.float64) - global_weights[key]) ** 2))
        norm = float(np.sqrt(squared))
        if s.max_norm is not None and norm > s.max_norm:
            return f"absurd update norm {norm:.3g} (> max_norm {s.max_norm:g})", norm, 0
        if usual_keys is not None and self._metric_keys(reply) != usual_keys:
            return "its metrics differ from the other replies' (keys)", norm, 0
        claim = claimed_examples(content)
        if isinstance(claim, bool) or not isinstance(claim, (int, float)) or not np.isfinite(claim) or claim <= 0:
            return f"implausible num-examples {claim!r}", norm, 0
        if s.max_examples is not None and claim > s.max_examples:
            return f"implausible num-examples {claim:g} (> max_examples {s.max_examples:g})", norm, claim
        return None, norm, float(claim)


@dataclass(frozen=True)
class UpdateValidator(Component):
    """Rejects malformed or implausible train replies before aggregation, and records why.

    Always: a reply must hold one ArrayRecord with the global model's keys
    and shapes, floating-point and finite values, the same metric keys as the
    other replies and a positive, finite ``num-examples``. Plausibility, each
    ``None`` to skip: update norm at most ``max_norm_ratio`` times the round's
    median (and at most ``max_norm``); claimed examples at most
    ``max_examples_ratio`` times the round's median (and at most ``max_examples``).
    """

    max_norm_ratio: float | None = 10.0
    max_norm: float | None = None
    max_examples_ratio: float | None = 10.0
    max_examples: float | None = None

    def __post_init__(self):
        for name in ("max_norm_ratio", "max_norm", "max_examples_ratio", "max_examples"):
            number(name, getattr(self, name), 0, strict=True, allow_none=True)

    def install(self, plan: Plan) -> None:
        plan.screens.append(_Validator(self))


# --------------------------------------------------------------------------- norm bounding


class NormBoundStrategy(StrategyWrapper):
    """Clips every update to an L2 norm bound (fixed, or the round's median norm), adds optional noise."""

    def __init__(self, strategy: Strategy, max_norm: float | None = None, noise_std: float = 0.0, seed: int = 0):
        super().__init__(strategy)
        self.max_norm, self.noise_std, self.seed = max_norm, noise_std, seed
        self.log: list[dict] = []

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

    max_norm: float | None = None
    noise_std: float = 0.0

    def __post_init__(self):
        number("max_norm", self.max_norm, 0, strict=True, allow_none=True)
        number("noise_std", self.noise_std, 0)

    def install(self, plan: Plan) -> None:
        plan.strategy = wrapper = NormBoundStrategy(plan.strategy, self.max_norm, self.noise_std, plan.seed)
        _log_report(plan, wrapper.log)


# --------------------------------------------------------------------------- trust scores


class TrustScoreStrategy(StrategyWrapper):
    """FLTrust-style: cosine trust against the server's own root update, norms matched to it.

    Each round the server trains from the global model on its root data (the
    same local recipe as the hospitals). A reply's trust is
    ReLU(cosine(its update, the root update)); replies with zero trust are
    rejected; the others are rescaled to the root update's norm and weighted
    by trust (their ``num-examples`` claim is replaced by the trust score, so
    FedAvg computes FLTrust's trust-weighted mean).
    """

    def __init__(self, strategy: Strategy, plan: Plan, x_root: np.ndarray, y_root: np.ndarray):
        super().__init__(strategy)
        self.trainer = trainer_for(plan.model_fn, plan.federation.n_features)
        self.x_root, self.y_root = x_root, y_root
        self.plan = plan
        self.weighted_by_key = getattr(strategy, "weighted_by_key", "num-examples")
        self.log: list[dict] = []

    def root_update(self, server_round: int) -> np.ndarray:
        plan = self.plan
        rng = np.random.default_rng([plan.seed, server_round, 0x7157])
        weights, _, _ = self.trainer.fit(self.current_weights, self.x_root, self.y_root, epochs=plan.local_epochs,
                                         batch_size=plan.batch_size, learning_rate=plan.learning_rate, rng=rng,
                                         max_steps=plan.local_steps)
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

    root_size: int = 200

    def __post_init__(self):
        if isinstance(self.root_size, bool) or not isinstance(self.root_size, int) or self.root_size < 10:
            raise ValueError(f"root_size: must be an integer >= 10, got {self.root_size!r}")

    def install(self, plan: Plan) -> None:
        fed = plan.federation
        rng = np.random.default_rng([plan.seed, 0x2007])
        rows = rng.choice(len(fed.y_train), min(self.root_size, len(fed.y_train)), replace=False)
        plan.strategy = wrapper = TrustScoreStrategy(plan.strategy, plan, fed.x_train[rows], fed.y_train[rows])
        _log_report(plan, wrapper.log)


# --------------------------------------------------------------------------- your own


@dataclass(frozen=True)
class Wrap(Component):
    """Your own defense: ``factory(strategy) -> Strategy`` wraps the experiment's strategy.

    ``factory`` is typically a ``StrategyWrapper`` subclass (or any Flower
    strategy wrapper class taking the strategy first).
    """

    factory: Callable[[Strategy], Strategy]
    name: str | None = None

    def __post_init__(self):
        if not callable(self.factory):
            raise ValueError(f"factory: expected a callable strategy -> Strategy, got {self.factory!r}")

    def install(self, plan: Plan) -> None:
        wrapped = self.factory(plan.strategy)
        if not isinstance(wrapped, Strategy):
            raise ValueError(f"factory: must return a flwr Strategy, got {type(wrapped).__name__}")
        plan.strategy = wrapped


__all__ = ["NormBound", "NormBoundStrategy", "StrategyWrapper", "TrustScore", "TrustScoreStrategy",
           "UpdateValidator", "Wrap"]
