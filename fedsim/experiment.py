"""Experiment spec -> run -> Result."""

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.serverapp.strategy import Strategy

from fedsim import engine
from fedsim._tf import note_device
from fedsim.components import FIELDS, Component, as_components
from fedsim.defenses import UpdateValidator
from fedsim.engine import Outcome, Plan, RoundObserver
from fedsim.federation import Federation
from fedsim.governance.audit import check_key
from fedsim.governance.policies import Policy, resolve_policies
from fedsim.governance.trail import Governance
from fedsim.models import ModelFn, resolve_model
from fedsim.plain import plain
from fedsim.privacy.ledger import ledger_of
from fedsim.recipe import TrainingRecipe
from fedsim.results import Result, tidy
from fedsim.strategies import make_strategy, strategy_label, title
from fedsim.validation import Instance, Integer, IsCallable, Mapping, NoneValue, Options, Positive, Share, Text, check


@dataclass(frozen=True, eq=False)
class Experiment:
    """One federated training run, fully specified; ``run()`` it for a Result.

    ``strategy`` is a name from ``fedsim.strategies.STRATEGIES`` or any Flower
    ``Strategy`` instance (used as it is: its own sampling settings apply).
    ``local_steps`` caps the optimizer steps per hospital per round.
    ``evaluate_every`` evaluates the global model every k rounds (and always
    before the first and after the last).
    ``privacy``, ``adversaries``, ``defenses`` and ``availability`` take
    components from ``fedsim.privacy``, ``fedsim.adversaries``,
    ``fedsim.defenses`` and ``fedsim.availability`` (one or a list; a
    ``{"name": ..., <settings>}`` mapping works too).
    ``audit`` (``fedsim.audit.Canaries``) inserts canaries and reports a
    lower bound on epsilon beside the accountant's, in ``Result.privacy``.
    ``observers`` see every message exchanged with the hospitals: an attack
    component such as ``fedsim.attacks.GradientInversion`` (its results join
    ``Result.attacks``) or any ``fedsim.engine.RoundObserver``.
    ``client_mods`` are Flower ClientApp mods of your own (stage ``custom``:
    inside adversaries and availability faults, outside client-side privacy).
    ``policies`` maps a hospital id (or "default") to its institution's
    ``fedsim.governance.Policy``, enforced and logged.
    Every run writes a hash-chained ``audit.jsonl`` (``Result.audit_path``) in
    ``out`` (an older log there is kept as ``audit-<time>.jsonl``), or a fresh
    folder under $FEDSIM_RESULTS or the temp dir (never the working
    directory: sweeps, notebooks and tests run many experiments);
    ``audit_key`` signs its entries (HMAC secret bytes or an Ed25519 private key).
    ``seed`` makes a run repeat; it is public (it travels in every message and
    the audit log). DP noise and the samples DP amplifies by come from a fresh
    secret each run, which no hospital, server or log reader can reproduce;
    ``noise_seed`` fixes that secret, to repeat a DP run exactly. It stays in
    this process: never in messages, ``config()``, the audit log or a cache
    key in the clear (``fedsim.randomness``).
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
    noise_seed: int | None = dataclasses.field(default=None, repr=False)
    evaluate_every: int = 1
    strategy_options: dict | None = None
    privacy: Component | Sequence[Component] | None = None
    adversaries: Component | Sequence[Component] | None = None
    defenses: Component | Sequence[Component] | None = None
    availability: Component | Sequence[Component] | None = None
    audit: Component | None = None
    privacy_budget: float | dict[str, float] | None = None
    observers: Sequence[RoundObserver | Component] = ()
    client_mods: Sequence[Callable] = ()
    name: str | None = None
    policies: dict[str, Policy | dict] | None = None
    out: str | os.PathLike | None = None
    audit_key: bytes | object | None = None

    def __post_init__(self):
        check("federation", self.federation, Instance(Federation, what="a fedsim Federation"))
        resolve_model(self.model, self.federation.n_features)
        for name, constraints in (("rounds", (Integer(min=1),)), ("local_epochs", (Integer(min=1),)),
                                  ("batch_size", (Integer(min=1),)), ("seed", (Integer(min=0, max=2**32 - 1),)),
                                  ("noise_seed", (Integer(min=0, max=2**63 - 1), NoneValue())),
                                  ("evaluate_every", (Integer(min=1),)),
                                  ("local_steps", (Integer(min=1), NoneValue())),
                                  ("learning_rate", (Positive(),)), ("fraction_train", (Share(),)),
                                  ("engine", (Options(*engine.names()),)), ("name", (Text(), NoneValue())),
                                  ("strategy_options", (Mapping(), NoneValue()))):
            object.__setattr__(self, name, check(name, getattr(self, name), *constraints))
        object.__setattr__(self, "engine", engine.engine_named(self.engine).name)
        for family in ("privacy", "adversary", "defense", "availability"):
            name = FIELDS[family]
            object.__setattr__(self, name, as_components(name, getattr(self, name), family) or None)
        audits = as_components("audit", self.audit, "audit")
        if len(audits) > 1:
            raise ValueError(f"audit: give one audit component, got {len(audits)}")
        object.__setattr__(self, "audit", audits[0] if audits else None)
        object.__setattr__(self, "observers", self._observers())
        object.__setattr__(self, "client_mods", tuple(
            check("client_mods", mod, IsCallable("a Flower ClientApp mod (message, context, call_next)"))
            for mod in _sequence("client_mods", self.client_mods)))
        self._budget()
        resolve_policies(self.policies, self.federation)
        check_key("audit_key", self.audit_key)
        if self.out is not None:
            check("out", self.out, Instance(str, os.PathLike, what="a folder path"))
            if Path(self.out).exists() and not Path(self.out).is_dir():
                raise ValueError(f"out: {str(self.out)!r} is a file; give a folder for the run's results")
        plan = self.build_plan()  # every component checked against the federation now, not mid-run
        plan.seal()
        engine.check(plan)
        engine.engine_named(self.engine).check(self)  # what this engine cannot run is refused now

    def _observers(self) -> tuple:
        observers = []
        for observer in _sequence("observers", self.observers):
            if isinstance(observer, (dict, str)):
                observer = as_components("observers", observer, "attack")[0]
            if not (isinstance(observer, Component) or callable(getattr(observer, "on_exchange", None))):
                raise ValueError(f"observers: {observer!r} is neither a fedsim component (e.g. "
                                 f"fedsim.attacks.GradientInversion) nor has an on_exchange(exchange) method")
            observers.append(observer)
        return tuple(observers)

    def _budget(self) -> dict[str, float]:
        """``privacy_budget`` as {hospital or "default": epsilon cap}, checked."""
        budget = self.privacy_budget
        if budget is None:
            return {}
        budget = dict(budget) if isinstance(budget, dict) else {"default": check("privacy_budget", budget, Positive())}
        allowed = {"default", *self.federation.hospitals}
        for key, cap in budget.items():
            if key not in allowed:
                raise ValueError(f"privacy_budget: unknown hospital {key!r}; allowed: 'default' or a hospital id")
            check(f"privacy_budget[{key!r}]", cap, Positive())
        if not any(c.spends_epsilon for c in self.components()):
            raise ValueError("privacy_budget: needs a DP technique in privacy= (one that spends epsilon: "
                             "DPSGD, CentralDP or LocalDP)")
        return budget

    @property
    def label(self) -> str:
        """The run's name: ``name`` or the strategy's display name (``fedsim.strategies.title``)."""
        return self.name or title(self.strategy)

    def replace(self, **changes) -> "Experiment":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def components(self) -> tuple[Component, ...]:
        """Every component of this experiment, in the order they are installed.

        Privacy, defenses (an ``UpdateValidator`` with its default plausibility
        bounds comes first when none is given; malformed replies never reach
        any of them: the engine rejects those itself),
        adversaries, availability, then the attacks among the observers (they
        watch what every other component leaves visible), then the audit (it
        reads the privacy charges the others made). Where each acts is its
        stage (``fedsim.engine.plan``), not this order.
        """
        defenses = self.defenses or ()
        if not any(isinstance(d, UpdateValidator) for d in defenses):
            defenses = (UpdateValidator(), *defenses)
        attacks = tuple(o for o in self.observers if isinstance(o, Component))
        return (*(self.privacy or ()), *defenses, *(self.adversaries or ()), *(self.availability or ()), *attacks,
                *((self.audit,) if self.audit is not None else ()))

    def build_plan(self) -> Plan:
        """The run's Plan with every component installed (not yet sealed: ``run`` seals and runs it)."""
        plan = Plan(
            federation=self.federation,
            model_fn=resolve_model(self.model),
            base_strategy=make_strategy(self.strategy, self.fraction_train, self.strategy_options),
            rounds=self.rounds,
            recipe=TrainingRecipe(epochs=self.local_epochs, batch_size=self.batch_size,
                                  learning_rate=float(self.learning_rate), max_steps=self.local_steps),
            seed=self.seed,
            noise_seed=self.noise_seed,
            evaluate_every=self.evaluate_every,
            label=self.label,
            observers=[o for o in self.observers if not isinstance(o, Component)],
        )
        for mod in self.client_mods:
            plan.add_mod("custom", mod)
        for component in self.components():
            component.install(plan)
        budget = self._budget()
        for hospital in self.federation.hospitals:
            cap = budget.get(hospital, budget.get("default"))
            if cap is not None:
                ledger_of(plan).cap(hospital, cap, "privacy budget")
        return plan

    def settings(self) -> dict:
        """The experiment as plain data, what a config holds (``SETTINGS``): ``fedsim run`` takes it back as YAML,
        a deployment spec carries it, ``Experiment(federation=..., **settings)`` rebuilds an equal experiment.

        Components appear as ``{"name": ..., <settings>}``; observers that are
        not fedsim components and ``client_mods`` have no plain form and are
        left out (``to_spec`` and the study cache refuse such experiments).
        """
        settings = {}
        for name in SETTINGS:
            value = getattr(self, name)
            if name in FIELDS.values():
                items = [c for c in (value if isinstance(value, tuple) else (value,)) if isinstance(c, Component)]
                value = [{"name": c.name, **c.settings()} for c in items]
                value = (value[0] if value else None) if name == "audit" else value
            elif name == "model":
                value = _plain_name(value)
            elif name == "strategy":
                value = strategy_label(value)
            elif name == "policies" and value is not None:
                value = {h: p if isinstance(p, dict) else dataclasses.asdict(p) for h, p in value.items()}
            settings[name] = plain(value)
        return settings

    def config(self, plan: Plan | None = None) -> dict:
        """The resolved settings as plain data: what the audit log, the results folder and the cache record.

        ``settings()``, with the federation's description, every component as
        it describes itself (the default validator included), the training
        every hospital is asked for and each hospital's resolved policy.
        ``plan``: this experiment's plan, built already (a run builds its plan once).
        """
        plan = plan if plan is not None else self.build_plan()
        return {
            "federation": repr(self.federation), **self.settings(),
            "components": [c.describe() for c in self.components()],
            "client_training": dict(plan.train_config()),
            "policies": {h: dataclasses.asdict(p) for h, p in resolve_policies(self.policies, self.federation).items()},
        }

    def run(self) -> Result:
        """Train, evaluating the global model on every test split each round, on the engine named ``engine``.

        ``engine="deployment"`` or ``"simulation"`` exports the experiment as a
        Flower app, runs it on a federation of processes on this machine and
        reads its Result and audit log back (``fedsim.engine.engines``).
        """
        return engine.engine_named(self.engine).run(self)

    def run_on(self, grid, hospital_of: dict[int, str]) -> Result:
        """Run in a Flower ServerApp, on the federation behind its ``grid`` (what an exported app does).

        Each node runs ``fedsim.engine.client_app`` of its hospital's plan;
        ``hospital_of`` says which hospital each node serves (the exported
        app's first round finds out: ``fedsim.deploy.roster``).
        """
        return self.execute(lambda plan: engine.run_on_grid(grid, plan, hospital_of))

    def to_flower_app(self, path: str | os.PathLike, federation: dict | None = None) -> Path:
        """Write this experiment as a self-contained Flower app folder (``flwr run PATH ...``); return the folder.

        ``federation``: how to load a federation built from a table,
        ``{"path": ..., "target": ..., "site": ...}`` (a synthetic one travels as its settings). The
        ``deployment`` engine writes it (``fedsim.deploy``).
        """
        return engine.engine_named("deployment").export(self, path, federation)

    def execute(self, execute: Callable[[Plan], Outcome]) -> Result:
        """Build the plan, ``execute`` it under governance (policies, audit log), assemble the Result: what an
        engine's ``run`` calls with its way of running a plan."""
        note_device()
        plan = self.build_plan()
        governance = Governance(self, plan, self.policies, self.out, self.audit_key)  # policies, audit.jsonl
        try:
            outcome = execute(plan)
        except BaseException as error:
            governance.abort(error)
            raise
        plan.final_weights = outcome.weights
        tables = {"participation": plan.decisions.participation_table(), "decisions": plan.decisions.table(),
                  **plan.reports()}
        result = Result(self.label, governance.release(tidy(outcome.rows)), outcome.weights, self.federation,
                        plan.model_fn, governance.config, tables, audit_path=governance.path)
        governance.finish(result, plan.decisions.participation(), outcome.test)
        return result


# What a config holds of an Experiment: every field but the data, where its results go, and the secrets and
# Python objects that never leave the user's process.
SETTINGS = tuple(f.name for f in dataclasses.fields(Experiment)
                 if f.name not in ("federation", "out", "audit_key", "noise_seed", "client_mods"))


def _sequence(field: str, value) -> tuple:
    """A sequence field as a tuple; one item on its own counts as a list of one."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _plain_name(value) -> str:
    return value if isinstance(value, str) else getattr(value, "__name__", type(value).__name__)
