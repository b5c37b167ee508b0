"""The update validator: malformed or implausible replies are rejected before aggregation."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.engine.messages import claimed_examples
from fedsim.validation import NoneValue, Positive, param


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

    family = "defense"
    name = "update_validator"
    title = "update validator"

    max_norm_ratio: float | None = param(10.0, Positive(), NoneValue())
    max_norm: float | None = param(None, Positive(), NoneValue())
    max_examples_ratio: float | None = param(10.0, Positive(), NoneValue())
    max_examples: float | None = param(None, Positive(), NoneValue())

    @property
    def threats(self) -> tuple[str, ...]:
        """Poisoning only when a plausibility threshold is on (a structural check stops no attacker)."""
        settings = (self.max_norm_ratio, self.max_norm, self.max_examples_ratio, self.max_examples)
        return ("poisoning",) if any(v is not None for v in settings) else ()

    def install(self, plan: Plan) -> None:
        plan.screens.append(_Validator(self))
