"""Secure aggregation: a Plan run through Flower's SecAgg+ workflow on the same Grid.

Flower's SecAgg+ (``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` on
each hospital) speaks the legacy fit / FitRes message format, so this server
loop runs Flower's legacy ``DefaultWorkflow`` with a legacy
``flwr.server.strategy.FedAvg`` whose fit round is the SecAgg+ workflow. Each
round is four round trips on the Grid (setup, share keys, collect masked
vectors, unmask); observers see all four, and the only model update they see
is masked. The server learns only the weighted sum of the quantized updates.

Evaluation, eligibility, screens, observers and the participation log are the
same as ``serve``'s (``fedsim.engine.apps``). Every engine uses this loop; on
Flower's runtimes the hospitals' stochastic rounding runs in processes that
the run's seed does not reach, so runs agree up to quantization error.
"""

import logging
import threading
from collections.abc import Callable

import numpy as np
from flwr.app import Context, RecordDict
from flwr.client.mod import fixedclipping_mod as legacy_fixedclipping_mod
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.mod import fixedclipping_mod
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import ServerConfig
from flwr.server.compat import LegacyContext
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping as LegacyClientSideFixedClipping
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.supercore.run import RunNotRunningException

from fedsim.engine.apps import GlobalEvaluation, Outcome, run_rounds
from fedsim.engine.observers import ObservingGrid
from fedsim.engine.plan import Plan
from fedsim.engine.replies import ReplyCheck
from fedsim.engine.wrapper import StrategyWrapper, unrecorded
from fedsim.recipe import ROUND


class InputCheck:
    """The SecAgg+ encoding's own input domain, enforced where the plaintext update is encoded.

    Flower's ``secaggplus_mod`` quantizes whatever the hospital's inner mods
    return: a NaN, an array of another shape or a weight outside
    (0, max_weight] would silently corrupt the masked sum (no server can see
    it). This mod sits just inside ``secaggplus_mod``: an input the encoding
    cannot represent makes the hospital drop out of the round, with the
    reason in the participation log. ``max_weight`` bounds the example count
    a hospital may claim; under central DP every hospital then weighs 1
    (``uniform``). A real deployment needs input-validating secure
    aggregation (range proofs) to enforce this against a hospital that
    rewrites its own client.
    """

    def __init__(self, max_weight: float, uniform: bool):
        self.max_weight, self.uniform = max_weight, uniform

    def __call__(self, message, context, call_next):
        reply = call_next(message, context)
        if message.metadata.message_type != "train" or not reply.has_content():
            return reply
        problem = self.problem(message, reply)
        if problem:
            raise ValueError(f"SecAgg+ input check: {problem}")
        if self.uniform:
            reply.content.metric_records["fitres.num_examples"]["num_examples"] = 1
        return reply

    def problem(self, message, reply) -> str | None:
        """Why the plaintext reply cannot be encoded, or None."""
        try:
            fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
            arrays = parameters_to_ndarrays(fitres.parameters)
        except Exception as error:  # noqa: BLE001  (whatever a hostile mod left behind)
            return f"the reply is not a readable FitRes ({type(error).__name__})"
        expected = [a.shape for a in parameters_to_ndarrays(
            compat.recorddict_to_fitins(message.content, keep_input=True).parameters)]
        if [tuple(a.shape) for a in arrays] != expected:
            return f"array shapes {[tuple(a.shape) for a in arrays][:4]} are not the model's {expected[:4]}"
        if not all(np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) for a in arrays):
            return "arrays are not all finite floating-point numbers"
        weight = fitres.num_examples
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) \
                or not 0 < weight <= self.max_weight:
            return f"num-examples {weight!r} is outside (0, max_weight {self.max_weight:g}]"
        return None


def client_mods(plan: Plan) -> list[Callable]:
    """The ClientApp mods of a SecAgg+ run: ``secaggplus_mod`` (the ``protocol`` stage) outermost.

    Just inside it, the encoding's ``InputCheck``. Every other mod (clipping,
    local noise, an adversary, a simulated dropout) runs inside those: only
    in the collect-masked-vectors stage, on the plaintext fit message and
    reply, before the reply is masked. A mod that raises there is a hospital
    dropping out after sharing its keys.
    """
    # Hospitals clip for client-side central DP inside the protocol, in the legacy format it speaks.
    swap = {fixedclipping_mod: legacy_fixedclipping_mod}
    mods = [swap.get(mod, mod) for mod in plan.client_mods()]
    if mods[:1] != [secaggplus_mod]:
        raise ValueError("privacy: a SecAgg+ run needs secaggplus_mod as its outermost mod (fedsim.privacy.SecAgg)")
    claims = plan.secagg.max_weight or float(plan.federation.n_train.max())
    return [secaggplus_mod, InputCheck(claims, uniform=_client_side_dp(plan) is not None), *mods[1:]]


def max_weight(plan: Plan) -> float:
    """The largest weight a hospital may bring to the masked sum (1 under central DP: uniform weights)."""
    if _client_side_dp(plan) is not None:
        return 1.0
    return plan.secagg.max_weight or float(plan.federation.n_train.max())


class _CalibratedLegacyDP(LegacyClientSideFixedClipping):
    """Flower's legacy client-side DP wrapper, its noise sized each round for the sum SecAgg+ really unmasked.

    A dropped hospital neither voids the round nor thins the noise; each
    released aggregate is reported to ``release`` (the privacy wrapper's ``on_release``: it charges its ledger).
    """

    def __init__(self, strategy, noise_multiplier: float, clipping_norm: float, sampled: int, release):
        super().__init__(strategy, noise_multiplier, clipping_norm, sampled)
        self.release = release
        self.sampled: dict[int, int] = {}

    def configure_fit(self, server_round, parameters, client_manager):
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.sampled[server_round] = len(instructions)
        return instructions

    def aggregate_fit(self, server_round, results, failures):
        sampled = self.sampled.pop(server_round, len(results))
        if not results:
            return None, {}
        self.num_sampled_clients = len(results)
        parameters, metrics = super().aggregate_fit(server_round, results, [])
        if parameters is not None:
            self.release(server_round, sampled)
        return parameters, metrics


class _LoggedAsEvents(logging.Filter):
    """Drops Flower's log lines about dropouts: the participation log records them."""

    MESSAGES = ("Restart from the setup stage", "Insufficient available nodes.",
                "Not enough shares to recover secret in unmask vectors stage")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.MESSAGES


class _LegacyObservingGrid(ObservingGrid):
    """An ObservingGrid for Flower's legacy client manager.

    The legacy workflow refreshes its node list from a background thread
    (every 5 s) as well as before every sampling. Only the server loop's
    thread applies eligibility (and logs exclusions); the background thread
    gets that thread's last answer, and stops once the run is over.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = threading.current_thread()
        self._last: list[int] = []
        self.closed = False

    def get_node_ids(self):
        if self.closed:
            raise RunNotRunningException()  # ends Flower's node-list thread
        if threading.current_thread() is self._owner:
            self._last = list(super().get_node_ids())
        return list(self._last)


def _client_side_dp(plan: Plan) -> DifferentialPrivacyClientSideFixedClipping | None:
    """The client-side fixed-clipping DP wrapper around FedAvg, if the plan's privacy wrapper holds one."""
    strategy = plan.strategy
    if isinstance(strategy, StrategyWrapper):  # the central-DP mechanism's calibrating wrapper
        strategy = strategy.strategy
    return strategy if isinstance(strategy, DifferentialPrivacyClientSideFixedClipping) else None


def check_plan(plan: Plan) -> tuple[float, int, int]:
    """The legacy FedAvg's sampling (fraction, min fit, min available), after checking the plan fits SecAgg+."""
    settings, strategy = plan.secagg, unrecorded(plan.strategy)
    if (dp := _client_side_dp(plan)) is not None:  # distributed DP: hospitals clip, the server noises the sum
        strategy = unrecorded(dp.strategy)
    if type(strategy) is not FedAvg:
        what = (f"strategy {type(plan.base_strategy).__name__}" if strategy is plan.base_strategy else
                f"{type(strategy).__name__} (a server-side wrapper: it would need the individual updates the "
                f"server never sees)")
        raise ValueError(f"privacy: SecAgg aggregates a weighted average (FedAvg) of masked updates; {what} "
                         f"is not supported with it")
    fraction = float(strategy.fraction_train)
    min_fit = max(2, int(strategy.min_train_nodes))
    min_available = max(min_fit, int(strategy.min_available_nodes))
    n = plan.federation.n_hospitals
    sampled = max(int(n * fraction), min_fit)
    if sampled > n:
        raise ValueError(f"privacy: SecAgg needs at least {sampled} hospitals per round, the federation has {n}")
    if isinstance(settings.num_shares, int) and settings.num_shares > sampled:
        raise ValueError(f"num_shares: {settings.num_shares} is more than the {sampled} hospitals sampled "
                         f"each round")
    if sampled * settings.quantization_range > settings.modulus_range:
        raise ValueError(f"quantization_range: {sampled} hospitals x {settings.quantization_range} levels exceed "
                         f"modulus_range {settings.modulus_range}; the masked sum would wrap around")
    return fraction, min_fit, min_available


def serve_secagg(grid: Grid, plan: Plan, hospital_of: Callable[[int], str], tests=None) -> Outcome:
    """``serve`` for a Plan with ``secagg`` set: FedAvg whose every fit round is SecAgg+."""
    settings = plan.secagg
    fraction, min_fit, min_available = check_plan(plan)
    observing = _LegacyObservingGrid(grid, hospital_of, plan.observers,
                                     [ReplyCheck(settings.modulus_range), *plan.screens], plan.eligibility,
                                     min_nodes=min_available, state=plan.state, cohort_checks=plan.cohort_checks,
                                     decisions=plan.decisions)
    secagg = SecAggPlusWorkflow(
        settings.num_shares, settings.reconstruction_threshold, max_weight=max_weight(plan),
        clipping_range=float(settings.clipping_range), quantization_range=settings.quantization_range,
        modulus_range=settings.modulus_range, timeout=settings.timeout,
    )

    def fit_round(grid: Grid, context: LegacyContext) -> None:
        """One SecAgg+ round; a round the protocol gives up on is logged (the model stays as it was)."""
        before = context.state.array_records[MAIN_PARAMS_RECORD]
        secagg(grid, context)
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        if context.state.array_records[MAIN_PARAMS_RECORD] is before:
            observing.record(server_round, "*", "aborted", "SecAgg+: too few hospitals stayed to unmask the sum "
                             f"(reconstruction threshold {secagg.reconstruction_threshold}); model unchanged",
                             "SecAggPlusWorkflow")
            return
        for hospital in observing.delivered.get(server_round, ()):  # their masked vectors are in the sum
            observing.record(server_round, hospital, "aggregated", "in the unmasked sum", "SecAgg+ (FedAvg)")

    def start(observing: ObservingGrid, evaluation: GlobalEvaluation) -> None:
        def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> tuple[float, dict] | None:
            if server_round:  # the legacy workflow evaluates after each round's aggregation
                observing.close_round(server_round)
            metrics = evaluation(server_round, weights)
            return None if metrics is None else (metrics["loss"], metrics)

        train_config = dict(plan.train_config())
        strategy = LegacyFedAvg(
            fraction_fit=fraction, fraction_evaluate=0.0, min_fit_clients=min_fit,
            min_evaluate_clients=min_fit, min_available_clients=min_available,
            evaluate_fn=evaluate,
            on_fit_config_fn=lambda server_round: {**train_config, ROUND: server_round},
            initial_parameters=ndarrays_to_parameters(evaluation.trainer.initial_weights(plan.seed)),
            fit_metrics_aggregation_fn=lambda metrics: {},
        )
        if (dp := _client_side_dp(plan)) is not None:  # the privacy wrapper charges what the workflow releases
            strategy = _CalibratedLegacyDP(strategy, dp.noise_multiplier, dp.clipping_norm, dp.num_sampled_clients,
                                           plan.strategy.on_release)
        context = LegacyContext(
            Context(run_id=observing.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            config=ServerConfig(num_rounds=plan.rounds), strategy=strategy,
        )
        DefaultWorkflow(fit_workflow=fit_round)(observing, context)

    quiet = _LoggedAsEvents()
    logging.getLogger("flwr").addFilter(quiet)
    try:
        return run_rounds(observing, plan, start, tests)
    finally:
        observing.closed = True
        logging.getLogger("flwr").removeFilter(quiet)
