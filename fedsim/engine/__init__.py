"""Engines run a ``Plan``; they are registered by name (``fedsim.engine.engines``).

- ``inprocess`` (default): the in-process Grid with the cohort engine (a
  round's hospitals trained at once, ``fedsim.engine.cohort``);
- ``sequential``: the same Grid, each hospital trained alone, one after
  another (the reference the cohort engine is checked against);
- ``deployment``: an exported Flower app on a SuperLink and one SuperNode per
  hospital on this machine; ``simulation``: the same app on Flower's
  simulation runtime (``flwr run``). Both are registered by ``fedsim.deploy``
  and run the plan through ``run_on_grid`` in the app's ServerApp, with
  ``client_app`` of its own hospital's plan on every node: there each party
  holds its own rows only, and the hospitals evaluate the global model
  (``HospitalTests``);
- ``ray``: another name of ``simulation`` (Flower's simulation runtime runs on
  Ray); fedsim never calls Flower's deprecated ``run_simulation``.
"""

import logging
from dataclasses import dataclass

from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from fedsim._flower import flower_log_level
from fedsim.engine.apps import HospitalTests, Outcome, make_client_app, serve
from fedsim.engine.cohort import CohortRound
from fedsim.engine.engines import ALIASES, ENGINES, engine_named, names, register  # noqa: E402
from fedsim.engine.grid import InProcessGrid
from fedsim.engine.observers import Eligibility, Exchange, ObservingGrid, ReplyScreen, RoundObserver, RunState
from fedsim.engine.plan import STAGES, Plan, SecAggSettings, cohort_size
from fedsim.engine.secagg import check_plan, serve_secagg
from fedsim.engine.secagg import client_mods as secagg_mods
from fedsim.engine.wrapper import StrategyWrapper


def client_app(plan: Plan, cohort: CohortRound | None = None) -> ClientApp:
    """The ClientApp every hospital of a sealed plan runs (SecAgg+ speaks Flower's legacy fit messages)."""
    secagg = plan.secagg is not None
    mods = secagg_mods(plan) if secagg else plan.client_mods()
    return make_client_app(plan.federation, plan.model_fn, mods, legacy_fit=secagg, local_data=plan.local_data,
                           steps_run=plan.steps_run, cohort=cohort,
                           secret=plan.secret)


def _loop(plan: Plan):
    """The server loop a plan runs with."""
    return serve_secagg if plan.secagg is not None else serve


def run_inprocess(plan: Plan, cohort: bool = True) -> Outcome:
    """Every hospital's ClientApp called directly in this process, no serialisation (cohort training or not)."""
    plan.seal()
    check(plan)  # here, not mid-run, where Flower would swallow the error
    fed = plan.federation
    # Node i + 1 serves hospital i (InProcessGrid).
    rounds = CohortRound(fed, plan.model_fn, plan.local_data, hospital_of=lambda node_id: node_id - 1,
                         secret=plan.secret) if cohort else None
    grid = InProcessGrid(client_app(plan, rounds), fed.n_hospitals,
                         prepare=rounds.prepare if rounds is not None else None)
    with flower_log_level(logging.WARNING):  # a progress bar replaces per-round INFO logs
        return _loop(plan)(grid, plan, hospital_of=lambda node_id: fed.hospitals[node_id - 1])


def run_on_grid(grid: Grid, plan: Plan, hospital_of: dict[int, str]) -> Outcome:
    """Run ``plan`` on the Grid of a Flower ServerApp whose nodes run ``client_app`` of their hospital's plan.

    ``hospital_of``: which hospital each node serves (the first round's
    answer, ``fedsim.deploy.roster``). Where the plan's federation does not
    hold every test split (a deployment's server holds none), each hospital
    evaluates the global model on its own (``HospitalTests``).
    """
    plan.seal()
    check(plan)
    nodes = {hospital: node for node, hospital in hospital_of.items()}
    tests = None if plan.federation.holds_all else (lambda record: HospitalTests(plan, grid, nodes, record))
    return _loop(plan)(grid, plan, hospital_of=hospital_of.__getitem__, tests=tests)


def check(plan: Plan) -> None:
    """Refuse, before anything runs, a sealed plan no engine can run as specified (it would hang or idle)."""
    n, base = plan.federation.n_hospitals, plan.base_strategy
    sampled = cohort_size(base, n)
    if sampled < 1:
        raise ValueError(f"fraction_train: the strategy samples no hospital of the {n} each round "
                         f"(fraction_train {getattr(base, 'fraction_train', '?')}, min_train_nodes "
                         f"{getattr(base, 'min_train_nodes', '?')}); nothing would be trained")
    if sampled > n:
        raise ValueError(f"strategy: it samples {sampled} hospitals a round (min_train_nodes), the federation has "
                         f"{n}: the run would wait forever for the others")
    waits_for = getattr(base, "min_available_nodes", 0)
    if waits_for > n:
        raise ValueError(f"strategy: min_available_nodes {waits_for} is more than the federation's {n} hospitals: "
                         f"the run would wait forever")
    if plan.secagg is not None:
        check_plan(plan)


@dataclass(frozen=True)
class InProcess:
    """The engine of the in-process Grid: the cohort engine (``inprocess``) or one hospital after another
    (``sequential``, the reference the cohort engine is checked against)."""

    name: str
    cohort: bool

    def check(self, experiment) -> None:
        """Nothing beyond the plan's own checks (``check``): every fedsim component runs in-process."""

    def run(self, experiment):
        """Build the experiment's plan and run it on the in-process Grid."""
        return experiment.execute(lambda plan: run_inprocess(plan, cohort=self.cohort))


register(InProcess("inprocess", cohort=True))
register(InProcess("sequential", cohort=False))


__all__ = ["ALIASES", "ENGINES", "STAGES", "Eligibility", "Exchange", "InProcess", "InProcessGrid", "ObservingGrid",
           "Outcome", "Plan", "ReplyScreen", "RoundObserver", "RunState", "SecAggSettings",
           "StrategyWrapper", "check", "client_app", "engine_named", "names", "register", "run_inprocess",
           "run_on_grid"]
