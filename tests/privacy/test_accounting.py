"""Accounting that stays true whatever the hospitals do: noise for the replies aggregated, real sampling rates,
uniform weights, charges stopped by every exclusion, steps from the server, deltas a privacy engineer signs."""

import math

import numpy as np
import pytest
from flwr.serverapp.strategy import dp_fixed_clipping

import fedsim as fs
from fedsim.engine.messages import flat, weights_of
from fedsim.governance import Policy
from fedsim.privacy import DPSGD, CentralDP, LocalDP
from fedsim.training import poisson_plan
from tests.accounting import poisson_epsilon, without_replacement_epsilon
from tests.recording import Recorder


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1200, seed=0)


@pytest.fixture(scope="module")
def six():
    return fs.synthetic_federation("icu_mortality", n_hospitals=6, n_patients=1800, seed=1)


@pytest.fixture()
def noise_added(monkeypatch):
    """The standard deviation of every noise draw Flower's fixed-clipping wrappers add to an aggregate."""
    stdvs = []
    real = dp_fixed_clipping.add_gaussian_noise_inplace

    def recording(arrays, stdv):
        stdvs.append(stdv)
        return real(arrays, stdv)

    monkeypatch.setattr(dp_fixed_clipping, "add_gaussian_noise_inplace", recording)
    return stdvs


def nan_from(*partitions):
    def mod(message, context, call_next):
        reply = call_next(message, context)
        if message.metadata.message_type == "train" and context.node_config["partition-id"] in partitions:
            arrays = reply.content["arrays"]
            first = next(iter(arrays.keys()))
            value = arrays[first].numpy().copy()
            value.flat[0] = np.nan
            arrays[first] = fs.engine.messages.Array(value)
        return reply
    return mod


def test_central_dp_noise_is_sized_for_the_replies_really_aggregated(fed, noise_added):
    """3 of 4 hospitals send NaN: the one update left gets the noise of z = 0.5 on a sum of one, not of four."""
    z, clip = 0.5, 1.0
    res = fs.Experiment(federation=fed, model="logreg", rounds=3, privacy=CentralDP(noise_multiplier=z,
                        clipping_norm=clip), client_mods=[nan_from(0, 1, 2)]).run()
    assert len(noise_added) == 3 and noise_added == pytest.approx([z * clip / 1] * 3)
    assert (res.participation.event == "rejected").sum() == 9
    ledger = res.privacy.set_index("hospital")
    assert (ledger.noise_multiplier == z).all()
    # Every hospital was eligible and sampled each round (rate 1): three full Gaussian releases each.
    assert ledger.epsilon.tolist() == pytest.approx([poisson_epsilon(z, [(1.0, 3)], 1e-5)] * 4)


def test_one_failing_hospital_never_voids_a_central_dp_round(fed, noise_added):
    always_down = fs.availability.Crash(hospitals=["H002"])
    res = fs.Experiment(federation=fed, model="logreg", rounds=4, learning_rate=0.2,
                        privacy=CentralDP(noise_multiplier=0.3, clipping_norm=1.0), availability=always_down).run()
    assert len(noise_added) == 4 and noise_added == pytest.approx([0.3 / 3] * 4)  # sized for the 3 that replied
    auroc = res.metrics.query("scope == 'global' and metric == 'auroc'").value.to_numpy()
    assert auroc[-1] > auroc[0] + 0.05
    assert "stopped" not in set(res.participation.event)
    dropout = fs.Experiment(federation=fed, model="logreg", rounds=5, learning_rate=0.2,
                            privacy=CentralDP(noise_multiplier=0.3, clipping_norm=1.0),
                            availability=fs.availability.Dropout(0.2)).run()
    curve = dropout.metrics.query("scope == 'global' and metric == 'auroc'").value.to_numpy()
    assert len(set(np.round(curve, 6))) == len(curve)  # every round moved the model


def test_the_sampling_rate_is_the_real_one_each_round(six):
    """fraction_train=0.5 of 6; three hospitals capped out: the others are then sampled at 2/3, not 1/2."""
    recorder = Recorder("train")
    caps = {h: 1.2 for h in six.hospitals[:3]} | {"default": 100.0}
    res = fs.Experiment(federation=six, model="logreg", rounds=5, fraction_train=0.5, observers=[recorder],
                        privacy=CentralDP(noise_multiplier=1.0), privacy_budget=caps).run()
    excluded = res.participation[res.participation.event == "excluded"]
    assert set(excluded.hospital) == set(six.hospitals[:3])
    for hospital in six.hospitals:
        events = []  # Flower's sample each round: len(sent) of the hospitals eligible, without replacement
        for exchange in recorder.exchanges:
            out = set(excluded[excluded["round"] == exchange.server_round].hospital)
            if hospital not in out:
                events.append((len(six.hospitals) - len(out), len(exchange.sent)))
        row = res.privacy.set_index("hospital").loc[hospital]
        assert row.epsilon == pytest.approx(without_replacement_epsilon(
            1.0, [(e, events.count(e)) for e in sorted(set(events))], 1e-5))
        assert row.epsilon <= caps.get(hospital, 100.0)
        assert (row.hospital_sampling, row.neighbouring) == ("without_replacement", "replace one hospital")
    assert max(res.privacy.sampling_rate) == pytest.approx(2 / 3)


def test_central_dp_weighs_every_aggregated_hospital_the_same(noise_added):
    """A claim cannot buy influence: without noise or clipping, the aggregate is the plain mean of the updates."""
    skewed = fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1600, seed=0, quantity_skew=1.0)
    recorder = Recorder("train")
    res = fs.Experiment(federation=skewed, model="logreg", rounds=1, observers=[recorder],
                        privacy=CentralDP(noise_multiplier=0.0, clipping_norm=1e9)).run()
    exchange = recorder.exchanges[0]
    mean = np.mean([flat(weights_of(c)) for c in exchange.updates().values()], axis=0)
    assert np.allclose(flat(res.weights), mean, atol=1e-6)
    sizes = [len(skewed.train_rows(i)[1]) for i in range(4)]
    weighted = np.average([flat(weights_of(exchange.updates()[h])) for h in skewed.hospitals], axis=0, weights=sizes)
    assert not np.allclose(flat(res.weights), weighted, atol=1e-4)


def test_every_exclusion_stops_the_charge():
    """Policy(max_epsilon=3) on H000 under CentralDP(1.0), 8 rounds: excluded, then never charged again."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1200, seed=0)
    res = fs.Experiment(federation=fed, model="logreg", rounds=8, privacy=CentralDP(noise_multiplier=1.0),
                        policies={"H000": Policy(max_epsilon=3.0)}).run()
    ledger = res.privacy.set_index("hospital")
    excluded = res.participation[(res.participation.event == "excluded") & (res.participation.hospital == "H000")]
    first = int(excluded["round"].min())
    assert list(excluded["round"]) == list(range(first, 9))
    assert ledger.loc["H000", "rounds"] == first - 1 and ledger.loc["H000", "epsilon"] <= 3.0
    assert ledger.loc["H001", "rounds"] == 8
    enforced = res.tables["policy"]
    assert set(enforced[enforced.policy == "max_epsilon"]["round"]) == set(range(first, 9))


def test_dpsgd_is_charged_the_steps_the_simulator_ran(fed):
    """The attacker trains three times longer than asked: its records are charged what it really ran."""
    attack = fs.adversaries.ModelReplacement(hospitals=["H001"], local_epochs=3)
    res = fs.Experiment(federation=fed, model="logreg", rounds=2, privacy=DPSGD(noise_multiplier=1.0),
                        adversaries=attack, defenses=fs.defenses.UpdateValidator.off()).run()
    steps = res.privacy.set_index("hospital").steps
    n = {h: len(fed.train_rows(i)[1]) for i, h in enumerate(fed.hospitals)}
    assert steps["H000"] == 2 * math.ceil(n["H000"] / 32)
    assert steps["H001"] == 2 * 3 * math.ceil(n["H001"] / 32)


@pytest.mark.parametrize("technique, message", [
    (CentralDP(delta=0.3), "delta: 0.3 is not below 1/n = 1/4 for 4 hospitals"),
    (LocalDP(delta=0.5), "delta: 0.5 is not below 1/n = 1/4 for 4 hospitals"),
    (DPSGD(delta=0.01), "delta: 0.01 is not below 1/n = 1/"),
])
def test_a_delta_no_one_would_sign_is_refused_unless_insisted(fed, technique, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        fs.Experiment(federation=fed, privacy=technique)
    insisted = type(technique)(**{**technique.settings(), "allow_large_delta": True})
    assert fs.Experiment(federation=fed, privacy=insisted)


def test_the_default_delta_is_at_most_1e_5(fed):
    assert fs.privacy.default_delta(4) == 1e-5 and fs.privacy.default_delta(10**7) < 1e-5
    res = fs.Experiment(federation=fed, model="logreg", rounds=1, privacy=[CentralDP(), DPSGD()]).run()
    assert (res.privacy.delta <= 1e-5).all()


# --- the sampling that ran, the parameters that set the noise (issue: epsilons that hold) ----------------------


def test_dpsgd_samples_records_as_its_accountant_composes_them():
    """Poisson sampling: each step's batch is Binomial(n, q), each record joins a share q of the steps, an empty
    batch happens as often as (1 - q)^n says, and the ledger names it."""
    n, batch, steps = 500, 25, 4000
    order, bounds = poisson_plan(n, epochs=steps * batch // n, batch_size=batch, rng=np.random.default_rng(0))
    sizes = np.diff(bounds)
    q = batch / n
    assert len(sizes) == steps and abs(sizes.mean() - n * q) < 0.2 and abs(sizes.var() / (n * q * (1 - q)) - 1) < 0.1
    assert np.abs(np.bincount(order, minlength=n) / steps - q).max() < 0.02  # every record, about q of the steps
    _, tiny = poisson_plan(1000, epochs=3, batch_size=1, rng=np.random.default_rng(1))
    assert abs((np.diff(tiny) == 0).mean() - (1 - 1 / 1000) ** 1000) < 0.05  # about 37% of the steps are empty


def test_a_default_dpsgd_ledger_names_poisson_record_sampling(fed):
    res = fs.Experiment(federation=fed, model="logreg", rounds=2, privacy=DPSGD(1.0)).run()
    assert set(res.privacy.record_sampling) == {"poisson"} and set(res.privacy.hospital_sampling) == {"none"}
    assert set(res.privacy.neighbouring) == {"add or remove one record"}
    for hospital, row in res.privacy.set_index("hospital").iterrows():
        n = int(fed.n_train[fed.hospitals.index(hospital)])
        assert row.epsilon == pytest.approx(poisson_epsilon(1.0, [(32 / n, 2 * math.ceil(n / 32))], row.delta))


def test_shuffled_batches_are_accounted_without_amplification(fed):
    """One Gaussian release per pass over the rows, replace one record (the clipped sum moves by 2 x the clip)."""
    res = fs.Experiment(federation=fed, model="logreg", rounds=3, privacy=DPSGD(1.0, sampling="shuffle")).run()
    row = res.privacy.iloc[0]
    assert (row.record_sampling, row.neighbouring, row.steps) == ("shuffle", "replace one record", 3)
    assert row.epsilon == pytest.approx(without_replacement_epsilon(1.0, [((1, 1), 3)], row.delta))


def test_central_dp_with_half_of_eight_hospitals_is_accounted_as_flower_samples(noise_added):
    """fraction_train=0.5 of 8: Flower samples 4 without replacement each round; the ledger names it and each
    hospital's epsilon is an independent dp-accounting recomputation of that sampling."""
    eight = fs.synthetic_federation("icu_mortality", n_hospitals=8, n_patients=2400, seed=3)
    recorder = Recorder("train")
    res = fs.Experiment(federation=eight, model="logreg", rounds=4, fraction_train=0.5, observers=[recorder],
                        privacy=CentralDP(noise_multiplier=1.0)).run()
    assert [len(e.sent) for e in recorder.exchanges] == [4] * 4 and noise_added == pytest.approx([1.0 / 4] * 4)
    for _, row in res.privacy.iterrows():
        assert (row.hospital_sampling, row.neighbouring) == ("without_replacement", "replace one hospital")
        assert row.epsilon == pytest.approx(without_replacement_epsilon(1.0, [((8, 4), 4)], row.delta), rel=0.02)


def test_local_dp_is_charged_for_the_noise_its_sensitivity_really_adds(fed):
    """The noise measured in the released updates gives the ledger's epsilon; an understated sensitivity (100x
    less noise) shows as the epsilon that noise really gives."""
    recorder = Recorder("train")
    res = fs.Experiment(federation=fed, model="mlp", rounds=2, observers=[recorder],
                        privacy=LocalDP(clipping_norm=1.0, epsilon=2.0)).run()
    noise = np.concatenate([flat(weights_of(e.replies[h].content)) - flat(weights_of(e.sent[h].content))
                            for e in recorder.exchanges for h in e.replies])
    measured = float(noise.std())  # the clipped update (norm <= 1 over ~1,000 weights) is lost in it
    row = res.privacy.iloc[0]
    assert measured == pytest.approx(row.noise_multiplier * 1.0, rel=0.05)
    assert row.epsilon == pytest.approx(poisson_epsilon(measured / 2, [(1.0, 2)], row.delta), rel=0.1)
    understated = fs.Experiment(federation=fed, model="mlp", rounds=2,
                                privacy=LocalDP(clipping_norm=1.0, epsilon=2.0, sensitivity=0.02)).run()
    assert understated.privacy.epsilon.min() > 50 * row.epsilon
    assert understated.privacy.iloc[0].epsilon == pytest.approx(
        poisson_epsilon(row.noise_multiplier / 100 / 2, [(1.0, 2)], row.delta))


def test_pld_refuses_a_noise_it_cannot_account_in_bounded_memory(fed):
    with pytest.raises(ValueError, match=r"^privacy: dpsgd: accountant: pld cannot account noise_multiplier 0\.03"):
        fs.Experiment(federation=fed, privacy=DPSGD(0.03, accountant="pld"), privacy_budget=5.0)
    with pytest.raises(ValueError, match="^privacy: central_dp: accountant: pld has no sampling-without-"):
        fs.Experiment(federation=fed, fraction_train=0.5, privacy=CentralDP(1.0, accountant="pld"))
    tighter = fs.Experiment(federation=fed, model="logreg", rounds=2, privacy=DPSGD(1.0, accountant="pld")).run()
    loose = fs.Experiment(federation=fed, model="logreg", rounds=2, privacy=DPSGD(1.0)).run()
    assert (tighter.privacy.epsilon < loose.privacy.epsilon).all()  # PLD is the tighter bound of the two here
