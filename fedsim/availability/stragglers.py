"""Stragglers: per-hospital compute and network profiles against a simulated deadline."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from flwr.app import Message

from fedsim.availability.base import Unavailable, is_train, round_and_seed, train_config
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, RoundObserver
from fedsim.recipe import TrainingRecipe
from fedsim.tables import Schema
from fedsim.validation import Mapping, NoneValue, Positive, Real, check, check_unknown, param

TIMING = Schema("timing", ("round", "hospital", "simulated_s", "late"))
ROUNDS = Schema("rounds", ("round", "simulated_s", "sampled", "late"))


class _Clock(RoundObserver):
    """Simulated time of every hospital's round; the same numbers the hospitals' mod uses."""

    def __init__(self, settings: "Stragglers", plan: Plan):
        fed = plan.federation
        self.settings, self.plan = settings, plan
        self.sizes = fed.n_train
        rng = np.random.default_rng([plan.seed, 0x5A])
        n = fed.n_hospitals
        s = settings
        draw = (lambda median: median * rng.lognormal(0.0, s.spread, n)) if s.spread else (lambda m: np.full(n, m))
        self.speed, self.bandwidth, self.latency = draw(s.examples_per_s), draw(s.mbit_per_s), draw(s.latency_s)
        for hospital, profile in (s.profiles or {}).items():
            i = fed.index_of(hospital, "profiles", ids_only=True)
            self.speed[i] = profile.get("examples_per_s", self.speed[i])
            self.bandwidth[i] = profile.get("mbit_per_s", self.bandwidth[i])
            self.latency[i] = profile.get("latency_s", self.latency[i])
        self.timing: list[dict] = []

    def seconds(self, message: Message, hospital: int) -> float:
        server_round, seed = round_and_seed(message)
        recipe = TrainingRecipe.decode(train_config(message))
        examples = recipe.epochs * int(self.sizes[hospital])
        if recipe.max_steps is not None:
            examples = min(examples, recipe.max_steps * recipe.batch_size)
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
        return TIMING.frame(self.timing)

    def rounds_table(self) -> pd.DataFrame:
        timing = self.timing_table()
        if timing.empty:
            return ROUNDS.frame()
        deadline = self.settings.deadline_s
        rounds = timing.groupby("round").agg(slowest=("simulated_s", "max"), sampled=("hospital", "size"),
                                             late=("late", "sum")).reset_index()
        # The server waits for the slowest hospital, or until the deadline if someone is late.
        rounds["simulated_s"] = rounds.slowest if deadline is None else rounds.slowest.clip(upper=deadline)
        return rounds[list(ROUNDS.columns)].astype({"late": "int64"})


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

    family = "availability"
    name = "stragglers"
    threats = ("stragglers",)

    deadline_s: float | None = param(None, Positive(), NoneValue())
    examples_per_s: float = param(2000.0, Positive())
    mbit_per_s: float = param(20.0, Positive())
    latency_s: float = param(0.1, Real(min=0))
    spread: float = param(0.75, Real(min=0))
    jitter: float = param(0.2, Real(min=0))
    profiles: dict[str, dict[str, float]] | None = param(None, Mapping(), NoneValue())

    def __post_init__(self):
        super().__post_init__()
        for hospital, profile in (self.profiles or {}).items():
            where = f"profiles[{hospital!r}]"
            check(where, profile, Mapping())
            check_unknown(where, profile, ("examples_per_s", "mbit_per_s", "latency_s"))
            for name, value in profile.items():
                check(f"{where}[{name!r}]", value, Real(min=0) if name == "latency_s" else Positive())

    def install(self, plan: Plan) -> None:
        unknown = [h for h in (self.profiles or {}) if h not in plan.federation.hospitals]
        if unknown:
            raise ValueError(f"profiles: unknown hospitals {unknown}")
        clock = _Clock(self, plan)
        deadline = self.deadline_s
        plan.observers.append(clock)
        plan.add_report(TIMING, clock.timing_table, name="Stragglers")
        plan.add_report(ROUNDS, clock.rounds_table, name="Stragglers")
        if deadline is None:
            return

        def deadline_mod(message, context, call_next):
            if is_train(message):
                t = clock.seconds(message, int(context.node_config["partition-id"]))
                if t > deadline:
                    raise Unavailable(f"missed the deadline: {t:.1f} s simulated > {deadline:g} s")
            return call_next(message, context)

        plan.add_mod("availability", deadline_mod)
