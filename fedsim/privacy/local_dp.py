"""Local DP: each hospital noises its own update before sending it (Flower's LocalDpMod)."""

import math
from dataclasses import dataclass

from flwr.clientapp.mod import LocalDpMod

from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.privacy.ledger import ACCOUNTANTS, Charge, check_delta, ledger_of
from fedsim.validation import Boolean, NoneValue, Options, Positive, Real, param


@dataclass(frozen=True)
class LocalDP(Component):
    """Each hospital clips its update and adds Gaussian noise before sending it (Flower's LocalDpMod).

    Flower's mod adds noise sigma = sensitivity * sqrt(2 ln(1.25 / delta)) /
    epsilon (the classic Gaussian mechanism) to the update clipped to
    ``clipping_norm``. Local DP protects each update against any other one,
    so the sensitivity of a clipped update is its diameter, 2 x
    ``clipping_norm``, the default; with it, ``epsilon``/``delta`` hold per
    update. The ledger charges the noise that is really added, whatever
    ``sensitivity`` was given: sigma over 2 x ``clipping_norm`` per update
    under replace-one (a hospital's update replaced), composed over the rounds each hospital took
    part in (so an understated ``sensitivity`` shows as a larger epsilon).
    Unit: a hospital's updates; no trusted server needed.
    """

    family = "privacy"
    name = "local_dp"
    title = "local DP"
    threats = ("update leakage", "membership inference")
    unit = "hospital"
    trust_model = "local: each hospital noises its own update; no trusted server"
    spends_epsilon = True

    clipping_norm: float = param(1.0, Positive())
    epsilon: float = param(1.0, Positive())
    delta: float = param(1e-5, Real(min=0, max=1, min_open=True, max_open=True))
    sensitivity: float | None = param(None, Positive(), NoneValue())
    accountant: str = param("rdp", Options(*ACCOUNTANTS))
    allow_large_delta: bool = param(False, Boolean())

    def install(self, plan: Plan) -> None:
        hospitals = plan.federation.hospitals
        check_delta(self.delta, len(hospitals), "hospital", self.allow_large_delta)
        sensitivity = self.sensitivity or 2 * self.clipping_norm
        plan.add_mod("privacy", LocalDpMod(self.clipping_norm, sensitivity, self.epsilon, self.delta))
        sigma = sensitivity * math.sqrt(2 * math.log(1.25 / self.delta)) / self.epsilon  # what the mod adds
        try:
            charge = Charge(
                technique=self.name, mechanism="local DP (Gaussian)", unit="hospital",
                noise_multiplier=sigma / self.clipping_norm, accountant=self.accountant, per="reply", sampling="none",
                neighbours="replace_one",
                sampling_rate=dict.fromkeys(hospitals, 1.0), delta=dict.fromkeys(hospitals, self.delta),
                steps_per_round=dict.fromkeys(hospitals, 1))
        except ValueError as error:  # an accountant that cannot account this noise
            raise ValueError(f"privacy: local_dp: {error}") from None
        ledger_of(plan).add(charge)
