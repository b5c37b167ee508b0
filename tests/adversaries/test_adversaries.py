"""Malicious hospitals: what each attack sends, and what it does to FedAvg and robust aggregators."""

import numpy as np
import pytest

import fedsim as fs
from fedsim.engine.messages import claimed_examples, flat, weights_of
from tests.recording import Recorder

A = fs.adversaries


def _experiment(fed, **kw):
    return fs.Experiment(federation=fed, **{"learning_rate": 0.1, "seed": 0, "rounds": 5, **kw})


def test_sign_flipping_breaks_fedavg_and_a_robust_aggregator_holds(iid_fed):
    """Done-when: 20 % sign-flippers cost FedAvg >= 0.1 AUROC; a robust aggregator stays within 0.03.

    Two flippers of ten outweigh the eight honest hospitals once each sends more than 4x its update reversed
    (2 x 6 > 8); at the default 4x the mean update cancels out and FedAvg only stalls."""
    attack = A.SignFlip(hospitals=0.2, scale=6.0)
    clean = _experiment(iid_fed).run().final("auroc")
    attacked = _experiment(iid_fed, adversaries=attack).run().final("auroc")
    robust = {
        "fedmedian": _experiment(iid_fed, strategy="fedmedian", adversaries=attack).run().final("auroc"),
        "krum": _experiment(iid_fed, strategy="krum", strategy_options={"num_malicious_nodes": 2},
                            adversaries=attack).run().final("auroc"),
    }
    print(f"clean FedAvg {clean:.4f}, sign-flipped FedAvg {attacked:.4f}, robust {robust}")
    assert clean - attacked >= 0.1
    assert min(abs(clean - auroc) for auroc in robust.values()) <= 0.03


def test_model_replacement_backdoor_beats_fedavg_not_norm_bounding(iid_fed):
    """Done-when: one hospital's backdoor succeeds > 80 % under FedAvg, < 20 % with norm bounding."""
    attack = A.ModelReplacement(hospitals=["H003"])
    clean = _experiment(iid_fed, rounds=8).run()
    fedavg = _experiment(iid_fed, rounds=8, adversaries=attack, defenses=fs.defenses.UpdateValidator.off()).run()
    bounded = _experiment(iid_fed, rounds=8, adversaries=attack, defenses=fs.defenses.NormBound()).run()
    success = {name: res.tables["backdoor"].backdoor_success.iloc[-1] for name, res in
               {"fedavg": fedavg, "normbound": bounded}.items()}
    print(f"backdoor success {success}; AUROC clean {clean.final():.4f}, normbound {bounded.final():.4f}")
    assert success["fedavg"] > 0.8
    assert success["normbound"] < 0.2
    assert abs(clean.final("auroc") - bounded.final("auroc")) <= 0.03
    assert list(fedavg.adversaries.hospital) == ["H003"]
    assert list(fedavg.tables["backdoor"]["round"]) == list(range(1, 9))


def test_adversaries_are_chosen_by_id_or_by_a_seeded_fraction(small_fed):
    by_id = _experiment(small_fed, rounds=1, adversaries=A.FreeRider(hospitals=["H001", "H002"])).run()
    assert list(by_id.adversaries.hospital) == ["H001", "H002"]
    assert fs.Experiment(federation=small_fed, rounds=1).run().adversaries.empty
    picks = [set(_experiment(small_fed, rounds=1, seed=seed, adversaries=A.FreeRider(hospitals=0.5))
                 .run().adversaries.hospital) for seed in (0, 0, 1)]
    assert len(picks[0]) == 2 and picks[0] == picks[1]


def test_bad_settings_name_the_field(small_fed):
    with pytest.raises(ValueError, match="hospitals"):
        A.SignFlip(hospitals=1.5)
    with pytest.raises(ValueError, match="hospitals"):
        A.SignFlip(hospitals=[])
    with pytest.raises(ValueError, match="scale"):
        A.SignFlip(scale=-1)
    with pytest.raises(ValueError, match="poison_fraction"):
        A.ModelReplacement(poison_fraction=0)
    with pytest.raises(ValueError, match="adversaries"):
        fs.Experiment(federation=small_fed, adversaries=["not a component"])
    with pytest.raises(ValueError, match="hospitals: unknown"):
        _experiment(small_fed, rounds=1, adversaries=A.SignFlip(hospitals=["H999"])).run()
    with pytest.raises(ValueError, match="trigger"):
        _experiment(small_fed, rounds=1, adversaries=A.ModelReplacement(trigger={"no such feature": 1.0})).run()


def test_what_each_malicious_hospital_sends(small_fed):
    """Free rider, sign flip, inflated claim, noise: each reply checked against the round's global weights."""
    adversaries = [A.FreeRider(hospitals=["H000"]), A.SignFlip(hospitals=["H001"], scale=2.0),
                   A.InflatedClaim(hospitals=["H002"], factor=10), A.GaussianNoise(hospitals=["H003"], std=0.5)]
    recorder = Recorder("train")
    _experiment(small_fed, rounds=2, adversaries=adversaries, observers=[recorder],
                defenses=fs.defenses.UpdateValidator.off()).run()
    for exchange in recorder.exchanges:
        sent = flat(weights_of(exchange.sent["H000"].content))
        reply = {h: exchange.replies[h].content for h in small_fed.hospitals}
        assert np.array_equal(flat(weights_of(reply["H000"])), sent)  # free rider: the global model back
        noise = flat(weights_of(reply["H003"])) - sent
        assert 0.45 < noise.std() < 0.55
        assert claimed_examples(reply["H002"]) == 10 * len(small_fed.train_rows(2)[1])
        assert exchange.rejected == {}


def test_sign_flip_reverses_the_honest_update(small_fed):
    honest, flipped = Recorder("train"), Recorder("train")
    _experiment(small_fed, rounds=1, observers=[honest]).run()
    _experiment(small_fed, rounds=1, observers=[flipped], adversaries=A.SignFlip(hospitals=["H001"], scale=3.0)).run()
    g = flat(weights_of(honest.exchanges[0].sent["H001"].content))
    u = flat(weights_of(honest.exchanges[0].replies["H001"].content)) - g
    v = flat(weights_of(flipped.exchanges[0].replies["H001"].content)) - g
    assert np.allclose(v, -3.0 * u, atol=1e-5)


@pytest.mark.parametrize("omniscient", [False, True])
def test_colluders_craft_their_updates_from_honest_ones(small_fed, omniscient):
    """IPM sends -epsilon * the mean honest update; omniscient colluders use the honest hospitals' own."""
    recorder = Recorder("train")
    _experiment(small_fed, rounds=2, observers=[recorder],
                adversaries=A.IPM(hospitals=["H000", "H001"], epsilon=0.5, omniscient=omniscient)).run()
    exchange = recorder.exchanges[-1]
    g = flat(weights_of(exchange.sent["H000"].content))
    sent = {h: flat(weights_of(exchange.replies[h].content)) - g for h in small_fed.hospitals}
    assert np.allclose(sent["H000"], sent["H001"], atol=1e-6)  # colluders agree
    if omniscient:
        expected = -0.5 * np.mean([sent["H002"], sent["H003"]], axis=0)
        assert np.allclose(sent["H000"], expected, atol=1e-5)


def test_alie_stays_close_to_the_honest_updates(small_fed):
    recorder = Recorder("train")
    _experiment(small_fed, rounds=1, observers=[recorder],
                adversaries=A.ALIE(hospitals=["H000", "H001"], omniscient=True, z=1.0)).run()
    exchange = recorder.exchanges[0]
    g = flat(weights_of(exchange.sent["H000"].content))
    honest = np.stack([flat(weights_of(exchange.replies[h].content)) - g for h in ("H002", "H003")])
    crafted = flat(weights_of(exchange.replies["H000"].content)) - g
    assert np.allclose(crafted, honest.mean(0) - honest.std(0), atol=1e-5)


def test_label_flip_poisons_the_training_data(small_fed):
    """Every hospital flipping its labels teaches the model the opposite ranking."""
    res = _experiment(small_fed, rounds=3, adversaries=A.LabelFlip(hospitals=1.0)).run()
    assert res.final("auroc") < 0.4


def test_attacks_are_deterministic_for_a_seed(small_fed):
    runs = [_experiment(small_fed, rounds=2, adversaries=[A.GaussianNoise(hospitals=0.25),
                                                          A.ModelReplacement(hospitals=0.25)]).run()
            for _ in range(2)]
    assert runs[0].metrics.equals(runs[1].metrics)
    assert runs[0].tables["backdoor"].equals(runs[1].tables["backdoor"])
