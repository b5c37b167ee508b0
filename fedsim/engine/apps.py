"""The ClientApp every hospital runs and the server loop both engines share."""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from tqdm.auto import tqdm

from fedsim.engine.observers import Eligibility, ObservingGrid, ReplyScreen, RoundObserver, TooFewEligible
from fedsim.federation import Federation
from fedsim.metrics import binary_metrics, tidy_metrics
from fedsim.models import ModelFn
from fedsim.training import trainer_for


@dataclass(eq=False)
class Plan:
    """Everything an engine needs to run one federated experiment.

    Components (privacy techniques, adversaries, defenses) extend a Plan
    before it runs: they wrap ``strategy``, append ClientApp mods, observers,
    reply screens and eligibility checks, add training settings sent to every
    hospital, and register reports: functions that return a tidy table for
    the Result once the run is over.
    """

    federation: Federation
    model_fn: ModelFn
    strategy: Strategy
    rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    local_steps: int | None
    seed: int
    evaluate_every: int = 1
    label: str = "fedsim"
    observers: list[RoundObserver] = field(default_factory=list)
    client_mods: list[Callable] = field(default_factory=list)
    screens: list[ReplyScreen] = field(default_factory=list)
    eligibility: list[Eligibility] = field(default_factory=list)
    train_settings: dict = field(default_factory=dict)
    reports: dict[str, Callable[[], pd.DataFrame]] = field(default_factory=dict)

    def train_config(self) -> ConfigRecord:
        """The training settings every hospital receives each round."""
        config = {"lr": self.learning_rate, "local-epochs": self.local_epochs,
                  "batch-size": self.batch_size, "seed": self.seed, **self.train_settings}
        if self.local_steps is not None:
            config["local-steps"] = self.local_steps
        return ConfigRecord(config)


@dataclass(frozen=True)
class Outcome:
    """What a run leaves: final global weights, tidy evaluation rows, participation events."""

    weights: list[np.ndarray]
    rows: list[dict]
    events: list[dict]


def make_client_app(fed: Federation, model_fn: ModelFn, mods: Sequence[Callable] = ()) -> ClientApp:
    """A ClientApp that trains the shared model on the calling node's hospital."""
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(message: Message, context: Context) -> Message:
        hospital = int(context.node_config["partition-id"])
        config = message.content["config"]
        x, y = fed.train_rows(hospital)
        rng = np.random.default_rng([int(config["seed"]), int(config["server-round"]), hospital])
        weights, loss, steps = trainer_for(model_fn, fed.n_features).fit(
            message.content["arrays"].to_numpy_ndarrays(), x, y,
            epochs=int(config["local-epochs"]),
            batch_size=int(config["batch-size"]),
            learning_rate=float(config["lr"]),
            rng=rng,
            proximal_mu=float(config.get("proximal-mu", 0.0)),
            max_steps=int(config["local-steps"]) if "local-steps" in config else None,
            dp=(float(config["dpsgd-clip"]), float(config["dpsgd-noise"])) if "dpsgd-clip" in config else None,
        )
        metrics = MetricRecord({"num-examples": len(y), "train_loss": loss, "local_steps": steps})
        return Message(RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics}), reply_to=message)

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


def serve(grid: Grid, plan: Plan, hospital_of: Callable[[int], str]) -> Outcome:
    """Run the strategy for ``plan.rounds`` on ``grid``, evaluating the global model each round."""
    fed = plan.federation
    trainer = trainer_for(plan.model_fn, fed.n_features)
    rows: list[dict] = []
    latest: list[list[np.ndarray]] = []
    progress = tqdm(total=plan.rounds, desc=plan.label, unit="round", leave=False)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        weights = arrays.to_numpy_ndarrays()
        latest[:] = [weights]
        if server_round % plan.evaluate_every and server_round != plan.rounds:
            progress.update()
            return None
        p = trainer.predict(weights, fed.x_test)
        new = tidy_metrics(server_round, fed.y_test, p, fed.test_offsets, list(fed.hospitals))
        rows.extend(new)
        if server_round:
            progress.set_postfix(auroc=f"{new[0]['value']:.3f}")
            progress.update()
        return MetricRecord({r["metric"]: r["value"] for r in new if r["scope"] == "global"})

    # Flower samples hospitals with `random` and its DP wrappers and mods draw
    # noise from numpy's global generator: seed both for reproducible runs.
    random.seed(plan.seed)
    np.random.seed(plan.seed)
    strategy = plan.strategy
    observing = ObservingGrid(
        grid, hospital_of, plan.observers, plan.screens, plan.eligibility,
        min_nodes=max(getattr(strategy, "min_available_nodes", 1), getattr(strategy, "min_train_nodes", 1)),
    )
    try:
        strategy.start(
            grid=observing,
            initial_arrays=ArrayRecord(trainer.initial_weights(plan.seed)),
            num_rounds=plan.rounds,
            train_config=plan.train_config(),
            evaluate_fn=evaluate,
        )
    except TooFewEligible as stop:
        observing.events.append({"round": observing.completed_rounds + 1, "hospital": "*",
                                 "event": "stopped", "reason": str(stop)})
        if not rows or rows[-1]["round"] != observing.completed_rounds:
            evaluate(observing.completed_rounds, ArrayRecord(latest[0]))
    finally:
        progress.close()
    return Outcome(weights=latest[0], rows=rows, events=observing.events)
