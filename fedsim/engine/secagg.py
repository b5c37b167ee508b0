"""Secure aggregation: a Plan run through Flower's SecAgg+ workflow on the same Grid.

Flower's SecAgg+ (``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` on
each hospital) speaks the legacy fit / FitRes message format, so this server
loop runs Flower's legacy ``DefaultWorkflow`` with a legacy
``flwr.server.strategy.FedAvg`` whose fit round is the SecAgg+ workflow. Each
round is four round trips on the Grid (setup, share keys, collect masked
vectors, unmask); observers see all four, and the only model update they see
is masked. The server learns only the weighted sum of the quantized updates.

Evaluation, eligibility, screens, observers and the participation log are the
same as ``serve``'s (``fedsim.engine.apps``). Both engines use this loop; on
Ray the hospitals' stochastic rounding runs in worker processes that the
run's seed does not reach, so repeated runs agree up to quantization error.
"""

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flwr.app import Context, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerConfig
from flwr.server.compat import LegacyContext
from flwr.client.mod import fixedclipping_mod as legacy_fixedclipping_mod
from flwr.clientapp.mod import fixedclipping_mod
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping as LegacyClientSideFixedClipping
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.supercore.run import RunNotRunningException

from fedsim.engine.apps import GlobalEvaluation, Outcome, Plan, run_rounds
from fedsim.engine.observers import ObservingGrid


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if not _is_number(shares) or (isinstance(shares, int) and shares < 3) or (
                isinstance(shares, float) and not 0 < shares <= 1):
            raise ValueError(f"num_shares: must be an integer >= 3 or a fraction in (0, 1], got {shares!r}")
        if not _is_number(threshold) or (isinstance(threshold, int) and threshold < 2) or (
                isinstance(threshold, float) and not 0 < threshold <= 1):
            raise ValueError(f"reconstruction_threshold: must be an integer >= 2 or a fraction in (0, 1], "
                             f"got {threshold!r}")
        if isinstance(shares, int) and isinstance(threshold, int) and threshold >= shares:
            raise ValueError(f"reconstruction_threshold: must be below num_shares ({shares}), got {threshold}")
        if not _is_number(self.clipping_range) or not self.clipping_range > 0:
            raise ValueError(f"clipping_range: must be a number > 0, got {self.clipping_range!r}")
        q, m = self.quantization_range, self.modulus_range
        if isinstance(q, bool) or not isinstance(q, int) or q < 2:
            raise ValueError(f"quantization_range: must be an integer >= 2, got {q!r}")
        if isinstance(m, bool) or not isinstance(m, int) or m <= q or m > 2**32 or m & (m - 1):
            raise ValueError(f"modulus_range: must be a power of two above quantization_range ({q}) "
                             f"and at most 2**32, got {m!r}")
        if self.max_weight is not None and not (_is_number(self.max_weight) and self.max_weight > 0):
            raise ValueError(f"max_weight: must be a number > 0 or None, got {self.max_weight!r}")
        if self.timeout is not None and not (_is_number(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout: must be a number of seconds > 0 or None, got {self.timeout!r}")


def client_mods(plan: Plan) -> list[Callable]:
    """The ClientApp mods of a SecAgg+ run: ``secaggplus_mod`` outermost, whatever the install order.

    Every other mod (clipping, local noise, an adversary, a simulated dropout)
    then runs inside the protocol: only in its collect-masked-vectors stage,
    on the plaintext fit message and reply, before the reply is masked. A mod
    that raises there is a hospital dropping out after sharing its keys.
    """
    # Hospitals clip for client-side central DP inside the protocol, in the legacy format it speaks.
    swap = {fixedclipping_mod: legacy_fixedclipping_mod}
    return [secaggplus_mod, *(swap.get(mod, mod) for mod in plan.client_mods if mod is not secaggplus_mod)]


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
    """The client-side fixed-clipping DP wrapper around FedAvg, if that is the plan's strategy."""
    strategy = plan.strategy
    return strategy if isinstance(strategy, DifferentialPrivacyClientSideFixedClipping) else None


def check_plan(plan: Plan) -> tuple[float, int, int]:
    """The legacy FedAvg's sampling (fraction, min fit, min available), after checking the plan fits SecAgg+."""
    settings, strategy = plan.secagg, plan.strategy
    if _client_side_dp(plan) is not None:  # distributed DP: hospitals clip, the server noises the sum
        strategy = strategy.strategy
    if type(strategy) is not FedAvg:
        raise ValueError(f"privacy: SecAgg aggregates a weighted average (FedAvg); strategy "
                         f"{type(strategy).__name__} is not supported with it")
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


def serve_secagg(grid: Grid, plan: Plan, hospital_of: Callable[[int], str]) -> Outcome:
    """``serve`` for a Plan with ``secagg`` set: FedAvg whose every fit round is SecAgg+."""
    settings = plan.secagg
    fraction, min_fit, min_available = check_plan(plan)
    fed = plan.federation
    max_weight = settings.max_weight or float(np.diff(fed.train_offsets).max())
    observing = _LegacyObservingGrid(grid, hospital_of, plan.observers, plan.screens, plan.eligibility,
                                     min_nodes=min_available)
    secagg = SecAggPlusWorkflow(
        settings.num_shares, settings.reconstruction_threshold, max_weight=max_weight,
        clipping_range=float(settings.clipping_range), quantization_range=settings.quantization_range,
        modulus_range=settings.modulus_range, timeout=settings.timeout,
    )

    def fit_round(grid: Grid, context: LegacyContext) -> None:
        """One SecAgg+ round; a round the protocol gives up on is logged (the model stays as it was)."""
        before = context.state.array_records[MAIN_PARAMS_RECORD]
        secagg(grid, context)
        if context.state.array_records[MAIN_PARAMS_RECORD] is before:
            server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
            observing.events.append({
                "round": server_round, "hospital": "*", "event": "aborted",
                "reason": "SecAgg+: too few hospitals stayed to unmask the sum "
                          f"(reconstruction threshold {secagg.reconstruction_threshold}); model unchanged",
            })

    def start(observing: ObservingGrid, evaluation: GlobalEvaluation) -> None:
        def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> tuple[float, dict] | None:
            metrics = evaluation(server_round, weights)
            return None if metrics is None else (metrics["loss"], metrics)

        train_config = dict(plan.train_config())
        strategy = LegacyFedAvg(
            fraction_fit=fraction, fraction_evaluate=0.0, min_fit_clients=min_fit,
            min_evaluate_clients=min_fit, min_available_clients=min_available,
            evaluate_fn=evaluate,
            on_fit_config_fn=lambda server_round: {**train_config, "server-round": server_round},
            initial_parameters=ndarrays_to_parameters(evaluation.trainer.initial_weights(plan.seed)),
            fit_metrics_aggregation_fn=lambda metrics: {},
        )
        if (dp := _client_side_dp(plan)) is not None:
            strategy = LegacyClientSideFixedClipping(strategy, dp.noise_multiplier, dp.clipping_norm,
                                                     dp.num_sampled_clients)
        context = LegacyContext(
            Context(run_id=observing.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            config=ServerConfig(num_rounds=plan.rounds), strategy=strategy,
        )
        DefaultWorkflow(fit_workflow=fit_round)(observing, context)

    quiet = _LoggedAsEvents()
    logging.getLogger("flwr").addFilter(quiet)
    try:
        return run_rounds(observing, plan, start)
    finally:
        observing.closed = True
        logging.getLogger("flwr").removeFilter(quiet)
