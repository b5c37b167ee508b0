"""Central DP: hospital-level differential privacy of the global model (Flower's DP strategy wrappers)."""

from dataclasses import dataclass

import numpy as np
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.serverapp import strategy as flwr_strategy

from fedsim.components import Component
from fedsim.engine import Exchange, Plan, ReplyScreen
from fedsim.engine.ledger import ACCOUNTANTS, Charge, default_delta
from fedsim.engine.messages import weights_of
from fedsim.privacy.dpsgd import DELTA
from fedsim.validation import Boolean, NoneValue, Options, Positive, Real, param


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

    @property
    def trust_model(self) -> str:
        if self.side == "server":
            return "central: the server is trusted to clip each update and add noise to the aggregate"
        return "central with client-side clipping: hospitals clip their updates, the server is trusted to add noise"

    @property
    def mechanism(self) -> str:
        return f"central DP ({self.side}-side {'adaptive' if self.adaptive else 'fixed'} clipping)"

    def install(self, plan: Plan) -> None:
        sampled = plan.sampled_per_round
        if self.adaptive:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideAdaptiveClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideAdaptiveClipping)
            count_stddev = self.clipped_count_stddev or max(sampled / 20, self.noise_multiplier)

            def make(inner):
                return wrapper(inner, self.noise_multiplier, sampled, initial_clipping_norm=self.clipping_norm,
                               target_clipped_quantile=self.target_clipped_quantile,
                               clip_norm_lr=self.clip_norm_lr, clipped_count_stddev=count_stddev)

            try:  # Flower checks that the count noise leaves room for the requested noise
                make(plan.base_strategy)
            except ValueError as error:
                raise ValueError(f"clipped_count_stddev: {error}") from None
        else:
            wrapper = (flwr_strategy.DifferentialPrivacyServerSideFixedClipping if self.side == "server"
                       else flwr_strategy.DifferentialPrivacyClientSideFixedClipping)

            def make(inner):
                return wrapper(inner, self.noise_multiplier, self.clipping_norm, sampled)
        plan.wrap("privacy", make)
        if self.side == "client":
            plan.add_mod("privacy", adaptiveclipping_mod if self.adaptive else fixedclipping_mod)
        else:
            plan.screens.append(UnchangedModelScreen())
        hospitals = plan.federation.hospitals
        plan.privacy_ledger().add(Charge(
            technique=self.name, mechanism=self.mechanism, unit="hospital",
            noise_multiplier=float(self.noise_multiplier),
            accountant=self.accountant, per="round",
            sampling_rate=dict.fromkeys(hospitals, sampled / len(hospitals)),
            delta=dict.fromkeys(hospitals, self.delta or default_delta(len(hospitals))),
            next_steps=dict.fromkeys(hospitals, 1),
        ))
