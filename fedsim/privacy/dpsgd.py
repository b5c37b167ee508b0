"""DP-SGD: record-level differential privacy at every hospital (tensorflow-privacy's clipping)."""

import dataclasses
import math
from dataclasses import dataclass

from fedsim.components import Component
from fedsim.engine import Plan
from fedsim.privacy.ledger import ACCOUNTANTS, Charge, check_delta, default_delta, ledger_of
from fedsim.training import SAMPLINGS, DPTraining, expected_batch
from fedsim.validation import Boolean, NoneValue, Options, Positive, Real, param

DELTA = (Real(min=0, max=1, min_open=True, max_open=True), NoneValue())


@dataclass(frozen=True)
class DPSGD(Component):
    """Record-level DP at every hospital: DP-SGD with per-example clipping.

    Every local step clips each example's gradient to ``l2_norm_clip``
    (tensorflow-privacy's fast gradient clipping) and adds Gaussian noise of
    ``noise_multiplier * l2_norm_clip`` to the summed gradient, divided by the
    expected batch size. Unit of privacy: one patient record of one hospital.
    ``sampling="poisson"`` (default): each record joins each step
    independently with probability batch / its hospital's rows (batches vary
    in size; an empty one still takes its noisy step), accounted as
    Poisson-subsampled Gaussians under add-or-remove-one-record;
    ``"shuffle"``: shuffled fixed-size batches, accounted without
    amplification (one Gaussian release per pass over the rows, under
    replace-one-record). Each hospital's epsilon comes from its own sampling
    rate and the local steps the server asked of it (or more, where the
    simulator saw it run more), never from what its reply claims. ``delta``
    defaults to ``default_delta(records)`` per hospital; one at or above
    1 / its records is refused unless ``allow_large_delta``.
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
    sampling: str = param("poisson", Options(*SAMPLINGS))

    def install(self, plan: Plan) -> None:
        training = DPTraining(float(self.l2_norm_clip), float(self.noise_multiplier), self.sampling)
        if plan.recipe.dp is not None:
            raise ValueError("privacy: DPSGD is given twice")
        plan.recipe = dataclasses.replace(plan.recipe, dp=training)
        fed = plan.federation
        n_train = {h: int(fed.n_train[i]) for i, h in enumerate(fed.hospitals)}
        delta = {h: check_delta(self.delta or default_delta(n), n, f"record of {h}", self.allow_large_delta)
                 for h, n in n_train.items()}
        try:
            charge = Charge(
                technique=self.name, mechanism="DP-SGD", unit="record", noise_multiplier=float(self.noise_multiplier),
                accountant=self.accountant, per="step", delta=delta, sampling=self.sampling,
                sampling_rate={h: expected_batch(n, plan.recipe.batch_size) / n for h, n in n_train.items()},
                steps_per_round={h: plan.recipe.steps(n) for h, n in n_train.items()},
                steps_per_pass={h: math.ceil(n / plan.recipe.batch_size) for h, n in n_train.items()},
            )
        except ValueError as error:  # an accountant that cannot account this noise
            raise ValueError(f"privacy: dpsgd: {error}") from None
        ledger_of(plan).add(charge)
