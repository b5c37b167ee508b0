"""The update validator: implausible replies are rejected before aggregation, and the reason recorded.

Malformed replies never get this far: the engine's own ``ReplyCheck``
rejects them first (wrong keys, shapes or dtypes, NaN/Inf, unreadable
arrays, missing or non-positive ``num-examples``). This defense judges the
well-formed ones by what an honest hospital could plausibly send.
"""

from dataclasses import dataclass

import numpy as np

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.engine.messages import arrays, claimed_examples, decoded
from fedsim.validation import NoneValue, Options, Positive, param

LARGEST = "largest"


class _Validator(ReplyScreen):
    def __init__(self, settings: "UpdateValidator", max_examples: float | None, relative: bool):
        self.settings, self.max_examples, self.relative = settings, max_examples, relative

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train" or exchange.secagg_stage is not None:
            return {}  # under SecAgg+ the server only sees masked vectors: nothing to judge
        s, rejected, norms, claims = self.settings, {}, {}, {}
        updates = exchange.updates()
        global_weights: dict[int, list[np.ndarray]] = {}  # strategies send one shared record: decoded once
        for hospital, content in updates.items():
            sent = exchange.sent[hospital].content["arrays"]
            if id(sent) not in global_weights:
                global_weights[id(sent)] = [decoded(a).astype(np.float64) for a in sent.values()]
            received = next(iter(arrays(content).values())).values()
            norms[hospital] = float(np.sqrt(sum(float(np.sum((decoded(a) - g) ** 2))
                                                for a, g in zip(received, global_weights[id(sent)]))))
            claims[hospital] = float(claimed_examples(content))
            if s.max_norm is not None and norms[hospital] > s.max_norm:
                rejected[hospital] = f"UpdateValidator: update norm {norms[hospital]:.3g} > max_norm {s.max_norm:g}"
            elif self.max_examples is not None and claims[hospital] > self.max_examples:
                rejected[hospital] = (f"UpdateValidator: implausible num-examples {claims[hospital]:g} "
                                      f"(> {self.max_examples:g}, {self._examples_bound()})")
        if self.relative and s.max_norm_ratio is not None and len(norms) >= 3:
            median = float(np.median(list(norms.values())))
            for hospital, norm in norms.items():
                if median > 0 and norm > s.max_norm_ratio * median:
                    rejected.setdefault(hospital, f"UpdateValidator: update norm {norm:.3g} is far outside the "
                                                  f"cohort's (> {s.max_norm_ratio:g} x the round's median "
                                                  f"{median:.3g})")
        if self.relative and s.max_examples_ratio is not None and len(claims) >= 3:
            median = float(np.median(list(claims.values())))
            for hospital, claim in claims.items():
                if claim > s.max_examples_ratio * median:
                    rejected.setdefault(hospital, f"UpdateValidator: implausible num-examples {claim:g} "
                                                  f"(> {s.max_examples_ratio:g} x the round's median {median:g})")
        return rejected

    def _examples_bound(self) -> str:
        return "the largest hospital's training rows" if self.settings.max_examples == LARGEST else "max_examples"


@dataclass(frozen=True)
class UpdateValidator(Component):
    """Rejects implausible train replies before aggregation, and records why.

    Each bound is on by default and ``None`` turns it off:
    ``max_examples``: the largest example count a reply may claim
    (``"largest"``: the largest hospital's training rows, which the
    federation registers); ``max_norm``: an absolute bound on the update's L2
    norm; ``max_norm_ratio`` / ``max_examples_ratio``: bounds relative to
    the round's median norm / claim (with at least 3 replies). An honest
    heterogeneous federation (hospital sizes 10x apart, non-IID data) stays
    far inside the defaults. Under central DP the cohort-relative bounds are
    off: the DP clipping already bounds each update, and a decision about one
    hospital that depends on the others' updates would void the sensitivity
    the accountant assumes.
    """

    family = "defense"
    name = "update_validator"
    title = "update validator"

    max_norm_ratio: float | None = param(10.0, Positive(), NoneValue())
    max_norm: float | None = param(None, Positive(), NoneValue())
    max_examples_ratio: float | None = param(10.0, Positive(), NoneValue())
    max_examples: float | str | None = param(LARGEST, Options(LARGEST), Positive(), NoneValue())

    @classmethod
    def off(cls) -> "UpdateValidator":
        """Every plausibility bound off: only the engine's structural check stands (an undefended baseline)."""
        return cls(max_norm_ratio=None, max_norm=None, max_examples_ratio=None, max_examples=None)

    @property
    def threats(self) -> tuple[str, ...]:
        """Poisoning only when a plausibility bound is on."""
        settings = (self.max_norm_ratio, self.max_norm, self.max_examples_ratio, self.max_examples)
        return ("poisoning",) if any(v is not None for v in settings) else ()

    def install(self, plan: Plan) -> None:
        largest = float(plan.federation.n_train.max())
        max_examples = largest if self.max_examples == LARGEST else self.max_examples
        central = plan.ledger is not None and any(c.per == "release" for c in plan.ledger.charges)
        plan.screens.append(_Validator(self, max_examples, relative=not central))
