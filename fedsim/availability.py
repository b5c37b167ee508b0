"""Hospitals that drop out, straggle or fail, for ``Experiment(availability=...)``.

The experiment always goes on with the hospitals that replied; who was
missing, and why, is ``res.participation`` (event ``failed`` for a hospital
that dropped out, missed the deadline or crashed; ``rejected`` for a round a
participation policy discarded).

- ``Dropout``: each round, each hospital is offline with probability ``rate``.
- ``Stragglers``: per-hospital compute and network profiles give a simulated
  time per round; hospitals slower than ``deadline_s`` are left out.
  ``res.tables["timing"]`` (per hospital) and ``res.tables["rounds"]``
  (simulated wall-clock per round) report it, with or without a deadline.
- ``Crash``: the ClientApp raises mid-round (after training).
- ``MinParticipation``: a round with fewer usable replies than the minimum is
  not aggregated (the global model stays as it was).

All random draws derive from the experiment seed, the round and the hospital.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from flwr.app import Message, MessageType

from fedsim._replies import add_report, number, positive_int_or_fraction
from fedsim.adversaries import check_hospitals, select_hospitals
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen, RoundObserver


class Unavailable(RuntimeError):
    """A simulated hospital did not reply this round (offline, too slow)."""


def _round_and_seed(message: Message) -> tuple[int, int]:
    config = message.content.config_records.get("config") or message.content.config_records.get("fitins.config")
    return int(config.get("server-round", 0)), int(config.get("seed", 0))


def _is_train(message: Message) -> bool:
    return message.metadata.message_type == MessageType.TRAIN


def _targets(hospitals, plan: Plan, salt: int) -> frozenset[int]:
    if hospitals is None:
        return frozenset(range(plan.federation.n_hospitals))
    return frozenset(select_hospitals("hospitals", hospitals, plan, salt))


@dataclass(frozen=True)
class Dropout(Component):
    """Each round, each of ``hospitals`` (default: all) is offline with probability ``rate``."""

    rate: float = 0.1
    hospitals: Sequence[str] | float | None = None

    def __post_init__(self):
        if not (isinstance(self.rate, (int, float)) and not isinstance(self.rate, bool) and 0 <= self.rate < 1):
            raise ValueError(f"rate: must be a probability in [0, 1), got {self.rate!r}")
        if self.hospitals is not None:
            check_hospitals(self)

    def install(self, plan: Plan) -> None:
        targets, rate = _targets(self.hospitals, plan, 0xD0), float(self.rate)

        def dropout_mod(message, context, call_next):
            hospital = int(context.node_config["partition-id"])
            if _is_train(message) and hospital in targets:
                server_round, seed = _round_and_seed(message)
                if np.random.default_rng([seed, server_round, hospital, 0xD0]).random() < rate:
                    raise Unavailable(f"dropped out of round {server_round} (Dropout rate {rate:g})")
            return call_next(message, context)

        plan.client_mods.insert(0, dropout_mod)


@dataclass(frozen=True)
class Crash(Component):
    """The ClientApp of ``hospitals`` raises mid-round, after training, with probability ``rate``.

    ``rounds`` limits the crashes to those rounds (default: any round).
    """

    hospitals: Sequence[str] | float = 0.1
    rate: float = 1.0
    rounds: Sequence[int] | None = None

    def __post_init__(self):
        check_hospitals(self)
        if not (isinstance(self.rate, (int, float)) and not isinstance(self.rate, bool) and 0 < self.rate <= 1):
            raise ValueError(f"rate: must be a probability in (0, 1], got {self.rate!r}")
        if self.rounds is not None:
            if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in self.rounds):
                raise ValueError(f"rounds: expected round numbers >= 1, got {self.rounds!r}")
            object.__setattr__(self, "rounds", tuple(self.rounds))

    def install(self, plan: Plan) -> None:
        targets, rate, rounds = _targets(self.hospitals, plan, 0xC7), float(self.rate), self.rounds

        def crash_mod(message, context, call_next):
            reply = call_next(message, context)
            hospital = int(context.node_config["partition-id"])
            if _is_train(message) and hospital in targets:
                server_round, seed = _round_and_seed(message)
                if (rounds is None or server_round in rounds) and \
                        np.random.default_rng([seed, server_round, hospital, 0xC7]).random() < rate:
                    raise RuntimeError(f"ClientApp crashed mid-round {server_round} (simulated Crash)")
            return reply

        plan.client_mods.insert(0, crash_mod)


class _Clock(RoundObserver):
    """Simulated time of every hospital's round; the same numbers the hospitals' mod uses."""

    def __init__(self, settings: "Stragglers", plan: Plan):
        fed = plan.federation
        self.settings, self.plan = settings, plan
        self.sizes = np.diff(fed.train_offsets)
        rng = np.random.default_rng([plan.seed, 0x5A])
        n = fed.n_hospitals
        s = settings
        draw = (lambda median: median * rng.lognormal(0.0, s.spread, n)) if s.spread else (lambda m: np.full(n, m))
        self.speed, self.bandwidth, self.latency = draw(s.examples_per_s), draw(s.mbit_per_s), draw(s.latency_s)
        for hospital, profile in (s.profiles or {}).items():
            i = fed.hospitals.index(hospital)
            self.speed[i] = profile.get("examples_per_s", self.speed[i])
            self.bandwidth[i] = profile.get("mbit_per_s", self.bandwidth[i])
            self.latency[i] = profile.get("latency_s", self.latency[i])
        self.timing: list[dict] = []

    def seconds(self, message: Message, hospital: int) -> float:
        server_round, seed = _round_and_seed(message)
        config = message.content.config_records.get("config") or message.content.config_records.get("fitins.config")
        plan = self.plan
        epochs = int(config.get("local-epochs", plan.local_epochs))
        examples = epochs * int(self.sizes[hospital])
        if "local-steps" in config:
            examples = min(examples, int(config["local-steps"]) * int(config.get("batch-size", plan.batch_size)))
        model_bytes = sum(len(a.data) for record in message.content.array_records.values() for a in record.values())
        jitter = np.random.default_rng([seed, server_round, hospital, 0x57]).lognormal(0.0, self.settings.jitter)
        compute = examples / self.speed[hospital]
        network = 2 * model_bytes * 8 / (self.bandwidth[hospital] * 1e6) + 2 * self.latency[hospital]
        return float((compute + network) * jitter)

    def on_exchange(self, exchange: Exchange) -> None:
        if exchange.message_type != "train":
            return
        hospitals = self.plan.federation.hospitals
        deadline = self.settings.deadline_s
        for hospital, message in exchange.sent.items():
            t = self.seconds(message, hospitals.index(hospital))
            self.timing.append({"round": exchange.server_round, "hospital": hospital, "simulated_s": t,
                                "late": deadline is not None and t > deadline})

    def timing_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.timing, columns=["round", "hospital", "simulated_s", "late"])

    def rounds_table(self) -> pd.DataFrame:
        timing = self.timing_table()
        if timing.empty:
            return pd.DataFrame(columns=["round", "simulated_s", "sampled", "late"])
        deadline = self.settings.deadline_s
        rounds = timing.groupby("round").agg(slowest=("simulated_s", "max"), sampled=("hospital", "size"),
                                             late=("late", "sum")).reset_index()
        # The server waits for the slowest hospital, or until the deadline if someone is late.
        rounds["simulated_s"] = rounds.slowest if deadline is None else rounds.slowest.clip(upper=deadline)
        return rounds[["round", "simulated_s", "sampled", "late"]].astype({"late": "int64"})


@dataclass(frozen=True)
class Stragglers(Component):
    """Per-hospital compute and network profiles against a simulated deadline.

    A hospital's round takes ``examples trained / examples_per_s`` plus the
    model's download and upload at ``mbit_per_s`` plus twice ``latency_s``,
    times a per-round jitter (lognormal, sigma ``jitter``). Profiles are drawn
    once per experiment around the given medians (lognormal, sigma
    ``spread``); ``profiles={hospital: {"examples_per_s": ..., "mbit_per_s":
    ..., "latency_s": ...}}`` sets some by hand. Hospitals slower than
    ``deadline_s`` (None: no deadline) do not reply that round.
    """

    deadline_s: float | None = None
    examples_per_s: float = 2000.0
    mbit_per_s: float = 20.0
    latency_s: float = 0.1
    spread: float = 0.75
    jitter: float = 0.2
    profiles: dict[str, dict[str, float]] | None = None

    def __post_init__(self):
        number("deadline_s", self.deadline_s, 0, strict=True, allow_none=True)
        for name in ("examples_per_s", "mbit_per_s"):
            number(name, getattr(self, name), 0, strict=True)
        for name in ("latency_s", "spread", "jitter"):
            number(name, getattr(self, name), 0)
        if self.profiles is not None:
            if not isinstance(self.profiles, dict):
                raise ValueError(f"profiles: expected {{hospital: {{setting: value}}}}, got {self.profiles!r}")
            for hospital, profile in self.profiles.items():
                unknown = set(profile) - {"examples_per_s", "mbit_per_s", "latency_s"}
                if unknown:
                    raise ValueError(f"profiles[{hospital!r}]: unknown settings {sorted(unknown)}; "
                                     "allowed: examples_per_s, mbit_per_s, latency_s")
                for name, value in profile.items():
                    number(f"profiles[{hospital!r}][{name!r}]", value, 0, strict=name != "latency_s")

    def install(self, plan: Plan) -> None:
        unknown = [h for h in (self.profiles or {}) if h not in plan.federation.hospitals]
        if unknown:
            raise ValueError(f"profiles: unknown hospitals {unknown}")
        clock = _Clock(self, plan)
        deadline = self.deadline_s
        plan.observers.append(clock)
        add_report(plan, "timing", clock.timing_table)
        add_report(plan, "rounds", clock.rounds_table)
        if deadline is None:
            return

        def deadline_mod(message, context, call_next):
            if _is_train(message):
                t = clock.seconds(message, int(context.node_config["partition-id"]))
                if t > deadline:
                    raise Unavailable(f"missed the deadline: {t:.1f} s simulated > {deadline:g} s")
            return call_next(message, context)

        plan.client_mods.insert(0, deadline_mod)


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

    An integer counts hospitals; a float in (0, 1] is a fraction of those
    sampled. Otherwise every reply of the round is rejected (recorded) and
    the global model carries over unchanged.
    """

    min_hospitals: int | float = 0.5

    def __post_init__(self):
        positive_int_or_fraction("min_hospitals", self.min_hospitals)

    def install(self, plan: Plan) -> None:
        plan.screens.append(_MinParticipationScreen(self.min_hospitals))


__all__ = ["Crash", "Dropout", "MinParticipation", "Stragglers", "Unavailable"]
