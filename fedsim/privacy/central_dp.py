"""Central DP: hospital-level differential privacy of the global model (Flower's DP strategy wrappers).

Flower's wrappers size their noise for the ``num_sampled_clients`` they are
built with, skip a round's aggregation when any reply failed, and average
with the weights hospitals claim. fedsim keeps their clipping and noise but
wraps them in ``CalibratedRelease``, so that what the ledger charges stays
true whatever the hospitals do: each round the noise is sized for the
updates actually aggregated (a failed, dropped or rejected reply never
voids the round nor thins the noise), every aggregated hospital weighs the
same (a claimed example count cannot buy influence), and the ledger is
charged once per aggregate actually released, for the sample Flower really
drew that round (a fixed number of the eligible hospitals, without
replacement: dp-accounting's sampling-without-replacement event under
replace-one-hospital). Flower's own accountant is not used: it accounts
without sampling amplification and refuses any round with fewer replies
than sampled.
"""

from dataclasses import dataclass

import numpy as np
from flwr.app import Message
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy import FedAvg, Strategy

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen, StrategyWrapper
from fedsim.engine.messages import metrics as metric_records
from fedsim.engine.messages import weights_of
from fedsim.privacy.dpsgd import DELTA
from fedsim.privacy.ledger import ACCOUNTANTS, Charge, PrivacyLedger, check_delta, default_delta, ledger_of
from fedsim.validation import Boolean, NoneValue, Options, Positive, Real, param

# Strategies whose aggregate is FedAvg's weighted average, or a server-side optimizer step on it: the
# noise Flower's wrappers add is sized for an average of clipped updates.
AVERAGING = (flwr_strategy.FedAvg, flwr_strategy.FedProx, flwr_strategy.FedAvgM, flwr_strategy.FedAdam,
             flwr_strategy.FedYogi, flwr_strategy.FedAdagrad)


def averages(strategy: Strategy) -> bool:
    """Whether ``strategy`` aggregates by (a post-processing of) FedAvg's average."""
    return type(strategy) in AVERAGING or (isinstance(strategy, FedAvg)
                                           and type(strategy).aggregate_train is FedAvg.aggregate_train)


class UnchangedModelScreen(ReplyScreen):
    """Rejects a reply that returns the global model unchanged (a zero update), recording why.

    Flower's server-side clipping divides by the update's norm, so one zero
    update would stop the run; a zero update carries nothing to aggregate.
    """

    def screen(self, exchange: Exchange) -> dict[str, str]:
        if exchange.message_type != "train":
            return {}
        unchanged = {}
        for hospital, content in exchange.updates().items():
            sent = exchange.sent.get(hospital)
            if sent is not None and all(np.array_equal(a, b) for a, b in zip(weights_of(content),
                                                                            weights_of(sent.content))):
                unchanged[hospital] = "zero update (model unchanged): server-side clipping cannot scale it"
        return unchanged


class CalibratedRelease(StrategyWrapper):
    """One of Flower's central-DP wrappers, told each round what it really aggregates (module docstring)."""

    def __init__(self, dp_wrapper: Strategy, ledger: PrivacyLedger, technique: str, weighted_by_key: str):
        super().__init__(dp_wrapper)
        self.ledger, self.technique, self.weighted_by_key = ledger, technique, weighted_by_key
        self.sampled: dict[int, int] = {}

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sampled[server_round] = len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies):
        # Failures are in the participation log already; they carry nothing to aggregate.
        replies: list[Message] = [r for r in replies if r.has_content()]
        sampled = self.sampled.pop(server_round, len(replies))
        if not replies:
            return None, None  # nothing released, nothing charged
        for reply in replies:  # uniform weights: each aggregated hospital counts once
            for record in metric_records(reply.content).values():
                record[self.weighted_by_key] = 1
        self.strategy.num_sampled_clients = len(replies)  # noise sized for the updates really aggregated
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is not None:
            self.on_release(server_round, sampled)
        return arrays, metrics

    def on_release(self, server_round: int, sampled: int) -> None:
        """Charge the ledger for the aggregate released this round."""
        self.ledger.release(self.technique, server_round, sampled)


@dataclass(frozen=True)
class CentralDP(Component):
    """Hospital-level DP of the global model: clipped updates, Gaussian noise on the aggregate.

    Flower's ``DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping``
    wrap the experiment's strategy (which must average: FedAvg, FedProx,
    FedAvgM or a FedOpt), inside ``CalibratedRelease``. ``side="server"``
    trusts the server to clip; ``side="client"`` clips at each hospital
    (Flower's clipping mods) and is the pattern to combine with SecAgg. Unit
    of privacy: a hospital's whole contribution. ``clipping_norm`` is the
    initial norm when ``adaptive``; the noise on the count of clipped updates,
    ``clipped_count_stddev``, defaults to max(sampled / 20, noise_multiplier):
    Flower's own default (sampled / 20) cannot reach the requested noise with
    few hospitals. ``delta`` defaults to ``default_delta(hospitals)``; one at
    or above 1 / hospitals is refused unless ``allow_large_delta``.
    """

    family = "privacy"
    name = "central_dp"
    title = "central DP"
    threats = ("update leakage", "membership inference")
    unit = "hospital"
    spends_epsilon = True

    noise_multiplier: float = param(1.0, Real(min=0))
    clipping_norm: float = param(1.0, Positive())
    adaptive: bool = param(False, Boolean())
    side: str = param("server", Options("server", "client"))
    target_clipped_quantile: float = param(0.5, Real(min=0, max=1))
    clip_norm_lr: float = param(0.2, Positive())
    clipped_count_stddev: float | None = param(None, Positive(), NoneValue())
    delta: float | None = param(None, *DELTA)
    accountant: str = param("rdp", Options(*ACCOUNTANTS))
    allow_large_delta: bool = param(False, Boolean())
    hospital_sampling: str = param("without_replacement", Options("without_replacement", "none"))

    @property
    def trust_model(self) -> str:
        if self.side == "server":
            return "central: the server is trusted to clip each update and add noise to the aggregate"
        return "central with client-side clipping: hospitals clip their updates, the server is trusted to add noise"

    @property
    def conditions(self) -> tuple[str, ...]:
        """What the epsilon assumes, in words (the privacy statement lists them)."""
        return ("each round's noise is sized for the updates actually aggregated; how many were aggregated is "
                "treated as public",
                "every aggregated hospital weighs the same, whatever number of examples it claims",
                "each round is charged for the sample Flower really drew (a fixed number of the eligible "
                "hospitals, without replacement, accounted under replace-one-hospital; no sample and "
                "add-or-remove-one-hospital where every eligible hospital takes part or hospital_sampling is "
                "'none'); the sample must stay secret from whoever the epsilon protects against; a round that "
                "releases no aggregate costs nothing",
                "the aggregation rule averages the clipped updates (FedAvg or a server optimizer on the average)")

    @property
    def mechanism(self) -> str:
        return f"central DP ({self.side}-side {'adaptive' if self.adaptive else 'fixed'} clipping)"

    def describe(self) -> dict:
        return {**super().describe(), "conditions": list(self.conditions)}

    def install(self, plan: Plan) -> None:
        base = plan.base_strategy
        if not averages(base):
            raise ValueError(f"privacy: central DP sizes its noise for an average of clipped updates; "
                             f"{type(base).__name__}'s aggregate can move further when one hospital changes, so "
                             f"its epsilon would be false. Use an averaging strategy (fedavg, fedprox, fedavgm, "
                             f"fedadam, fedyogi, fedadagrad) with central DP, or a robust rule without it")
        hospitals = plan.federation.hospitals
        delta = check_delta(self.delta or default_delta(len(hospitals)), len(hospitals), "hospital",
                            self.allow_large_delta)
        sampled = plan.sampled_per_round
        ledger = ledger_of(plan)
        weighted_by_key = getattr(base, "weighted_by_key", "num-examples")
        if self.adaptive:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideAdaptiveClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideAdaptiveClipping)
            count_stddev = self.clipped_count_stddev or max(sampled / 20, self.noise_multiplier)

            def make(inner):
                return wrapper(inner, self.noise_multiplier, sampled, initial_clipping_norm=self.clipping_norm,
                               target_clipped_quantile=self.target_clipped_quantile,
                               clip_norm_lr=self.clip_norm_lr, clipped_count_stddev=count_stddev)

            try:  # Flower checks that the count noise leaves room for the requested noise
                make(base)
            except ValueError as error:
                raise ValueError(f"clipped_count_stddev: {error}") from None
        else:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideFixedClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideFixedClipping)

            def make(inner):
                return wrapper(inner, self.noise_multiplier, self.clipping_norm, sampled)
        plan.wrap("privacy", lambda inner: CalibratedRelease(make(inner), ledger, self.name, weighted_by_key))
        if self.side == "client":
            plan.add_mod("privacy", adaptiveclipping_mod if self.adaptive else fixedclipping_mod)
        else:
            plan.screens.append(UnchangedModelScreen())
        try:
            charge = Charge(
                technique=self.name, mechanism=self.mechanism, unit="hospital",
                noise_multiplier=float(self.noise_multiplier), accountant=self.accountant, per="release",
                sampling=self.hospital_sampling if sampled < len(hospitals) else "none",
                delta=dict.fromkeys(hospitals, delta),
                sampling_rate=dict.fromkeys(hospitals, sampled / len(hospitals)),
                steps_per_round=dict.fromkeys(hospitals, 1),
            )
        except ValueError as error:  # an accountant that cannot account this sampling or noise
            raise ValueError(f"privacy: central_dp: {error}") from None
        ledger.add(charge)
