"""The ClientApp every hospital runs and the server loop both engines share."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict
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
from fedsim.randomness import fresh_secret, global_generators
from fedsim.recipe import TrainingRecipe, round_and_seed
from fedsim.training import trainer_for


@dataclass(frozen=True)
class HeldOutRisks:
    """A model's risks ``p`` for the pooled test rows, their labels ``y``; hospital ``i``'s at ``offsets[i]:[i+1]``."""

    y: np.ndarray
    p: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """What a run leaves: final global weights and tidy evaluation rows (its decisions are in ``plan.decisions``)."""

    weights: list[np.ndarray]
    rows: list[dict]
    test: HeldOutRisks  # the final model's risks on the test splits it was evaluated on


def make_client_app(fed: Federation, model_fn: ModelFn, mods: Sequence[Callable] = (),
                    legacy_fit: bool = False, local_data: Sequence[Callable] = (),
                    steps_run: dict[tuple[int, int], int] | None = None,
                    cohort: CohortRound | None = None, secret: int | None = None) -> ClientApp:
    """A ClientApp that trains the shared model on the calling node's hospital.

    ``legacy_fit``: train messages and replies use Flower's legacy FitIns /
    FitRes records (what the SecAgg+ workflow and ``secaggplus_mod`` speak).
    ``steps_run``: where to record the local steps each (round, hospital) really
    ran (``Plan.steps_run``: what the simulator saw, not the reply's claim).
    ``cohort``: the round's cohort training (the cohort engine); a hospital takes
    its result when it trains on what the cohort trained on, else trains alone.
    ``secret``: what the hospitals' private randomness (DP-SGD's sample and
    noise) is drawn from (``fedsim.randomness``; None: a fresh one).
    """
    app = ClientApp(mods=list(mods))
    secret = fresh_secret() if secret is None else secret

    def fit(hospital: int, record: ArrayRecord, config) -> tuple[list[np.ndarray], dict]:
        """Local training of one hospital: new weights and the reply's metrics."""
        prepared = cohort.take(hospital, record, config) if cohort is not None else None
        if prepared is None:
            x, y = hospital_rows(fed, local_data, hospital)
            recipe = TrainingRecipe.decode(config)
            weights, loss, steps = recipe.train(trainer_for(model_fn, fed.n_features),
                                              [decoded(a) for a in record.values()], x, y,
                                              recipe.rng(*round_and_seed(config), hospital, secret))
            prepared = weights, loss, steps, len(y)
        weights, loss, steps, examples = prepared
        if steps_run is not None:
            key = (round_and_seed(config)[0], hospital)
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
        """The global model on this hospital's test split: its metrics (what Flower's strategies aggregate) and
        each test row's risk with its label (what fedsim's pooled evaluation needs: see HospitalTests)."""
        x, y = fed.test_rows(int(context.node_config["partition-id"]))
        p = trainer_for(model_fn, fed.n_features).predict(message.content["arrays"].to_numpy_ndarrays(), x)
        scores = {k: v for k, v in binary_metrics(y, p).items() if np.isfinite(v)}
        return Message(RecordDict({"test": ArrayRecord({"risks": Array(np.asarray(p, np.float32)),
                                                        "labels": Array(np.asarray(y, np.float32))}),
                                   "metrics": MetricRecord({"num-examples": len(y), **scores})}), reply_to=message)

    return app


class PooledTest:
    """The test splits the simulator holds, every hospital's, predicted at once."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __call__(self, server_round: int, trainer, weights: list[np.ndarray]) -> HeldOutRisks:
        fed = self.plan.federation  # read each time: a policy may have left test splits out
        return HeldOutRisks(fed.y_test, trainer.predict(weights, fed.x_test), fed.test_offsets)


class HospitalTests:
    """Each hospital evaluates the global model on its own test split (a deployment's server holds none).

    Pooled AUROC ranks every test patient's risk against every other
    hospital's, so it cannot be combined from per-hospital numbers: each
    hospital replies with its test rows' risks and labels (no features, no
    identifiers), and the server pools them. A hospital whose reply is missing
    or malformed counts with no test rows that round, and the reason is logged.
    """

    def __init__(self, plan: Plan, grid: Grid, nodes: dict[str, int], record: Callable[..., None]):
        self.plan, self.grid, self.nodes, self.record = plan, grid, nodes, record

    def __call__(self, server_round: int, trainer, weights: list[np.ndarray]) -> HeldOutRisks:
        fed = self.plan.federation
        asked = {self.nodes[h]: i for i, h in enumerate(fed.hospitals) if fed.n_test[i] > 0}
        content = RecordDict({"arrays": ArrayRecord(weights)})
        replies = self.grid.send_and_receive(
            [Message(content, node, MessageType.EVALUATE) for node in asked], timeout=600)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        why = dict.fromkeys(asked.values(), "no evaluation reply")
        for reply in replies:
            i = asked.get(reply.metadata.src_node_id)
            if i is not None:
                try:
                    found[i] = evaluation_reply(reply, int(fed.n_test[i]))
                except ValueError as error:
                    why[i] = str(error)
        for i in sorted(set(why) - set(found)):
            self.record(server_round, fed.hospitals[i], "not evaluated", why[i], "HospitalTests")
        parts = [found.get(i, (np.zeros(0, np.float32), np.zeros(0, np.float32))) for i in range(fed.n_hospitals)]
        sizes = [len(y) for y, _ in parts]
        return HeldOutRisks(np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]),
                               np.concatenate([[0], np.cumsum(sizes)]))


def evaluation_reply(reply: Message, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """A hospital's evaluation reply as (labels, risks), checked: ``n_test`` finite risks in [0, 1], 0/1 labels."""
    if reply.has_error():
        raise ValueError(f"evaluation failed: {reply.error.reason}")
    try:
        test = reply.content["test"]
        y, p = test["labels"].numpy(), test["risks"].numpy()
    except Exception as error:  # noqa: BLE001  (whatever a hostile reply holds)
        raise ValueError(f"evaluation reply unreadable ({type(error).__name__})") from None
    if y.shape != (n_test,) or p.shape != (n_test,):
        raise ValueError(f"evaluation reply holds {p.shape} risks and {y.shape} labels, expected ({n_test},) each")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all() and np.isin(y, (0, 1)).all()):
        raise ValueError("evaluation reply holds risks outside [0, 1] or labels other than 0/1")
    return y.astype(np.float32), p.astype(np.float32)


class GlobalEvaluation:
    """The server-side evaluation both server loops share: the global model on every test split.

    Call it with (round, weights) after each aggregation (round 0: the initial
    model); it keeps the latest weights, the final test predictions, the tidy
    rows and the progress bar, and returns the global metrics, or None in
    rounds skipped by ``evaluate_every``. ``test``: where the test splits are
    (``PooledTest`` in a simulation, ``HospitalTests`` on a Flower runtime).
    """

    def __init__(self, plan: Plan, test=None):
        self.plan = plan
        self.test = test or PooledTest(plan)
        self.trainer = trainer_for(plan.model_fn, plan.federation.n_features)
        self.rows: list[dict] = []
        self.latest: list[np.ndarray] | None = None
        self.predictions: HeldOutRisks | None = None
        self.progress = tqdm(total=plan.rounds, desc=plan.label, unit="round", leave=False)

    def __call__(self, server_round: int, weights: list[np.ndarray]) -> dict[str, float] | None:
        plan, fed = self.plan, self.plan.federation
        self.latest = weights
        if server_round % plan.evaluate_every and server_round != plan.rounds:
            self.progress.update()
            return None
        test = self.predictions = self.test(server_round, self.trainer, weights)
        new = tidy_metrics(server_round, test.y, test.p, test.offsets, list(fed.hospitals))
        self.rows.extend(new)
        if server_round:
            self.progress.set_postfix(auroc=f"{new[0]['value']:.3f}")
            self.progress.update()
        return {r["metric"]: r["value"] for r in new if r["scope"] == "global"}


def run_rounds(
    observing: ObservingGrid,
    plan: Plan,
    start: Callable[[ObservingGrid, GlobalEvaluation], None],
    tests: Callable[[list[dict]], object] | None = None,
) -> Outcome:
    """Run a server loop (``start``) on ``observing``; stop cleanly when too few hospitals are eligible.

    ``tests(record)``: where the test splits are (default: held here, ``PooledTest``); ``record`` is the
    grid's, for the hospitals that could not evaluate.
    """
    evaluation = GlobalEvaluation(plan, tests(observing.record) if tests is not None else None)
    # Flower samples hospitals with `random` and its DP wrappers and mods draw noise from numpy's global
    # generator (so does SecAgg+'s stochastic rounding): the run lends them the public seed's state, or its
    # secret's under DP, and gives the caller's back when it ends.
    try:
        with global_generators(plan.server_entropy()):
            start(observing, evaluation)
    except TooFewEligible as stop:
        state = observing.state
        observing.record(state.upcoming, "*", "stopped", str(stop), "engine")
        rows = evaluation.rows
        if not rows or rows[-1]["round"] != state.completed_rounds:
            evaluation(state.completed_rounds, evaluation.latest)
    finally:
        evaluation.progress.close()
    return Outcome(weights=evaluation.latest, rows=evaluation.rows, test=evaluation.predictions)


def serve(grid: Grid, plan: Plan, hospital_of: Callable[[int], str], tests=None) -> Outcome:
    """Run the strategy for ``plan.rounds`` on ``grid``, evaluating the global model each round.

    ``tests``: see ``run_rounds``.
    """
    strategy, base = plan.strategy, plan.base_strategy
    observing = ObservingGrid(
        grid, hospital_of, plan.observers, [ReplyCheck(), *plan.screens], plan.eligibility,
        min_nodes=max(getattr(base, "min_available_nodes", 1), getattr(base, "min_train_nodes", 1)),
        state=plan.state, cohort_checks=plan.cohort_checks, decisions=plan.decisions,
    )

    def start(observing: ObservingGrid, evaluation: GlobalEvaluation) -> None:
        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            if server_round:  # Flower evaluates after each round's aggregation
                observing.close_round(server_round)
            metrics = evaluation(server_round, arrays.to_numpy_ndarrays())
            return None if metrics is None else MetricRecord(metrics)

        strategy.start(
            grid=observing,
            initial_arrays=ArrayRecord(evaluation.trainer.initial_weights(plan.seed)),
            num_rounds=plan.rounds,
            train_config=plan.train_config(),
            evaluate_fn=evaluate,
        )

    return run_rounds(observing, plan, start, tests)
