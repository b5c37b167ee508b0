"""A participation policy: rounds with too few usable replies are not aggregated."""

import math
from dataclasses import dataclass

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.validation import Fraction, Integer, param


class _MinParticipationScreen(ReplyScreen):
    def __init__(self, minimum: int | float):
        self.minimum = minimum

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train":
            return {}
        usable = [h for h, m in exchange.replies.items() if m.has_content() and h not in exchange.rejected]
        sent = len(exchange.sent)
        needed = self.minimum if isinstance(self.minimum, int) else math.ceil(self.minimum * sent)
        if len(usable) >= needed:
            return {}
        reason = (f"MinParticipation: round not aggregated, {len(usable)} usable replies of {sent} "
                  f"sampled, the policy needs {needed}")
        return dict.fromkeys(usable, reason)


@dataclass(frozen=True)
class MinParticipation(Component):
    """A round is aggregated only with at least ``min_hospitals`` usable replies.

    An integer counts hospitals; a float in (0, 1) is a fraction of those
    sampled. Otherwise every reply of the round is rejected (recorded) and
    the global model carries over unchanged.
    """

    family = "availability"
    name = "min_participation"
    title = "minimum participation"
    threats = ("dropout",)
    role = "mitigation"

    min_hospitals: int | float = param(0.5, Integer(min=1), Fraction())

    def install(self, plan: Plan) -> None:
        plan.screens.append(_MinParticipationScreen(self.min_hospitals))
