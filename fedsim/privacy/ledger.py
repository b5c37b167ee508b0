"""The run's privacy ledger: each hospital's epsilon (dp-accounting) for what was actually released, and caps.

Privacy techniques add a ``Charge`` (``ledger_of(plan).add(...)``: the first
call installs the run's ledger into the plan through its generic hooks, as
an observer, a cohort check and a table); the ledger then charges, whatever
the hospitals do, each with the sampling
that really ran and the neighbouring relation it is exact for:

- ``per="step"`` (DP-SGD, record level): every train reply the server
  received from a hospital (aggregated or rejected: the server saw it) costs
  that hospital the local steps the server asked for, or more where the
  simulator saw it run more, never what the reply claims. ``poisson``: each
  step is a Poisson-subsampled Gaussian at the hospital's batch / training
  rows, under add-or-remove-one-record (the trainer samples exactly so);
  ``shuffle``: shuffled fixed-size batches get no amplification: each pass
  over the rows costs one Gaussian release under replace-one-record (a
  replaced record moves the clipped sum by up to 2 x the clip);
- ``per="reply"`` (local DP): every reply received costs one Gaussian
  release, under replace-one-update (a replaced clipped update moves by up to
  2 x the clip);
- ``per="release"`` (central DP, hospital level): every aggregate actually
  released (``release``, called by the mechanism after aggregation) costs
  every hospital eligible that round one Gaussian release.
  ``without_replacement``: Flower samples a fixed number of the eligible
  hospitals, accounted with dp-accounting's sampling-without-replacement
  event under replace-one-hospital at that round's real sizes; ``none``:
  every eligible hospital takes part (or no amplification is claimed), one
  Gaussian release under add-or-remove-one-hospital. A round with nothing
  aggregated releases nothing and costs nothing; an excluded hospital is not
  charged.

A charge's ``noise_multiplier`` is the noise's standard deviation over the
clipping bound; under replace-one the accountant sees half of it (the
sensitivity is twice the bound). Who must not learn the sample: the
amplification holds only while the sample stays secret from whoever the
epsilon protects against (``fedsim.randomness``); the audit log lists who was
sampled, so its readers are trusted with that.

Caps (a privacy budget, an institution's ``max_epsilon``) are checked on
the cohort as a whole (``exclusions``): one more round is allowed only if it
keeps every charge of a hospital at or below its cap at the sampling that
round will really have, which grows as others are excluded.
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
SAMPLINGS = {"step": ("poisson", "shuffle"), "reply": ("none",), "release": ("without_replacement", "none")}
RELATIONS = {"poisson": "add_or_remove", "shuffle": "replace_one", "without_replacement": "replace_one",
             "none": "add_or_remove"}
# The last four columns are an empirical audit's (``fedsim.audit``): NaN (and False) for a row nobody audited.
AUDIT_COLUMNS = ("epsilon_audited", "audit_confidence", "audit_level", "audit_exceeded")
PRIVACY_TABLE = Schema("privacy", ("hospital", "technique", "unit", "mechanism", "noise_multiplier", "sampling_rate",
                                   "record_sampling", "hospital_sampling", "neighbouring", "steps", "rounds",
                                   "epsilon", "delta", "accountant", "budget", *AUDIT_COLUMNS))
DEFAULT_DELTA = 1e-5
PLD_MIN_NOISE = 0.3  # below it the privacy-loss distribution's support grows without bound: PLD refuses


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


def check_accountant(accountant: str, noise_multiplier: float, sampling: str) -> str:
    """``accountant``, refused where it cannot account the mechanism in bounded memory and time."""
    if accountant == "pld" and 0 < noise_multiplier < PLD_MIN_NOISE:
        raise ValueError(f"accountant: pld cannot account noise_multiplier {noise_multiplier:g} in bounded memory "
                         f"(its privacy-loss distribution grows without bound as the noise vanishes; it needs at "
                         f"least {PLD_MIN_NOISE}); use accountant='rdp'")
    if accountant == "pld" and sampling == "without_replacement":
        raise ValueError("accountant: pld has no sampling-without-replacement event in dp-accounting; use "
                         "accountant='rdp' (or hospital_sampling='none')")
    return accountant


def event_rate(key: tuple) -> float:
    """The sampling rate of an event key (``("poisson", q)``, ``("wor", n, k)`` or ``("gaussian",)``)."""
    return key[1] if key[0] == "poisson" else key[2] / key[1] if key[0] == "wor" else 1.0


def _event(key: tuple, noise_multiplier: float) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if key[0] == "poisson" and key[1] < 1:
        return dp_accounting.PoissonSampledDpEvent(key[1], gaussian)
    if key[0] == "wor" and key[2] < key[1]:
        return dp_accounting.SampledWithoutReplacementDpEvent(key[1], key[2], gaussian)
    return gaussian


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` compositions of the Poisson-subsampled Gaussian mechanism (add or remove one)."""
    return composed_epsilon(noise_multiplier, ((("poisson", sampling_rate), steps),), delta, accountant)


@lru_cache(maxsize=65536)
def composed_epsilon(noise_multiplier: float, events: tuple[tuple[tuple, int], ...], delta: float,
                     accountant: str = "rdp", relation: str = "add_or_remove") -> float:
    """Epsilon of the Gaussian mechanism of ``noise_multiplier`` (noise over sensitivity under ``relation``)
    composed over ``events``: (event key, count) pairs (``event_rate``'s keys)."""
    events = tuple((key, n) for key, n in events if n > 0)
    if not events:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    neighbours = (dp_accounting.NeighboringRelation.REPLACE_ONE if relation == "replace_one"
                  else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    ledger = (rdp.RdpAccountant(neighboring_relation=neighbours) if accountant == "rdp"
              else pld.PLDAccountant(neighboring_relation=neighbours, value_discretization_interval=1e-3))
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)  # notes on RDP orders it skips (the bound stays valid)
    try:
        for key, n in events:
            ledger.compose(_event(key, noise_multiplier), n)
        return float(ledger.get_epsilon(delta))
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Charge:
    """How one DP mechanism spends each hospital's privacy.

    ``technique`` is the registry name of the component that charges it;
    ``per`` says what is charged and ``sampling`` how it was sampled
    (``SAMPLINGS``, see the module docstring); ``noise_multiplier`` is the
    noise's standard deviation over the clipping bound; ``sampling_rate`` is
    each hospital's fixed rate (``step``, ``reply``; ``release`` charges use
    the round's real sizes); ``steps_per_round`` is what one round asks of
    each hospital; ``steps_per_pass`` how many of those steps pass over its
    rows once (``shuffle``); ``neighbours`` the neighbouring relation where
    the sampling does not decide it (``RELATIONS``).
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
    sampling: str = "poisson"
    steps_per_pass: dict[str, int] | None = None
    neighbours: str | None = None  # the relation where the sampling does not fix it (local DP: replace_one)

    def __post_init__(self):
        if self.per not in PERS:
            raise ValueError(f"per: unknown {self.per!r}; allowed: {list(PERS)}")
        if self.sampling not in SAMPLINGS[self.per]:
            raise ValueError(f"sampling: {self.sampling!r} for a per={self.per!r} charge; allowed: "
                             f"{list(SAMPLINGS[self.per])}")
        check_accountant(self.accountant, self.accounted_noise, self.sampling)

    @property
    def relation(self) -> str:
        """The neighbouring relation the charge is exact for: ``add_or_remove`` or ``replace_one`` (of its unit)."""
        return self.neighbours or RELATIONS[self.sampling]

    @property
    def neighbouring(self) -> str:
        """The neighbouring relation in words, e.g. "add or remove one record"."""
        return f"{'replace' if self.relation == 'replace_one' else 'add or remove'} one {self.unit}"

    @property
    def accounted_noise(self) -> float:
        """The noise over the sensitivity under ``relation``: the noise multiplier, halved under replace-one."""
        return self.noise_multiplier / (2 if self.relation == "replace_one" else 1)

    def key(self, hospital: str, steps: int) -> tuple[tuple, int]:
        """The (event key, count) that ``steps`` local steps of ``hospital`` cost (``step`` and ``reply``)."""
        if self.sampling == "shuffle":  # one release per pass over the rows (at most one step per record each)
            return ("gaussian",), math.ceil(steps / self.steps_per_pass[hospital])
        if self.per == "reply":
            return ("gaussian",), 1
        return ("poisson", self.sampling_rate[hospital]), steps

    def release_key(self, eligible: int, sampled: int) -> tuple:
        """The event key of a central release that sampled ``sampled`` of ``eligible`` hospitals."""
        return ("wor", eligible, min(sampled, eligible)) if self.sampling == "without_replacement" else ("gaussian",)


KEY = "privacy ledger"  # the plan's ``extras`` entry holding the run's ledger


def ledger_of(plan) -> "PrivacyLedger":
    """The run's privacy ledger, installed on first use: an observer (it charges the replies received), a cohort
    check (caps) and the ``privacy`` table; the run's server randomness becomes secret (``fedsim.randomness``)."""
    if KEY not in plan.extras:
        ledger = plan.extras[KEY] = PrivacyLedger(plan.federation.hospitals, plan.state, plan.cohort, plan.steps_run)
        plan.observers.append(ledger)
        plan.cohort_checks.append(ledger.exclusions)
        plan.add_report(PRIVACY_TABLE, ledger.table)
        plan.secret_randomness = True
    return plan.extras[KEY]


def installed_ledger(plan) -> "PrivacyLedger | None":
    """The run's privacy ledger if a technique installed one (no DP: None)."""
    return plan.extras.get(KEY)


class PrivacyLedger(RoundObserver):
    """Each hospital's releases per mechanism; epsilons, caps and the ledger table.

    ``cohort(n)`` is how many of ``n`` eligible hospitals the strategy samples
    (for the rate a central release will really have); ``steps_run`` is where
    the engine records the local steps each hospital really ran, by (round,
    hospital index) (``Plan.steps_run``).
    """

    def __init__(self, hospitals: tuple[str, ...], state: RunState, cohort: Callable[[int], int],
                 steps_run: dict[tuple[int, int], int] | None = None):
        self.hospitals = hospitals
        self.state = state
        self.cohort = cohort
        self.charges: list[Charge] = []
        self.events: list[dict[str, Counter]] = []  # per charge, per hospital: {event key: count}
        self.rounds: list[dict[str, int]] = []
        self.caps: dict[str, tuple[float, str]] = {}  # hospital -> (epsilon cap, what set it)
        self.exclusions_made: dict[tuple[int, str], tuple[str, str]] = {}  # (round, hospital) -> (source, reason)
        self.steps_run = {} if steps_run is None else steps_run
        # Functions (privacy table) -> privacy table that fill the audit columns (an empirical audit adds one).
        self.annotations: list[Callable[[pd.DataFrame], pd.DataFrame]] = []

    def add(self, charge: Charge) -> None:
        """Charge ``charge``'s releases to every hospital from now on."""
        self.charges.append(charge)
        self.events.append({h: Counter() for h in self.hospitals})
        self.rounds.append(dict.fromkeys(self.hospitals, 0))

    def cap(self, hospital: str, epsilon_cap: float, source: str) -> None:
        """Keep ``hospital`` at or below ``epsilon_cap`` for every mechanism (the lowest cap given wins)."""
        known = self.caps.get(hospital)
        if known is None or epsilon_cap < known[0]:
            self.caps[hospital] = (float(epsilon_cap), source)

    def epsilon(self, i: int, hospital: str, extra: tuple[tuple, int] | None = None) -> float:
        """Hospital's epsilon under charge ``i`` (plus a hypothetical ``extra`` (event key, count) release)."""
        charge, events = self.charges[i], Counter(self.events[i][hospital])
        if extra is not None:
            events[extra[0]] += extra[1]
        return composed_epsilon(charge.accounted_noise, tuple(sorted(events.items())), charge.delta[hospital],
                                charge.accountant, charge.relation)

    def _next(self, i: int, hospital: str, n_eligible: int) -> tuple[tuple, int]:
        """What one more round costs ``hospital`` under charge ``i``, with ``n_eligible`` hospitals eligible."""
        charge = self.charges[i]
        if charge.per == "release":
            return charge.release_key(n_eligible, self.cohort(n_eligible)), 1
        return charge.key(hospital, charge.steps_per_round[hospital])

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
                key, count = charge.key(hospital, steps)
                self.events[i][hospital][key] += count
                self.rounds[i][hospital] += 1

    def release(self, technique: str, server_round: int, sampled: int) -> None:
        """A central mechanism released an aggregate this round: charge every hospital eligible for it."""
        eligible = self.state.eligible.get(server_round, self.hospitals)
        for i, charge in enumerate(self.charges):
            if charge.technique == technique and charge.per == "release":
                key = charge.release_key(max(len(eligible), 1), sampled)
                for hospital in eligible:
                    self.events[i][hospital][key] += 1
                    self.rounds[i][hospital] += 1

    def table(self) -> pd.DataFrame:
        """One row per hospital and mechanism: the privacy each hospital has spent (``PRIVACY_TABLE``), with
        what the ``annotations`` add (an audit's lower bound)."""
        rows = [
            {"hospital": h, "technique": c.technique, "unit": c.unit, "mechanism": c.mechanism,
             "noise_multiplier": c.noise_multiplier,
             "sampling_rate": max((event_rate(k) for k in self.events[i][h]), default=c.sampling_rate.get(h, 0.0)),
             "record_sampling": c.sampling if c.per == "step" else "none",
             "hospital_sampling": c.sampling if c.per == "release" else "none", "neighbouring": c.neighbouring,
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
