"""DP techniques: their effect on training and a ledger that matches independent accounting."""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_privacy.privacy.analysis.compute_dp_sgd_privacy_lib import compute_dp_sgd_privacy_statement

import fedsim as fs
from fedsim.models import resolve_model
from fedsim.privacy import DPSGD, CentralDP, LocalDP
from fedsim.training import DPTraining, trainer_for
from tests.accounting import poisson_epsilon, without_replacement_epsilon


@pytest.fixture(scope="module")
def skewed_fed():
    """Hospitals of very different sizes: each must get its own sampling rate."""
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1600, seed=0, quantity_skew=1.0)


def independent_epsilon(z, q, steps, delta):
    return poisson_epsilon(z, [(q, int(steps))], delta)


def run(fed, **kwargs):
    return fs.Experiment(federation=fed, model="logreg", rounds=2, learning_rate=0.1, **kwargs).run()


def test_dpsgd_ledger_matches_dp_accounting_per_hospital(skewed_fed):
    res = run(skewed_fed, privacy=DPSGD(noise_multiplier=1.1, l2_norm_clip=1.0), batch_size=16)
    ledger = res.privacy.set_index("hospital")
    sizes = skewed_fed.summary().set_index("hospital").n_train
    assert ledger.sampling_rate.nunique() == 4
    for hospital, n in sizes.items():
        row = ledger.loc[hospital]
        assert row.unit == "record" and row.mechanism == "DP-SGD" and row.rounds == 2
        assert row.steps == 2 * math.ceil(n / 16)
        assert row.sampling_rate == pytest.approx(16 / n)
        assert row.delta == pytest.approx(min(1e-5, 1 / n ** 1.1))
        assert row.epsilon == pytest.approx(independent_epsilon(1.1, 16 / n, row.steps, row.delta), rel=1e-9)


def test_dpsgd_epsilon_matches_tensorflow_privacy_statement(small_fed):
    res = run(small_fed, privacy=DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0, delta=1e-3), batch_size=32)
    row = res.privacy.iloc[0]
    n = int(small_fed.summary().n_train.iloc[0])
    statement = compute_dp_sgd_privacy_statement(
        number_of_examples=n, batch_size=32, num_epochs=2, noise_multiplier=1.0, delta=1e-3,
        used_microbatching=False,  # fedsim clips per example, no microbatches
    )
    poisson = float(re.search(r"Poisson sampling \(\*\):\s+([\d.]+)", statement).group(1))
    assert row.steps == 2 * math.ceil(n / 32)
    # The statement counts epochs * n / batch steps (fractional); fedsim counts the steps it ran.
    if n % 32 == 0:
        assert row.epsilon == pytest.approx(poisson, abs=5e-4)
    else:
        assert row.epsilon == pytest.approx(poisson, rel=0.05)


@pytest.mark.parametrize("side", ["server", "client"])
def test_central_dp_ledger_is_a_subsampled_gaussian_over_rounds(small_fed, side):
    res = fs.Experiment(federation=small_fed, model="logreg", rounds=3, fraction_train=0.5,
                        privacy=CentralDP(noise_multiplier=0.8, clipping_norm=0.5, side=side)).run()
    row = res.privacy.iloc[0]
    assert row.unit == "hospital" and row.steps == 3 and row.sampling_rate == 0.5
    assert row.delta == 1e-5  # 1 / 4^1.1 = 0.22 would be no guarantee at all
    # Flower samples 2 of the 4 hospitals without replacement: accounted as that, replace one hospital.
    assert (row.hospital_sampling, row.record_sampling, row.neighbouring) == ("without_replacement", "none",
                                                                             "replace one hospital")
    assert row.epsilon == pytest.approx(without_replacement_epsilon(0.8, [((4, 2), 3)], 1e-5))


def test_local_dp_composes_the_per_update_gaussian(small_fed):
    """Sensitivity 2 x the clip by default (a clipped update's diameter): noise 2 x clip x sqrt(2 ln(1.25/delta))
    / epsilon, the accountant's Gaussian has half that over the clip (replace one update)."""
    res = run(small_fed, privacy=LocalDP(clipping_norm=1.0, epsilon=2.0, delta=1e-5))
    row = res.privacy.iloc[0]
    z = math.sqrt(2 * math.log(1.25 / 1e-5)) / 2.0
    assert row.noise_multiplier == pytest.approx(2 * z) and row.rounds == 2
    assert row.neighbouring == "replace one hospital"
    assert row.epsilon == pytest.approx(independent_epsilon(z, 1.0, 2, 1e-5))


def test_dp_with_no_noise_and_no_clipping_reproduces_the_plain_run(small_fed):
    plain = run(small_fed)
    central = run(small_fed, privacy=CentralDP(noise_multiplier=0.0, clipping_norm=1e9))
    assert np.allclose(plain.metrics.value, central.metrics.value, atol=1e-6, equal_nan=True)
    # DP-SGD draws its batches from the hospital's secret: compared on one batch plan, in the trainer.
    # Its "shuffle" sampling takes plain SGD's batches; all full (224 rows, 32 a batch), so the expected batch it
    # divides by is the realized one.
    trainer = trainer_for(resolve_model("logreg"), small_fed.n_features)
    x, y = (a[:224] for a in small_fed.train_rows(0))
    start = trainer.initial_weights(0)
    schedule = {"epochs": 2, "batch_size": 32, "learning_rate": 0.1}
    sgd, _, _ = trainer.fit(start, x, y, rng=np.random.default_rng(1), **schedule)
    dpsgd, _, _ = trainer.fit(start, x, y, rng=np.random.default_rng(1), dp=DPTraining(1e9, 0.0, "shuffle"),
                              **schedule)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(sgd, dpsgd))
    dp = run(small_fed, privacy=DPSGD(noise_multiplier=0.0, l2_norm_clip=1e9))
    assert dp.privacy.epsilon.eq(math.inf).all()


@pytest.mark.parametrize("technique", [DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0),
                                       CentralDP(noise_multiplier=1.0, clipping_norm=0.1),
                                       LocalDP(clipping_norm=0.1, epsilon=1.0)])
def test_noise_is_really_added(small_fed, technique):
    plain = run(small_fed)
    noisy, again = run(small_fed, privacy=technique, noise_seed=3), run(small_fed, privacy=technique, noise_seed=3)
    gap = max(np.abs(a - b).max() for a, b in zip(plain.weights, noisy.weights))
    assert gap > 1e-3
    # ...and the noise repeats for the experimenter's secret, and is fresh without it.
    assert all(np.array_equal(a, b) for a, b in zip(noisy.weights, again.weights))
    fresh = run(small_fed, privacy=technique)
    assert not all(np.array_equal(a, b) for a, b in zip(noisy.weights, fresh.weights))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.floats(0.5, 8.0), noise=st.floats(0.6, 2.0), rounds=st.integers(1, 4))
def test_no_hospital_ever_ends_above_its_budget(small_fed, cap, noise, rounds):
    res = fs.Experiment(federation=small_fed, model="logreg", rounds=rounds, batch_size=64,
                        privacy=DPSGD(noise_multiplier=noise), privacy_budget=cap).run()
    assert (res.privacy.epsilon <= cap).all()
    stopped = set(res.participation.query("event == 'excluded'").hospital)
    for hospital, row in res.privacy.set_index("hospital").iterrows():
        assert row.rounds == rounds or hospital in stopped


def test_per_hospital_budgets_exclude_only_that_hospital(small_fed):
    res = fs.Experiment(federation=small_fed, model="logreg", rounds=3, batch_size=64,
                        privacy=DPSGD(noise_multiplier=1.0), privacy_budget={"H000": 0.5, "default": 100.0}).run()
    ledger = res.privacy.set_index("hospital")
    assert ledger.loc["H000", "rounds"] < 3 and (ledger.drop("H000").rounds == 3).all()
    assert set(res.participation.hospital) == {"H000"}


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: DPSGD(noise_multiplier=-1), "noise_multiplier"),
        (lambda: DPSGD(l2_norm_clip=0), "l2_norm_clip"),
        (lambda: DPSGD(accountant="moments"), "accountant"),
        (lambda: DPSGD(delta=2.0), "delta"),
        (lambda: CentralDP(side="middle"), "side"),
        (lambda: LocalDP(epsilon=0), "epsilon"),
    ],
)
def test_bad_privacy_settings_raise_naming_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        make()


def test_bad_budgets_raise(small_fed):
    with pytest.raises(ValueError, match="^privacy_budget: needs a DP technique"):
        fs.Experiment(federation=small_fed, privacy_budget=1.0)
    with pytest.raises(ValueError, match="^privacy_budget: unknown hospital"):
        fs.Experiment(federation=small_fed, privacy=DPSGD(), privacy_budget={"Mars": 1.0})
    with pytest.raises(ValueError, match="^privacy: unknown name 'dp'"):
        fs.Experiment(federation=small_fed, privacy="dp")
    with pytest.raises(ValueError, match="^privacy: SignFlip is an adversary component, not a privacy"):
        fs.Experiment(federation=small_fed, privacy=fs.adversaries.SignFlip())


def test_pld_accountant_is_available(small_fed):
    res = run(small_fed, privacy=DPSGD(noise_multiplier=1.0, accountant="pld"))
    rdp_eps = run(small_fed, privacy=DPSGD(noise_multiplier=1.0)).privacy.epsilon
    assert (res.privacy.accountant == "pld").all()
    assert (res.privacy.epsilon <= rdp_eps + 1e-9).all()  # PLD is tighter than RDP


def test_dpsgd_under_secagg_charges_each_round_once(small_fed):
    plain = run(small_fed, privacy=DPSGD(noise_multiplier=1.0), noise_seed=2)
    both = run(small_fed, privacy=[DPSGD(noise_multiplier=1.0), fs.privacy.SecAgg()], noise_seed=2)
    cols = ["hospital", "steps", "rounds", "epsilon"]
    assert both.privacy[cols].equals(plain.privacy[cols])
    # Masking changes what the server sees, not the model (up to quantization).
    assert abs(both.final("auroc") - plain.final("auroc")) < 1e-3


def test_client_side_central_dp_with_secagg_is_distributed_dp(small_fed):
    dp = CentralDP(noise_multiplier=0.0, clipping_norm=1e9, side="client")
    plain, secure = run(small_fed), run(small_fed, privacy=[dp, fs.privacy.SecAgg()])
    assert abs(secure.final("auroc") - plain.final("auroc")) < 1e-3  # no noise, no clipping: FedAvg
    noisy = run(small_fed, privacy=[CentralDP(noise_multiplier=1.0, clipping_norm=0.1, side="client"),
                                    fs.privacy.SecAgg()])
    assert max(np.abs(a - b).max() for a, b in zip(noisy.weights, plain.weights)) > 1e-3
    assert (noisy.privacy.mechanism == "central DP (client-side fixed clipping)").all()
    assert noisy.privacy.epsilon.notna().all() and (noisy.privacy.steps == 2).all()


def test_a_zero_update_under_server_side_central_dp_is_rejected_not_fatal(small_fed):
    # Flower's server-side clipping divides by the update norm: an unchanged model must not stop the run.
    res = fs.Experiment(federation=small_fed, rounds=2, privacy=CentralDP(noise_multiplier=0.1),
                        adversaries=fs.adversaries.FreeRider(hospitals=[small_fed.hospitals[0]])).run()
    rejected = res.participation[res.participation.event == "rejected"]
    assert len(rejected) == 2 and rejected.reason.str.contains("zero update").all()
    assert res.metrics["round"].max() == 2
