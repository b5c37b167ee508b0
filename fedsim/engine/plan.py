"""The Plan: everything one run is made of, and the run's one state.

Components (privacy techniques, defenses, adversaries, availability models,
attacks) extend a Plan before it runs, each at its **stage**. Stages go from
innermost to outermost, on both sides of the federation:

- strategy wrappers (``plan.wrap``): ``privacy`` wraps the strategy first (a
  DP wrapper clips and noises whatever reaches aggregation, so no defense can
  void its guarantee), then ``defense`` (screens and reworks the replies
  before DP), ``adversary``, ``availability``;
- ClientApp mods (``plan.add_mod``): ``protocol`` (SecAgg+) is outermost, then
  ``availability`` (an offline hospital sends nothing at all), ``adversary``
  (a malicious hospital controls what it sends, after client-side privacy),
  ``custom`` (the user's ``client_mods``), ``defense``, and ``privacy``
  innermost (clipping and local noise act on the honest update).

The engine composes them in that order (``seal``); nobody inserts by hand.
The Plan also owns the per-round cohort (computed from the unwrapped
strategy), the round counter every component reads (``state``), the run's
decision record (``decisions``), state shared by a family of components
(``extras``: the privacy ledger) and the result tables (``add_report``, with
schemas).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import Strategy

from fedsim.engine.decisions import Decisions
from fedsim.engine.observers import CohortCheck, Eligibility, ReplyScreen, RoundObserver, RunState
from fedsim.engine.wrapper import AggregationRecord
from fedsim.federation import Federation
from fedsim.models import ModelFn
from fedsim.randomness import fresh_secret, server_entropy
from fedsim.recipe import TrainingRecipe
from fedsim.tables import Schema
from fedsim.validation import Fraction, Integer, NoneValue, Options, Positive, check

STAGES = ("privacy", "defense", "custom", "adversary", "availability", "protocol")  # innermost -> outermost
WRAPPER_STAGES = ("privacy", "defense", "adversary", "availability")
MOD_STAGES = STAGES

Mod = Callable  # a Flower ClientApp mod: (message, context, call_next) -> reply
Wrapper = Callable[[Strategy], Strategy]


def cohort_size(strategy: Strategy, n_nodes: int) -> int:
    """How many of ``n_nodes`` available hospitals Flower's strategy samples for a train round.

    Flower's rule (``FedAvg.configure_train``): ``max(int(n * fraction_train),
    min_train_nodes)``; a strategy without these settings trains every node.
    """
    fraction = getattr(strategy, "fraction_train", 1.0)
    if fraction == 0:
        return 0
    return max(int(n_nodes * fraction), int(getattr(strategy, "min_train_nodes", 1)))


@dataclass(frozen=True)
class SecAggSettings:
    """The settings of Flower's SecAgg+ protocol (``SecAggPlusWorkflow``), checked.

    ``num_shares``: into how many shares each hospital splits its secrets (its
    neighbours in the protocol, itself included): an integer >= 3, or a
    fraction in (0, 1] of the hospitals sampled that round.
    ``reconstruction_threshold``: how many of those shares rebuild a secret:
    an integer >= 2 and below an integer ``num_shares``, or a fraction in (0, 1]
    of the shares. Lower tolerates more dropouts; higher needs more colluders.
    ``clipping_range``: every weight (times its hospital's weight factor) is
    clipped to [-clipping_range, clipping_range] before quantization.
    ``quantization_range``: the integer levels of that range (the step is
    2 * clipping_range / quantization_range).
    ``modulus_range``: masks and sums live modulo this power of two (<= 2**32).
    ``max_weight``: the largest example count a hospital may weigh with; None:
    the largest hospital's training rows.
    ``timeout``: seconds the workflow waits for replies (only Flower's own
    runtimes wait; in-process delivery is synchronous).
    """

    num_shares: int | float = 3
    reconstruction_threshold: int | float = 2
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    max_weight: float | None = None
    timeout: float | None = None

    def __post_init__(self):
        def checked(name, *constraints):
            object.__setattr__(self, name, check(name, getattr(self, name), *constraints))

        checked("num_shares", Integer(min=3), Fraction())
        checked("reconstruction_threshold", Integer(min=2), Fraction())
        if isinstance(self.num_shares, int) and isinstance(self.reconstruction_threshold, int) \
                and self.reconstruction_threshold >= self.num_shares:
            raise ValueError(f"reconstruction_threshold: must be below num_shares ({self.num_shares}), "
                             f"got {self.reconstruction_threshold}")
        checked("clipping_range", Positive())
        checked("quantization_range", Integer(min=2))
        q, m = self.quantization_range, self.modulus_range
        if isinstance(m, bool) or not isinstance(m, int) or m <= q or m > 2**32 or m & (m - 1):
            raise ValueError(f"modulus_range: must be a power of two above quantization_range ({q}) "
                             f"and at most 2**32, got {m!r}")
        checked("max_weight", Positive(), NoneValue())
        checked("timeout", Positive(), NoneValue())


@dataclass(eq=False)
class Plan:
    """Everything an engine needs to run one federated experiment (see the module docstring).

    What a component may do in ``install(plan)``:

    - ``wrap(stage, factory)``: wrap the strategy (``factory(inner) -> Strategy``);
    - ``add_mod(stage, mod)``: a ClientApp mod at its stage;
    - ``screens``, ``eligibility``, ``cohort_checks``, ``observers``: append
      reply screens, checks of who may take part next round (per hospital, or
      on the whole cohort at once), and exchange observers;
    - ``recipe``: what every hospital is asked to do (``fedsim.recipe.TrainingRecipe``;
      a component changes it with ``dataclasses.replace``, e.g. DP-SGD's settings);
    - ``local_data``: functions ``(hospital index, x, y) -> (x, y)`` that change
      what a hospital trains on (data poisoning), applied in order, never in place;
    - ``extras``: per-run state a family of components shares, by key (the
      privacy ledger: ``fedsim.privacy.ledger_of(plan)``), and
      ``secret_randomness``: set when a privacy claim rests on the server's
      random draws (``fedsim.randomness``);
    - ``committed``: each hospital's committed training rows (the roster's; a
      component that changes a hospital's rows as the hospital itself would,
      e.g. an auditor's canary records, updates its count here);
    - ``add_report(schema, producer)``: a result table, declared (producers run once the run has ended,
      when ``final_weights`` holds the final global model);
    - read ``sampled_per_round`` (Flower's cohort, from the unwrapped
      strategy), ``state`` (the round counter), ``steps_run`` (the local steps
      each hospital really ran, recorded by the engine) and the training
      settings.

    For instance, a component that drops every third round's train reply of one hospital::

        def install(self, plan):
            def mod(message, context, call_next):
                config = message.content.config_records.get("config", {})
                server_round, _ = fedsim.recipe.round_and_seed(config)
                if context.node_config["partition-id"] == 0 and server_round % 3 == 0:
                    raise RuntimeError("offline")
                return call_next(message, context)

            plan.add_mod("availability", mod)

    ``secagg`` (set by ``fedsim.privacy.SecAgg``) switches the run onto
    Flower's SecAgg+ workflow: the server sees only masked replies and their
    unmasked sum; the strategy must be FedAvg.
    """

    federation: Federation
    model_fn: ModelFn
    base_strategy: Strategy
    rounds: int
    recipe: TrainingRecipe
    seed: int
    noise_seed: int | None = None  # the experimenter's secret (``fedsim.randomness``); None: a fresh one
    evaluate_every: int = 1
    label: str = "fedsim"
    observers: list[RoundObserver] = field(default_factory=list)
    screens: list[ReplyScreen] = field(default_factory=list)
    eligibility: list[Eligibility] = field(default_factory=list)
    cohort_checks: list[CohortCheck] = field(default_factory=list)
    local_data: list[Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=list)
    secagg: SecAggSettings | None = None
    state: RunState = field(default_factory=RunState)
    decisions: Decisions = field(default_factory=Decisions)
    extras: dict[str, object] = field(default_factory=dict)
    secret_randomness: bool = False
    steps_run: dict[tuple[int, int], int] = field(default_factory=dict)  # (round, hospital index) -> steps run
    final_weights: list[np.ndarray] | None = None  # the global model the run ended with (set when it ends)
    _mods: dict[str, list[Mod]] = field(default_factory=lambda: {s: [] for s in MOD_STAGES})
    _wrappers: dict[str, list[Wrapper]] = field(default_factory=lambda: {s: [] for s in WRAPPER_STAGES})
    _reports: dict[str, tuple[Schema, list[tuple[str, Callable[[], pd.DataFrame]]]]] = field(default_factory=dict)
    _strategy: Strategy | None = None

    def __post_init__(self):
        # The secret every privacy mechanism's randomness is drawn from (never the public seed, never sent).
        self.secret = fresh_secret() if self.noise_seed is None else int(self.noise_seed)
        fed = self.federation
        self.committed: dict[str, int] = {h: int(n) for h, n in zip(fed.hospitals, fed.n_train)}

    # --- what components call while installing -------------------------------------
    def add_mod(self, stage: str, mod: Mod) -> None:
        """Add a ClientApp mod at ``stage`` (one of ``STAGES``; later additions sit inside earlier ones)."""
        self._unsealed("add_mod")
        check("stage", stage, Options(*MOD_STAGES))
        self._mods[stage].append(mod)

    def wrap(self, stage: str, factory: Wrapper) -> None:
        """Wrap the strategy at ``stage`` (one of ``WRAPPER_STAGES``): ``factory(inner strategy) -> Strategy``."""
        self._unsealed("wrap")
        check("stage", stage, Options(*WRAPPER_STAGES))
        self._wrappers[stage].append(factory)

    def add_report(self, schema: Schema, producer: Callable[[], pd.DataFrame], name: str | None = None) -> None:
        """Register a result table; several producers of one table are stacked (same columns required).

        ``name`` says who produces it, in the error raised if it returns other columns.
        """
        known = self._reports.get(schema.name)
        if known is not None and known[0] != schema:
            raise ValueError(f"table {schema.name!r}: declared with columns {list(known[0].columns)} and "
                             f"{list(schema.columns)}")
        entry = (name or getattr(producer, "__qualname__", "a report"), producer)
        self._reports.setdefault(schema.name, (schema, []))[1].append(entry)

    def cohort(self, n_eligible: int) -> int:
        """How many of ``n_eligible`` hospitals the strategy samples for a train round (Flower's rule)."""
        return min(n_eligible, cohort_size(self.base_strategy, n_eligible))

    @property
    def sampled_per_round(self) -> int:
        """How many hospitals the strategy samples each round when all are eligible (Flower's rule)."""
        return self.cohort(self.federation.n_hospitals)

    def train_config(self) -> ConfigRecord:
        """What every hospital receives each round: the recipe and the run's public seed (``TrainingRecipe.encode``)."""
        return ConfigRecord(self.recipe.encode(self.seed))

    def server_entropy(self) -> list[int]:
        """What the server's random draws come from: the public seed, or the run's secret under DP."""
        return server_entropy(self.seed, self.secret, self.secret_randomness)

    # --- what the engine calls ---------------------------------------------------------
    def seal(self) -> None:
        """Compose the strategy from its wrappers; no component may install after this.

        Innermost, the engine's ``AggregationRecord`` records which replies
        reach the aggregation rule.
        """
        if self._strategy is None:
            strategy = AggregationRecord(self.base_strategy)
            for stage in WRAPPER_STAGES:
                for factory in self._wrappers[stage]:
                    wrapped = factory(strategy)
                    if not isinstance(wrapped, Strategy):
                        raise ValueError(f"defenses: a strategy wrapper must return a flwr Strategy, "
                                         f"got {type(wrapped).__name__}")
                    strategy = wrapped
            self._strategy = strategy

    @property
    def strategy(self) -> Strategy:
        """The composed strategy (the base strategy inside every wrapper); available once sealed."""
        if self._strategy is None:
            raise RuntimeError("plan.strategy exists once the plan is sealed; while installing, read "
                               "plan.base_strategy or plan.sampled_per_round")
        return self._strategy

    def client_mods(self) -> list[Mod]:
        """The ClientApp mods, outermost first (Flower's order)."""
        return [mod for stage in reversed(MOD_STAGES) for mod in self._mods[stage]]

    def mods_at(self, stage: str) -> list[Mod]:
        """The mods installed at one stage."""
        return list(self._mods[stage])

    def reports(self) -> dict[str, pd.DataFrame]:
        """Every registered table, produced and checked against its schema."""
        tables = {}
        for name, (schema, producers) in self._reports.items():
            frames = [schema.check(producer(), label) for label, producer in producers]
            frames = [f for f in frames if not f.empty]
            tables[name] = pd.concat(frames, ignore_index=True) if frames else schema.frame()
        return tables

    def _unsealed(self, what: str) -> None:
        if self._strategy is not None:
            raise RuntimeError(f"plan.{what}: the plan is sealed (components install before the run starts)")
