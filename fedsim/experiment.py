"""Experiment spec -> run -> Result."""

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
from flwr.serverapp.strategy import Strategy

from fedsim import engine
from fedsim.components import Component, as_components
from fedsim.engine import Plan, RoundObserver
from fedsim.federation import Federation
from fedsim.governance.audit import check_key
from fedsim.governance.policies import Policy, resolve_policies
from fedsim.governance.trail import Governance
from fedsim.privacy import DPSGD, CentralDP, LocalDP, PrivacyLedger
from fedsim.defenses import UpdateValidator
from fedsim.models import ModelFn, resolve_model
from fedsim.results import Result, participation_table, tidy
from fedsim.strategies import make_strategy


def _check_int(field: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, eq=False)
class Experiment:
    """One federated training run, fully specified; ``run()`` it for a Result.

    ``strategy`` is a name from ``fedsim.strategies.STRATEGIES`` or any Flower
    ``Strategy`` instance (used as it is: its own sampling settings apply).
    ``local_steps`` caps the optimizer steps per hospital per round.
    ``evaluate_every`` evaluates the global model every k rounds (and always
    before the first and after the last).
    ``observers`` see every message exchanged with the hospitals: a
    ``fedsim.engine.RoundObserver`` or an attack component such as
    ``fedsim.attacks.GradientInversion``, whose results join ``Result.attacks``.
    ``privacy`` takes components from ``fedsim.privacy`` (one or a list);
    ``adversaries``, ``defenses`` and ``availability`` from ``fedsim.adversaries``,
    ``fedsim.defenses`` and ``fedsim.availability``.
    ``policies`` maps a hospital id (or "default") to its institution's
    ``fedsim.governance.Policy``, enforced and logged.
    Every run writes a hash-chained ``audit.jsonl`` (``Result.audit_path``) in
    ``out`` (an older log there is kept as ``audit-<time>.jsonl``), or a fresh
    folder under $FEDSIM_RESULTS or the temp dir (never the working
    directory: sweeps, notebooks and tests run many experiments);
    ``audit_key`` signs its entries (HMAC secret bytes or an Ed25519 private key).
    """

    federation: Federation
    model: str | ModelFn = "mlp"
    strategy: str | Strategy = "fedavg"
    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    fraction_train: float = 1.0
    local_steps: int | None = None
    engine: str = "inprocess"
    seed: int = 0
    evaluate_every: int = 1
    strategy_options: dict | None = None
    privacy: Component | Sequence[Component] | None = None
    adversaries: Component | Sequence[Component] | None = None
    defenses: Component | Sequence[Component] | None = None
    availability: Component | Sequence[Component] | None = None
    privacy_budget: float | dict[str, float] | None = None
    observers: Sequence[RoundObserver] = ()
    client_mods: Sequence[Callable] = ()
    name: str | None = None
    policies: dict[str, Policy | dict] | None = None
    out: str | os.PathLike | None = None
    audit_key: bytes | object | None = None

    def __post_init__(self):
        if not isinstance(self.federation, Federation):
            raise ValueError(f"federation: expected a fedsim Federation, got {type(self.federation).__name__}")
        if not (isinstance(self.fraction_train, (int, float)) and 0 < self.fraction_train <= 1):
            raise ValueError(f"fraction_train: must be in (0, 1], got {self.fraction_train!r}")
        resolve_model(self.model)
        make_strategy(self.strategy, self.fraction_train, self.strategy_options)
        _check_int("rounds", self.rounds, 1)
        _check_int("local_epochs", self.local_epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0)
        _check_int("evaluate_every", self.evaluate_every, 1)
        if self.local_steps is not None:
            _check_int("local_steps", self.local_steps, 1)
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be a number > 0, got {self.learning_rate!r}")
        if self.engine not in engine.ENGINES:
            raise ValueError(f"engine: unknown {self.engine!r}; allowed: {list(engine.ENGINES)}")
        as_components("privacy", self.privacy)
        for name in ("adversaries", "defenses", "availability"):
            as_components(name, getattr(self, name))
        self._budget()
        resolve_policies(self.policies, self.federation)
        check_key("audit_key", self.audit_key)
        for observer in self.observers:
            if not (isinstance(observer, Component) or callable(getattr(observer, "on_exchange", None))):
                raise ValueError(f"observers: {observer!r} is neither a fedsim component (e.g. "
                                 f"fedsim.attacks.GradientInversion) nor has an on_exchange(exchange) method")

    def _budget(self) -> dict[str, float]:
        """``privacy_budget`` as {hospital or "default": epsilon cap}, checked."""
        budget = self.privacy_budget
        if budget is None:
            return {}
        budget = dict(budget) if isinstance(budget, dict) else {"default": budget}
        allowed = {"default", *self.federation.hospitals}
        for key, cap in budget.items():
            if key not in allowed:
                raise ValueError(f"privacy_budget: unknown hospital {key!r}; allowed: 'default' or a hospital id")
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0:
                raise ValueError(f"privacy_budget: the cap of {key!r} must be a number > 0, got {cap!r}")
        if not any(isinstance(c, (DPSGD, CentralDP, LocalDP)) for c in as_components("privacy", self.privacy)):
            raise ValueError("privacy_budget: needs a DP technique in privacy= (DPSGD, CentralDP or LocalDP)")
        return budget

    @property
    def label(self) -> str:
        """The run's name: ``name`` or the strategy's."""
        if self.name:
            return self.name
        return self.strategy if isinstance(self.strategy, str) else type(self.strategy).__name__

    def replace(self, **changes) -> "Experiment":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def config(self) -> dict:
        """The resolved settings, as plain values (for logs and results folders)."""
        def plain(value):
            return value if isinstance(value, str) else getattr(value, "__name__", type(value).__name__)

        return {
            "federation": repr(self.federation), "model": plain(self.model), "strategy": plain(self.strategy),
            "strategy_options": dict(self.strategy_options or {}), "rounds": self.rounds,
            "local_epochs": self.local_epochs, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "fraction_train": self.fraction_train,
            "local_steps": self.local_steps, "engine": self.engine, "seed": self.seed,
            "evaluate_every": self.evaluate_every,
            "components": [repr(c) for c in self.components()],
            "dpsgd": next(({"l2_norm_clip": c.l2_norm_clip, "noise_multiplier": c.noise_multiplier}
                           for c in self.components() if isinstance(c, DPSGD)), None),
            "privacy_budget": self.privacy_budget,
            "policies": {h: dataclasses.asdict(p) for h, p in resolve_policies(self.policies, self.federation).items()},
        }

    def run(self) -> Result:
        """Train, evaluating the global model on every test split each round."""
        model_fn = resolve_model(self.model)
        plan = Plan(
            federation=self.federation,
            model_fn=model_fn,
            strategy=make_strategy(self.strategy, self.fraction_train, self.strategy_options),
            rounds=self.rounds,
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=float(self.learning_rate),
            local_steps=self.local_steps,
            seed=self.seed,
            evaluate_every=self.evaluate_every,
            label=self.label,
            observers=[o for o in self.observers if not isinstance(o, Component)],
            client_mods=list(self.client_mods),
        )
        for component in self.components():
            component.install(plan)
        for observer in self.observers:  # attacks watch what every other component leaves visible
            if isinstance(observer, Component):
                observer.install(plan)
        if self.privacy_budget is not None:
            PrivacyLedger.of(plan).budget = self._budget()
        governance = Governance(self, plan, self.policies, self.out, self.audit_key)  # policies, audit.jsonl
        try:
            outcome = engine.run(plan, self.engine)
        except BaseException as error:
            governance.abort(error)
            raise
        tables = {"participation": participation_table(outcome.events)}
        tables.update({name: report() for name, report in plan.reports.items()})
        result = Result(self.label, governance.release(tidy(outcome.rows)), outcome.weights, self.federation,
                        model_fn, self.config(), tables, audit_path=governance.path)
        governance.finish(result, outcome.events)
        return result

    def components(self) -> tuple[Component, ...]:
        """Every component of this experiment, in the order they are installed.

        Strategy wrappers nest in install order (the last installed sees the
        replies first) and adversary/availability mods put themselves
        outermost in the ClientApp, so the order is: privacy (its DP wrapper
        is innermost: it clips and noises whatever reaches aggregation, so a
        defense cannot void its guarantee); defenses (screen and rework the
        replies before DP; a basic UpdateValidator comes first when none is
        given, so no strategy ever aggregates NaN or misshapen arrays);
        adversaries (their mods control what a malicious hospital sends, after
        client-side privacy); availability (outermost mods: an offline
        hospital sends nothing at all; participation policies screen after
        the validator).
        """
        adversaries = as_components("adversaries", self.adversaries)
        defenses = as_components("defenses", self.defenses)
        availability = as_components("availability", self.availability)
        if not any(isinstance(d, UpdateValidator) for d in defenses):
            defenses = (UpdateValidator(max_norm_ratio=None, max_examples_ratio=None), *defenses)
        return as_components("privacy", self.privacy) + defenses + adversaries + availability


def compare(runs: dict[str, "Experiment | Result"]) -> pd.DataFrame:
    """Run what is not yet run; one tidy table with a ``run`` column."""
    if not runs:
        raise ValueError("runs: give at least one {name: Experiment or Result}")
    frames = []
    for name, item in runs.items():
        if isinstance(item, Experiment):
            item = item.replace(name=item.name or name).run()
        if not isinstance(item, Result):
            raise ValueError(f"runs[{name!r}]: expected an Experiment or Result, got {type(item).__name__}")
        frames.append(item.metrics.assign(run=name))
    return pd.concat(frames, ignore_index=True)[["run", "round", "scope", "metric", "value"]]
