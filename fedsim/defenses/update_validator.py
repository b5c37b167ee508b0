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
from fedsim.privacy.ledger import installed_ledger
from fedsim.validation import Boolean, NoneValue, Positive, param


class _Validator(ReplyScreen):
    def __init__(self, settings: "UpdateValidator", committed: dict[str, int] | None, relative: bool):
        self.settings, self.committed, self.relative = settings, committed, relative  # committed: the plan's

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train" or exchange.secagg_stage is not None:
            return {}  # under SecAgg+ the server only sees masked vectors: nothing to judge
        s, rejected, norms = self.settings, {}, {}
        global_weights: dict[int, list[np.ndarray]] = {}  # strategies send one shared record: decoded once
        for hospital, content in exchange.updates().items():
            sent = exchange.sent[hospital].content["arrays"]
            if id(sent) not in global_weights:
                global_weights[id(sent)] = [decoded(a).astype(np.float64) for a in sent.values()]
            received = next(iter(arrays(content).values())).values()
            norms[hospital] = float(np.sqrt(sum(float(np.sum((decoded(a) - g) ** 2))
                                                for a, g in zip(received, global_weights[id(sent)]))))
            claim = float(claimed_examples(content))
            if self.committed is not None and claim != self.committed[hospital]:
                rejected[hospital] = (f"UpdateValidator: claims {claim:g} examples, its committed training rows "
                                      f"are {self.committed[hospital]}")
            elif s.max_norm is not None and norms[hospital] > s.max_norm:
                rejected[hospital] = f"UpdateValidator: update norm {norms[hospital]:.3g} > max_norm {s.max_norm:g}"
        if self.relative and s.max_norm_ratio is not None and len(norms) >= 3:
            median = float(np.median(list(norms.values())))
            for hospital, norm in norms.items():
                if median > 0 and norm > s.max_norm_ratio * median:
                    rejected.setdefault(hospital, f"UpdateValidator: update norm {norm:.3g} is far outside the "
                                                  f"cohort's (> {s.max_norm_ratio:g} x the round's median "
                                                  f"{median:.3g})")
        return rejected


@dataclass(frozen=True)
class UpdateValidator(Component):
    """Rejects implausible train replies before aggregation, and records why.

    Each check is on by default and off with ``None`` / ``False``:
    ``committed_examples``: a reply must claim exactly the training rows its
    hospital committed to (the roster of the first round: a count is a
    commitment, not a per-round claim, so no hospital can buy weight by
    claiming more, and no honest hospital is judged by its size; whether the
    committed sizes themselves are plausible is a data-sharing question the
    report shows, never a rejection); ``max_norm``: an absolute bound on the
    update's L2 norm; ``max_norm_ratio``: a bound relative to the round's
    median norm (with at least 3 replies). On every shipped configuration and
    every non-IID knob at 0 and 1 the defaults reject no honest hospital
    (``tests/defenses/test_honest_rejections.py``). Under central DP the
    cohort-relative bound is off: the DP clipping already bounds each
    update, and a decision about one hospital that depends on the others'
    updates would void the sensitivity the accountant assumes.
    """

    family = "defense"
    name = "update_validator"
    title = "update validator"

    max_norm_ratio: float | None = param(10.0, Positive(), NoneValue())
    max_norm: float | None = param(None, Positive(), NoneValue())
    committed_examples: bool = param(True, Boolean())

    @classmethod
    def off(cls) -> "UpdateValidator":
        """Every plausibility check off: only the engine's structural check stands (an undefended baseline)."""
        return cls(max_norm_ratio=None, max_norm=None, committed_examples=False)

    @property
    def threats(self) -> tuple[str, ...]:
        """Poisoning only when a plausibility check is on."""
        on = self.max_norm_ratio is not None or self.max_norm is not None or self.committed_examples
        return ("poisoning",) if on else ()

    def install(self, plan: Plan) -> None:
        committed = plan.committed if self.committed_examples else None
        ledger = installed_ledger(plan)
        central = ledger is not None and any(c.per == "release" for c in ledger.charges)
        plan.screens.append(_Validator(self, committed, relative=not central))
