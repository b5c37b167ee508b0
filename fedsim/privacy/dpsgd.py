"""DP-SGD: record-level differential privacy at every hospital (tensorflow-privacy's clipping)."""

from dataclasses import dataclass

from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.engine.ledger import ACCOUNTANTS, Charge, check_delta, default_delta
from fedsim.validation import Boolean, NoneValue, Options, Positive, Real, param

DELTA = (Real(min=0, max=1, min_open=True, max_open=True), NoneValue())


@dataclass(frozen=True)
class DPSGD(Component):
    """Record-level DP at every hospital: DP-SGD with per-example clipping.

    Every local step clips each example's gradient to ``l2_norm_clip``
    (tensorflow-privacy's fast gradient clipping) and adds Gaussian noise of
    ``noise_multiplier * l2_norm_clip`` to the summed gradient. Unit of
    privacy: one patient record of one hospital. Each hospital's epsilon comes
    from its own sampling rate (batch / its training rows) and the local steps
    the server asked of it (or more, where the simulator saw it run more),
    never from what its reply claims. ``delta`` defaults to
    ``default_delta(records)`` per hospital; one at or above 1 / its records
    is refused unless ``allow_large_delta``.
    """

    family = "privacy"
    name = "dpsgd"
    title = "DP-SGD"
    threats = ("update leakage", "membership inference")
    unit = "record"
    trust_model = ("local training: each hospital runs DP-SGD on its own records; the server and the other "
                   "hospitals see only noised updates")
    spends_epsilon = True

    noise_multiplier: float = param(1.0, Real(min=0))
    l2_norm_clip: float = param(1.0, Positive())
    delta: float | None = param(None, *DELTA)
    accountant: str = param("rdp", Options(*ACCOUNTANTS))
    allow_large_delta: bool = param(False, Boolean())

    def install(self, plan: Plan) -> None:
        if "dpsgd-clip" in plan.train_settings:
            raise ValueError("privacy: DPSGD is given twice")
        plan.train_settings.update({"dpsgd-clip": float(self.l2_norm_clip),
                                    "dpsgd-noise": float(self.noise_multiplier)})
        fed = plan.federation
        n_train = {h: int(fed.n_train[i]) for i, h in enumerate(fed.hospitals)}
        delta = {h: check_delta(self.delta or default_delta(n), n, f"record of {h}", self.allow_large_delta)
                 for h, n in n_train.items()}
        plan.privacy_ledger().add(Charge(
            technique=self.name, mechanism="DP-SGD", unit="record", noise_multiplier=float(self.noise_multiplier),
            accountant=self.accountant, per="step", delta=delta,
            sampling_rate={h: min(1.0, plan.batch_size / n) for h, n in n_train.items()},
            steps_per_round={h: plan.steps_per_round(n) for h, n in n_train.items()},
        ))
