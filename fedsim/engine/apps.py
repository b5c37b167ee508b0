"""The ClientApp every hospital runs and the server loop both engines share."""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from flwr.serverapp import Grid
from tqdm.auto import tqdm

from fedsim.engine.cohort import CohortRound, hospital_rows
from fedsim.engine.messages import decoded, encoded
from fedsim.engine.observers import ObservingGrid, TooFewEligible
from fedsim.engine.plan import Plan
from fedsim.engine.replies import ReplyCheck
from fedsim.federation import Federation
from fedsim.metrics import binary_metrics, tidy_metrics
from fedsim.models import ModelFn
from fedsim.training import local_rng, local_schedule, trainer_for


@dataclass(frozen=True)
class Outcome:
    """What a run leaves: final global weights, tidy evaluation rows, participation events."""

    weights: list[np.ndarray]
    rows: list[dict]
    events: list[dict]


def make_client_app(fed: Federation, model_fn: ModelFn, mods: Sequence[Callable] = (),
                    legacy_fit: bool = False, local_data: Sequence[Callable] = (),
                    steps_run: dict[tuple[int, int], int] | None = None,
                    cohort: CohortRound | None = None) -> ClientApp:
    """A ClientApp that trains the shared model on the calling node's hospital.

    ``legacy_fit``: train messages and replies use Flower's legacy FitIns /
    FitRes records (what the SecAgg+ workflow and ``secaggplus_mod`` speak).
    ``steps_run``: where to record the local steps each (round, hospital) really
    ran (the privacy ledger reads it; in this process only, not the reply's claim).
    ``cohort``: the round's cohort training (the cohort engine); a hospital takes
    its result when it trains on what the cohort trained on, else trains alone.
    """
    app = ClientApp(mods=list(mods))

    def fit(hospital: int, record: ArrayRecord, config) -> tuple[list[np.ndarray], dict]:
        """Local training of one hospital: new weights and the reply's metrics."""
        prepared = cohort.take(hospital, record, config) if cohort is not None else None
        if prepared is None:
            x, y = hospital_rows(fed, local_data, hospital)
            weights, loss, steps = trainer_for(model_fn, fed.n_features).fit(
                [decoded(a) for a in record.values()], x, y,
                learning_rate=float(config["lr"]),
                rng=local_rng(config, hospital),
                proximal_mu=float(config.get("proximal-mu", 0.0)),
                **local_schedule(config),
                dp=(float(config["dpsgd-clip"]), float(config["dpsgd-noise"])) if "dpsgd-clip" in config else None,
            )
            prepared = weights, loss, steps, len(y)
        weights, loss, steps, examples = prepared
        if steps_run is not None:
            key = (int(config["server-round"]), hospital)
            steps_run[key] = max(steps_run.get(key, 0), steps)
        return weights, {"num-examples": examples, "train_loss": loss, "local_steps": steps}

    @app.train()
    def train(message: Message, context: Context) -> Message:
        hospital = int(context.node_config["partition-id"])
        if legacy_fit:
            weights, metrics = fit(hospital, message.content["fitins.parameters"], message.content["fitins.config"])
            fitres = FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(weights),
                            metrics.pop("num-examples"), metrics)
            return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=message)
        weights, metrics = fit(hospital, message.content["arrays"], message.content["config"])
        return Message(RecordDict({"arrays": encoded(weights), "metrics": MetricRecord(metrics)}),
                       reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        x, y = fed.test_rows(int(context.node_config["partition-id"]))
        p = trainer_for(model_fn, fed.n_features).predict(message.content["arrays"].to_numpy_ndarrays(), x)
        scores = {k: v for k, v in binary_metrics(y, p).items() if np.isfinite(v)}
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(y), **scores})}), reply_to=message)

    @app.query()
    def identify(message: Message, context: Context) -> Message:
        """Which hospital this node serves (the server's node-to-hospital map)."""
        partition = int(context.node_config["partition-id"])
        return Message(RecordDict({"site": ConfigRecord({"partition-id": partition})}), reply_to=message)

    return app


class GlobalEvaluation:
    """The server-side evaluation both server loops share: the global model on every test split.

    Call it with (round, weights) after each aggregation (round 0: the initial
    model); it keeps the latest weights, the tidy rows and the progress bar, and
    returns the global metrics, or None in rounds skipped by ``evaluate_every``.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.trainer = trainer_for(plan.model_fn, plan.federation.n_features)
        self.rows: list[dict] = []
        self.latest: list[np.ndarray] | None = None
        self.progress = tqdm(total=plan.rounds, desc=plan.label, unit="round", leave=False)

    def __call__(self, server_round: int, weights: list[np.ndarray]) -> dict[str, float] | None:
        plan, fed = self.plan, self.plan.federation
        self.latest = weights
        if server_round % plan.evaluate_every and server_round != plan.rounds:
            self.progress.update()
            return None
        p = self.trainer.predict(weights, fed.x_test)
        new = tidy_metrics(server_round, fed.y_test, p, fed.test_offsets, list(fed.hospitals))
        self.rows.extend(new)
        if server_round:
            self.progress.set_postfix(auroc=f"{new[0]['value']:.3f}")
            self.progress.update()
        return {r["metric"]: r["value"] for r in new if r["scope"] == "global"}


def run_rounds(
    observing: ObservingGrid,
    plan: Plan,
    start: Callable[[ObservingGrid, GlobalEvaluation], None],
) -> Outcome:
    """Run a server loop (``start``) on ``observing``; stop cleanly when too few hospitals are eligible."""
    evaluation = GlobalEvaluation(plan)
    # Flower samples hospitals with `random` and its DP wrappers and mods draw
    # noise from numpy's global generator (so does SecAgg+'s stochastic
    # rounding): seed both for reproducible runs.
    random.seed(plan.seed)
    np.random.seed(plan.seed)
    try:
        start(observing, evaluation)
    except TooFewEligible as stop:
        state = observing.state
        observing.events.append({"round": state.upcoming, "hospital": "*", "event": "stopped", "reason": str(stop)})
        rows = evaluation.rows
        if not rows or rows[-1]["round"] != state.completed_rounds:
            evaluation(state.completed_rounds, evaluation.latest)
    finally:
        evaluation.progress.close()
    return Outcome(weights=evaluation.latest, rows=evaluation.rows, events=observing.events)


def serve(grid: Grid, plan: Plan, hospital_of: Callable[[int], str]) -> Outcome:
    """Run the strategy for ``plan.rounds`` on ``grid``, evaluating the global model each round."""
    strategy, base = plan.strategy, plan.base_strategy
    observing = ObservingGrid(
        grid, hospital_of, plan.observers, [ReplyCheck(), *plan.screens], plan.eligibility,
        min_nodes=max(getattr(base, "min_available_nodes", 1), getattr(base, "min_train_nodes", 1)),
        state=plan.state, cohort_checks=plan.cohort_checks,
    )

    def start(observing: ObservingGrid, evaluation: GlobalEvaluation) -> None:
        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            metrics = evaluation(server_round, arrays.to_numpy_ndarrays())
            return None if metrics is None else MetricRecord(metrics)

        strategy.start(
            grid=observing,
            initial_arrays=ArrayRecord(evaluation.trainer.initial_weights(plan.seed)),
            num_rounds=plan.rounds,
            train_config=plan.train_config(),
            evaluate_fn=evaluate,
        )

    return run_rounds(observing, plan, start)
