"""The run's privacy ledger: each hospital's epsilon (dp-accounting) for what was actually released, and caps.

Privacy techniques add a ``Charge`` (``plan.privacy_ledger().add(...)``);
the ledger then charges, whatever the hospitals do:

- ``per="step"`` (DP-SGD, record level): every train reply the server
  received from a hospital (aggregated or rejected: the server saw it) costs
  that hospital the local steps the server asked for, or more where the
  simulator saw it run more, never what the reply claims; Poisson
  subsampling at the hospital's batch / training rows;
- ``per="reply"`` (local DP): every reply received costs one Gaussian
  release at sampling rate 1;
- ``per="release"`` (central DP, hospital level): every aggregate actually
  released (``release``, called by the mechanism after aggregation) costs
  every hospital eligible that round one Gaussian release, subsampled at
  that round's real rate: hospitals sampled over hospitals eligible. A round
  with nothing aggregated releases nothing and costs nothing; an excluded
  hospital is not charged.

Conventions (say them in any privacy statement): fixed-size sampling
(Flower's cohort, DP-SGD's shuffled batches) is accounted as Poisson
subsampling at the same rate, the usual approximation, also made by
tensorflow-privacy's privacy statement.

Caps (a privacy budget, an institution's ``max_epsilon``) are checked on
the cohort as a whole (``exclusions``): one more round is allowed only if it
keeps every charge of a hospital at or below its cap at the sampling rate
that round will really have, which grows as others are excluded.
"""

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import dp_accounting
import pandas as pd
from dp_accounting import pld, rdp
from flwr.common.secure_aggregation.secaggplus_constants import Stage

from fedsim.engine.observers import Exchange, RoundObserver, RunState
from fedsim.tables import Schema

ACCOUNTANTS = ("rdp", "pld")
PERS = ("step", "reply", "release")
# The last four columns are an empirical audit's (``fedsim.audit``): NaN (and False) for a row nobody audited.
AUDIT_COLUMNS = ("epsilon_audited", "audit_confidence", "audit_level", "audit_exceeded")
PRIVACY_TABLE = Schema("privacy", ("hospital", "technique", "unit", "mechanism", "noise_multiplier", "sampling_rate",
                                   "steps", "rounds", "epsilon", "delta", "accountant", "budget", *AUDIT_COLUMNS))
DEFAULT_DELTA = 1e-5


def default_delta(n: int) -> float:
    """min(1e-5, 1 / n^1.1), with n the unit's population (a hospital's records, or the hospitals).

    Below 1/n, so that no single unit is likely to be exposed outright, and
    never above 1e-5, the value privacy engineers usually sign for small
    populations (a federation of 4 hospitals would otherwise get 0.22).
    """
    return min(DEFAULT_DELTA, 1.0 / max(n, 2) ** 1.1)


def check_delta(delta: float, n: int, unit: str, allow_large_delta: bool) -> float:
    """``delta``, refused at or above 1/n (n units of privacy) unless the user insists."""
    if delta >= 1.0 / n and not allow_large_delta:
        raise ValueError(f"delta: {delta:g} is not below 1/n = 1/{n} for {n} {unit}s: a mechanism with it may "
                         f"expose one {unit} outright; give a smaller delta, or allow_large_delta=True to insist")
    return delta


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` compositions of the Poisson-subsampled Gaussian mechanism."""
    return composed_epsilon(noise_multiplier, ((sampling_rate, steps),), delta, accountant)


@lru_cache(maxsize=65536)
def composed_epsilon(noise_multiplier: float, events: tuple[tuple[float, int], ...], delta: float,
                     accountant: str = "rdp") -> float:
    """Epsilon of the Gaussian mechanism composed over ``events``: (sampling rate, steps) pairs."""
    events = tuple((q, n) for q, n in events if n > 0)
    if not events:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    ledger = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)  # notes on RDP orders it skips (the bound stays valid)
    try:
        for q, n in events:
            event = dp_accounting.GaussianDpEvent(noise_multiplier)
            if q < 1:
                event = dp_accounting.PoissonSampledDpEvent(q, event)
            ledger.compose(event, n)
        return float(ledger.get_epsilon(delta))
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Charge:
    """How one DP mechanism spends each hospital's privacy.

    ``technique`` is the registry name of the component that charges it;
    ``per`` says what is charged (``PERS``, see the module docstring);
    ``sampling_rate`` is each hospital's fixed rate (``step``, ``reply``;
    ``release`` charges use the round's real rate); ``steps_per_round`` is
    what one round asks of each hospital.
    """

    technique: str
    mechanism: str
    unit: str
    noise_multiplier: float
    accountant: str
    per: str
    delta: dict[str, float]
    sampling_rate: dict[str, float]
    steps_per_round: dict[str, int]


class PrivacyLedger(RoundObserver):
    """Each hospital's releases per mechanism; epsilons, caps and the ledger table.

    ``cohort(n)`` is how many of ``n`` eligible hospitals the strategy samples
    (for the rate a central release will really have); ``steps_run`` is where
    the in-process ClientApp records the local steps it really ran, by
    (round, hospital).
    """

    def __init__(self, hospitals: tuple[str, ...], state: RunState, cohort: Callable[[int], int]):
        self.hospitals = hospitals
        self.state = state
        self.cohort = cohort
        self.charges: list[Charge] = []
        self.events: list[dict[str, Counter]] = []  # per charge, per hospital: {sampling rate: steps}
        self.rounds: list[dict[str, int]] = []
        self.caps: dict[str, tuple[float, str]] = {}  # hospital -> (epsilon cap, what set it)
        self.exclusions_made: dict[tuple[int, str], tuple[str, str]] = {}  # (round, hospital) -> (source, reason)
        self.steps_run: dict[tuple[int, int], int] = {}
        # Functions (privacy table) -> privacy table that fill the audit columns (an empirical audit adds one).
        self.annotations: list[Callable[[pd.DataFrame], pd.DataFrame]] = []

    def add(self, charge: Charge) -> None:
        if charge.per not in PERS:
            raise ValueError(f"per: unknown {charge.per!r}; allowed: {list(PERS)}")
        self.charges.append(charge)
        self.events.append({h: Counter() for h in self.hospitals})
        self.rounds.append(dict.fromkeys(self.hospitals, 0))

    def cap(self, hospital: str, epsilon_cap: float, source: str) -> None:
        """Keep ``hospital`` at or below ``epsilon_cap`` for every mechanism (the lowest cap given wins)."""
        known = self.caps.get(hospital)
        if known is None or epsilon_cap < known[0]:
            self.caps[hospital] = (float(epsilon_cap), source)

    def epsilon(self, i: int, hospital: str, extra: tuple[float, int] | None = None) -> float:
        """Hospital's epsilon under charge ``i`` (plus a hypothetical ``extra`` (rate, steps) release)."""
        charge, events = self.charges[i], Counter(self.events[i][hospital])
        if extra is not None:
            events[extra[0]] += extra[1]
        return composed_epsilon(charge.noise_multiplier, tuple(sorted(events.items())), charge.delta[hospital],
                                charge.accountant)

    def _next(self, i: int, hospital: str, n_eligible: int) -> tuple[float, int]:
        """What one more round costs ``hospital`` under charge ``i``, with ``n_eligible`` hospitals eligible."""
        charge = self.charges[i]
        if charge.per == "release":
            return self.cohort(n_eligible) / max(n_eligible, 1), 1
        return charge.sampling_rate[hospital], charge.steps_per_round[hospital]

    def exclusions(self, candidates: list[str]) -> dict[str, str]:
        """Hospitals a cap keeps out of the next round, with the reason (checked on the cohort as a whole)."""
        excluded: dict[str, str] = {}
        while True:
            eligible = [h for h in candidates if h not in excluded]
            new = {}
            for hospital in eligible:
                if hospital not in self.caps:
                    continue
                cap, source = self.caps[hospital]
                for i, charge in enumerate(self.charges):
                    spent = self.epsilon(i, hospital, self._next(i, hospital, len(eligible)))
                    if spent > cap:
                        new[hospital] = (f"{source}: one more round of {charge.mechanism} would reach epsilon "
                                         f"{spent:.3f} > {cap:g}")
                        break
            if not new:
                for hospital, reason in excluded.items():
                    self.exclusions_made[self.state.upcoming, hospital] = (self.caps[hospital][1], reason)
                return excluded
            excluded.update(new)  # fewer eligible hospitals raise the others' sampling rate: check again

    def on_exchange(self, exchange: Exchange) -> None:
        """Charge the replies the server received (the ``step`` and ``reply`` mechanisms)."""
        # Under SecAgg+ a round is four exchanges; updates are released in one of them.
        if exchange.message_type != "train" or exchange.secagg_stage not in (None, Stage.COLLECT_MASKED_VECTORS):
            return
        received = [h for h, m in exchange.replies.items() if m.has_content()]
        index = {h: k for k, h in enumerate(self.hospitals)}
        for i, charge in enumerate(self.charges):
            if charge.per == "release":
                continue
            for hospital in received:
                steps = charge.steps_per_round[hospital]
                if charge.per == "step":
                    steps = max(steps, self.steps_run.get((exchange.server_round, index[hospital]), 0))
                self.events[i][hospital][charge.sampling_rate[hospital]] += steps
                self.rounds[i][hospital] += 1

    def release(self, technique: str, server_round: int, sampled: int) -> None:
        """A central mechanism released an aggregate this round: charge every hospital eligible for it."""
        eligible = self.state.eligible.get(server_round, self.hospitals)
        rate = min(1.0, sampled / max(len(eligible), 1))
        for i, charge in enumerate(self.charges):
            if charge.technique == technique and charge.per == "release":
                for hospital in eligible:
                    self.events[i][hospital][rate] += 1
                    self.rounds[i][hospital] += 1

    def table(self) -> pd.DataFrame:
        """One row per hospital and mechanism: the privacy each hospital has spent (``PRIVACY_TABLE``), with
        what the ``annotations`` add (an audit's lower bound)."""
        rows = [
            {"hospital": h, "technique": c.technique, "unit": c.unit, "mechanism": c.mechanism,
             "noise_multiplier": c.noise_multiplier,
             "sampling_rate": max(self.events[i][h], default=c.sampling_rate.get(h, 0.0)),
             "steps": sum(self.events[i][h].values()), "rounds": self.rounds[i][h],
             "epsilon": self.epsilon(i, h), "delta": c.delta[h], "accountant": c.accountant,
             "budget": self.caps.get(h, (math.inf,))[0], "epsilon_audited": math.nan, "audit_confidence": math.nan,
             "audit_level": "", "audit_exceeded": False}
            for i, c in enumerate(self.charges) for h in self.hospitals
        ]
        frame = PRIVACY_TABLE.frame(rows)
        for annotate in self.annotations:
            frame = annotate(frame)
        return frame
