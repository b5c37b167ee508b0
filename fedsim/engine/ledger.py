"""The run's privacy ledger: each hospital's epsilon (dp-accounting), and budgets.

Privacy techniques add a ``Charge`` (``plan.privacy_ledger().add(...)``);
the ledger observes every exchange and charges what was released.

Conventions (say them in any privacy statement):
- DP-SGD shuffles each hospital's rows into batches and Flower samples a fixed
  number of hospitals per round; both are accounted as Poisson subsampling at
  the same rate (batch / n_train, sampled / eligible hospitals), the usual
  approximation, also made by tensorflow-privacy's privacy statement.
- Default delta: 1 / n ** 1.1, with n the hospital's training records for
  record-level DP and the number of hospitals for hospital-level DP.
"""

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import dp_accounting
import pandas as pd
from dp_accounting import pld, rdp
from flwr.common.secure_aggregation.secaggplus_constants import Stage

from fedsim.engine.observers import Exchange, RoundObserver, RunState
from fedsim.tables import Schema

ACCOUNTANTS = ("rdp", "pld")
PRIVACY_TABLE = Schema("privacy", ("hospital", "technique", "unit", "mechanism", "noise_multiplier", "sampling_rate",
                                   "steps", "rounds", "epsilon", "delta", "accountant", "budget"))


def default_delta(n: int) -> float:
    """1 / n^1.1: below 1/n, so that no single unit is likely to be exposed outright."""
    return 1.0 / max(n, 2) ** 1.1


@lru_cache(maxsize=65536)
def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` compositions of the Poisson-subsampled Gaussian mechanism."""
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    event = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    ledger = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)  # notes on RDP orders it skips (the bound stays valid)
    try:
        ledger.compose(event, steps)
        return float(ledger.get_epsilon(delta))
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Charge:
    """How one DP mechanism spends each hospital's privacy.

    ``technique`` is the registry name of the component that charges it.
    ``per`` says what one step is: ``"step"`` a local DP-SGD step (counted
    from each reply's ``local_steps``), ``"reply"`` one released update,
    ``"round"`` one round of a hospital-level mechanism every eligible
    hospital takes part in. ``next_steps`` is what one more round costs.
    """

    technique: str
    mechanism: str
    unit: str
    noise_multiplier: float
    accountant: str
    per: str
    sampling_rate: dict[str, float]
    delta: dict[str, float]
    next_steps: dict[str, int]


class PrivacyLedger(RoundObserver):
    """Counts each hospital's steps per mechanism; epsilons, budgets and the ledger table."""

    def __init__(self, hospitals: tuple[str, ...], state: RunState):
        self.hospitals = hospitals
        self.state = state
        self.charges: list[Charge] = []
        self.budget: dict[str, float] = {}
        self.steps: list[dict[str, int]] = []
        self.rounds: list[dict[str, int]] = []
        self.excluded: dict[int, set[str]] = {}

    def add(self, charge: Charge) -> None:
        self.charges.append(charge)
        self.steps.append(dict.fromkeys(self.hospitals, 0))
        self.rounds.append(dict.fromkeys(self.hospitals, 0))

    def epsilon(self, i: int, hospital: str, extra_steps: int = 0) -> float:
        charge = self.charges[i]
        return epsilon(charge.noise_multiplier, charge.sampling_rate[hospital],
                       self.steps[i][hospital] + extra_steps, charge.delta[hospital], charge.accountant)

    def eligible(self, hospital: str) -> str | None:
        """Why ``hospital`` may not take part in the next round (its budget), or None."""
        cap = self.budget.get(hospital, self.budget.get("default"))
        if cap is None:
            return None
        for i, charge in enumerate(self.charges):
            spent = self.epsilon(i, hospital, charge.next_steps[hospital])
            if spent > cap:
                self.excluded.setdefault(self.state.upcoming, set()).add(hospital)
                return f"privacy budget: one more round of {charge.mechanism} would reach epsilon {spent:.2f} > {cap:g}"
        return None

    def on_exchange(self, exchange: Exchange) -> None:
        # Under SecAgg+ a round is four exchanges; updates are released in one of them.
        if exchange.message_type != "train" or exchange.secagg_stage not in (None, Stage.COLLECT_MASKED_VECTORS):
            return
        released = {h: m.content for h, m in exchange.replies.items() if m.has_content()}
        for i, charge in enumerate(self.charges):
            if charge.per == "round":
                excluded = self.excluded.get(exchange.server_round, set())
                charged = {h: 1 for h in self.hospitals if h not in excluded}
            elif charge.per == "step":
                # Masked SecAgg+ replies carry no metrics: charge the steps a round runs.
                charged = {h: int(c["metrics"]["local_steps"]) if "metrics" in c else charge.next_steps[h]
                           for h, c in released.items()}
            else:
                charged = dict.fromkeys(released, 1)
            for hospital, steps in charged.items():
                self.steps[i][hospital] += steps
                self.rounds[i][hospital] += 1

    def table(self) -> pd.DataFrame:
        """One row per hospital and mechanism: the privacy each hospital has spent (``PRIVACY_TABLE``)."""
        rows = [
            {"hospital": h, "technique": c.technique, "unit": c.unit, "mechanism": c.mechanism,
             "noise_multiplier": c.noise_multiplier,
             "sampling_rate": c.sampling_rate[h], "steps": self.steps[i][h], "rounds": self.rounds[i][h],
             "epsilon": self.epsilon(i, h), "delta": c.delta[h], "accountant": c.accountant,
             "budget": self.budget.get(h, self.budget.get("default", math.inf))}
            for i, c in enumerate(self.charges) for h in self.hospitals
        ]
        return PRIVACY_TABLE.frame(rows)
