"""Privacy techniques as Experiment components: DP-SGD, central DP, local DP.

Each one uses the library that implements it (tensorflow-privacy's clipping
inside fedsim's trainer; Flower's DP strategy wrappers and mods) and charges
the run's PrivacyLedger, which turns the charges into epsilons.
"""

import math
from dataclasses import dataclass

import numpy as np
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from flwr.serverapp import strategy as flwr_strategy

from fedsim._replies import weights_of
from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.privacy.accounting import ACCOUNTANTS, Charge, PrivacyLedger, default_delta


def _positive(field: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{field}: must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")


def _check_common(delta, accountant) -> None:
    if delta is not None and not (isinstance(delta, float) and 0 < delta < 1):
        raise ValueError(f"delta: must be a float in (0, 1) or None for the default, got {delta!r}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant: unknown {accountant!r}; allowed: {list(ACCOUNTANTS)}")


def _sampled_per_round(plan: Plan) -> int:
    """How many hospitals the strategy samples each round (Flower's own rule)."""
    n = plan.federation.n_hospitals
    fraction = getattr(plan.strategy, "fraction_train", 1.0)
    return min(n, max(int(n * fraction), getattr(plan.strategy, "min_train_nodes", 1)))


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


@dataclass(frozen=True)
class DPSGD(Component):
    """Record-level DP at every hospital: DP-SGD with per-example clipping.

    Every local step clips each example's gradient to ``l2_norm_clip``
    (tensorflow-privacy's fast gradient clipping) and adds Gaussian noise of
    ``noise_multiplier * l2_norm_clip`` to the summed gradient. Unit of
    privacy: one patient record of one hospital. Each hospital's epsilon comes
    from its own sampling rate (batch / its training rows) and the steps it ran.
    """

    noise_multiplier: float = 1.0
    l2_norm_clip: float = 1.0
    delta: float | None = None
    accountant: str = "rdp"

    def __post_init__(self):
        _positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _positive("l2_norm_clip", self.l2_norm_clip)
        _check_common(self.delta, self.accountant)

    def install(self, plan: Plan) -> None:
        if "dpsgd-clip" in plan.train_settings:
            raise ValueError("privacy: DPSGD is given twice")
        plan.train_settings.update({"dpsgd-clip": float(self.l2_norm_clip), "dpsgd-noise": float(self.noise_multiplier)})
        fed = plan.federation
        n_train = {h: int(fed.train_offsets[i + 1] - fed.train_offsets[i]) for i, h in enumerate(fed.hospitals)}
        per_round = {h: plan.local_epochs * math.ceil(n / plan.batch_size) for h, n in n_train.items()}
        if plan.local_steps is not None:
            per_round = {h: min(s, plan.local_steps) for h, s in per_round.items()}
        PrivacyLedger.of(plan).add(Charge(
            mechanism="DP-SGD", unit="record", noise_multiplier=float(self.noise_multiplier),
            accountant=self.accountant, per="step",
            sampling_rate={h: min(1.0, plan.batch_size / n) for h, n in n_train.items()},
            delta={h: self.delta or default_delta(n) for h, n in n_train.items()},
            next_steps=per_round,
        ))


@dataclass(frozen=True)
class CentralDP(Component):
    """Hospital-level DP of the global model: clipped updates, Gaussian noise on the aggregate.

    Flower's ``DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping``
    wrap the experiment's strategy. ``side="server"`` trusts the server to clip;
    ``side="client"`` clips at each hospital (Flower's clipping mods) and is
    the pattern to combine with SecAgg. Unit of privacy: a hospital's whole
    contribution. ``clipping_norm`` is the initial norm when ``adaptive``;
    the noise on the count of clipped updates, ``clipped_count_stddev``,
    defaults to max(sampled / 20, noise_multiplier): Flower's own default
    (sampled / 20) cannot reach the requested noise with few hospitals.
    """

    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    adaptive: bool = False
    side: str = "server"
    target_clipped_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    clipped_count_stddev: float | None = None
    delta: float | None = None
    accountant: str = "rdp"

    def __post_init__(self):
        _positive("noise_multiplier", self.noise_multiplier, allow_zero=True)
        _positive("clipping_norm", self.clipping_norm)
        if self.clipped_count_stddev is not None:
            _positive("clipped_count_stddev", self.clipped_count_stddev)
        if self.side not in ("server", "client"):
            raise ValueError(f"side: unknown {self.side!r}; allowed: ['server', 'client']")
        if not 0 <= self.target_clipped_quantile <= 1:
            raise ValueError(f"target_clipped_quantile: must be in [0, 1], got {self.target_clipped_quantile}")
        _positive("clip_norm_lr", self.clip_norm_lr)
        _check_common(self.delta, self.accountant)

    @property
    def mechanism(self) -> str:
        return f"central DP ({self.side}-side {'adaptive' if self.adaptive else 'fixed'} clipping)"

    def install(self, plan: Plan) -> None:
        sampled = _sampled_per_round(plan)
        if self.adaptive:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideAdaptiveClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideAdaptiveClipping)
            count_stddev = self.clipped_count_stddev or max(sampled / 20, self.noise_multiplier)
            try:
                plan.strategy = wrapper(plan.strategy, self.noise_multiplier, sampled,
                                        initial_clipping_norm=self.clipping_norm,
                                        target_clipped_quantile=self.target_clipped_quantile,
                                        clip_norm_lr=self.clip_norm_lr, clipped_count_stddev=count_stddev)
            except ValueError as error:
                raise ValueError(f"clipped_count_stddev: {error}") from None
        else:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideFixedClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideFixedClipping)
            plan.strategy = wrapper(plan.strategy, self.noise_multiplier, self.clipping_norm, sampled)
        if self.side == "client":
            plan.client_mods.append(adaptiveclipping_mod if self.adaptive else fixedclipping_mod)
        else:
            plan.screens.append(UnchangedModelScreen())
        hospitals = plan.federation.hospitals
        PrivacyLedger.of(plan).add(Charge(
            mechanism=self.mechanism, unit="hospital", noise_multiplier=float(self.noise_multiplier),
            accountant=self.accountant, per="round",
            sampling_rate=dict.fromkeys(hospitals, sampled / len(hospitals)),
            delta=dict.fromkeys(hospitals, self.delta or default_delta(len(hospitals))),
            next_steps=dict.fromkeys(hospitals, 1),
        ))


@dataclass(frozen=True)
class LocalDP(Component):
    """Each hospital clips its update and adds Gaussian noise before sending it (Flower's LocalDpMod).

    ``epsilon``/``delta`` are per released update (the classic Gaussian
    mechanism, noise sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon,
    sensitivity = ``clipping_norm`` unless given). The ledger composes them over
    the rounds each hospital took part in. Unit: a hospital's update; no
    trusted server needed.
    """

    clipping_norm: float = 1.0
    epsilon: float = 1.0
    delta: float = 1e-5
    sensitivity: float | None = None
    accountant: str = "rdp"

    def __post_init__(self):
        _positive("clipping_norm", self.clipping_norm)
        _positive("epsilon", self.epsilon)
        _check_common(self.delta, self.accountant)
        if self.sensitivity is not None:
            _positive("sensitivity", self.sensitivity)

    def install(self, plan: Plan) -> None:
        sensitivity = self.sensitivity or self.clipping_norm
        plan.client_mods.append(LocalDpMod(self.clipping_norm, sensitivity, self.epsilon, self.delta))
        hospitals = plan.federation.hospitals
        PrivacyLedger.of(plan).add(Charge(
            mechanism="local DP (Gaussian)", unit="hospital",
            noise_multiplier=math.sqrt(2 * math.log(1.25 / self.delta)) / self.epsilon,
            accountant=self.accountant, per="reply", sampling_rate=dict.fromkeys(hospitals, 1.0),
            delta=dict.fromkeys(hospitals, self.delta), next_steps=dict.fromkeys(hospitals, 1),
        ))
