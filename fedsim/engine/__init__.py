"""Engines run a ``Plan``.

- ``inprocess`` (default): the in-process Grid with the cohort engine (a
  round's hospitals trained at once, ``fedsim.engine.cohort``);
- ``sequential``: the same Grid, each hospital trained alone, one after
  another (the reference the cohort engine is checked against);
- ``ray``: the same ClientApp on Flower's Ray simulation runtime.
"""

import logging
import os
import time

from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedsim._flower import flower_log_level
from fedsim.engine.apps import Outcome, make_client_app, serve
from fedsim.engine.cohort import CohortRound
from fedsim.engine.grid import InProcessGrid
from fedsim.engine.ledger import PrivacyLedger
from fedsim.engine.observers import Eligibility, Exchange, ObservingGrid, ReplyScreen, RoundObserver, RunState
from fedsim.engine.plan import STAGES, Plan, SecAggSettings, cohort_size
from fedsim.engine.secagg import check_plan, serve_secagg
from fedsim.engine.secagg import client_mods as secagg_mods
from fedsim.engine.wrapper import StrategyWrapper

ENGINES = ("inprocess", "sequential", "ray")


def _client_app_and_loop(plan: Plan, cohort: CohortRound | None = None):
    """The ClientApp and the server loop a plan runs with (SecAgg+ speaks Flower's legacy fit messages)."""
    secagg = plan.secagg is not None
    mods = secagg_mods(plan) if secagg else plan.client_mods()
    app = make_client_app(plan.federation, plan.model_fn, mods, legacy_fit=secagg, local_data=plan.local_data,
                          steps_run=plan.ledger.steps_run if plan.ledger is not None else None, cohort=cohort)
    return app, (serve_secagg if secagg else serve)


def run_inprocess(plan: Plan, cohort: bool = True) -> Outcome:
    """Every hospital's ClientApp called directly in this process, no serialisation (cohort training or not)."""
    fed = plan.federation
    # Node i + 1 serves hospital i (InProcessGrid).
    rounds = CohortRound(fed, plan.model_fn, plan.local_data, hospital_of=lambda node_id: node_id - 1) \
        if cohort else None
    app, loop = _client_app_and_loop(plan, rounds)
    grid = InProcessGrid(app, fed.n_hospitals, prepare=rounds.prepare if rounds is not None else None)
    with flower_log_level(logging.WARNING):  # a progress bar replaces per-round INFO logs
        return loop(grid, plan, hospital_of=lambda node_id: fed.hospitals[node_id - 1])


def _discover_hospitals(grid: Grid, plan: Plan, wait_s: float = 120) -> dict[int, str]:
    """Ask each node which hospital it serves (Ray assigns random node ids)."""
    deadline = time.monotonic() + wait_s
    while len(node_ids := list(grid.get_node_ids())) < plan.federation.n_hospitals:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of {plan.federation.n_hospitals} simulated nodes registered")
        time.sleep(0.1)  # the simulation runtime registers its nodes while the ServerApp starts
    queries = [Message(RecordDict(), node_id, MessageType.QUERY) for node_id in node_ids]
    replies = grid.send_and_receive(queries)
    hospitals = plan.federation.hospitals
    return {r.metadata.src_node_id: hospitals[int(r.content["site"]["partition-id"])] for r in replies}


def run_ray(plan: Plan) -> Outcome:
    """The same ClientApp on Flower's own simulation runtime (``run_simulation`` over Ray)."""
    from flwr.simulation import run_simulation

    app, loop = _client_app_and_loop(plan)
    outcome: list[Outcome] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context) -> None:
        hospital_of = _discover_hospitals(grid, plan)
        outcome.append(loop(grid, plan, hospital_of=hospital_of.__getitem__))

    with flower_log_level(logging.WARNING):  # a progress bar replaces per-round INFO logs
        run_simulation(
            server_app=server,
            client_app=app,
            num_supernodes=plan.federation.n_hospitals,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": os.cpu_count(), "include_dashboard": False},
            },
        )
    if not outcome:
        raise RuntimeError("Flower's simulation runtime ended without a result; its log above says why")
    return outcome[0]


def check(plan: Plan, engine: str) -> None:
    """Refuse, before anything runs, a sealed plan the engine cannot run as specified (it would hang or idle)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: unknown {engine!r}; allowed: {list(ENGINES)}")
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


def run(plan: Plan, engine: str) -> Outcome:
    """Run ``plan`` on the named engine (sealing it first: its strategy and mods are composed by stage)."""
    plan.seal()
    check(plan, engine)  # here, not in a ServerApp, where Flower would swallow the error
    return {"inprocess": run_inprocess, "sequential": lambda p: run_inprocess(p, cohort=False),
            "ray": run_ray}[engine](plan)


__all__ = ["ENGINES", "STAGES", "Eligibility", "Exchange", "InProcessGrid", "ObservingGrid", "Outcome", "Plan",
           "PrivacyLedger", "ReplyScreen", "RoundObserver", "RunState", "SecAggSettings", "StrategyWrapper", "run"]
