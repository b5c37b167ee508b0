"""Gradient inversion: records and scans come back out of one update, and defenses push them back."""

import numpy as np
import pytest

import fedsim as fs
from fedsim.attacks import invert_gradient, psnr, recover_labels, ssim, true_gradient, update_as_gradient
from fedsim.attacks.scores import decode, match, record_scores
from fedsim.engine.messages import replace_weights, weights_of
from fedsim.models import cnn, mlp
from fedsim.privacy.sparsify import sparsify
from fedsim.training import DPTraining, trainer_for


def test_a_tabular_record_comes_back_from_one_gradient(small_fed):
    fed = small_fed
    weights = trainer_for(mlp, fed.n_features).initial_weights(0)
    low, high = fed.x_train.min(0), fed.x_train.max(0) + 1e-6
    for i in range(5):
        x, y = fed.x_train[i : i + 1], fed.y_train[i : i + 1]
        found = invert_gradient("mlp", weights, true_gradient("mlp", weights, x, y), fed.n_features,
                                method="idlg", steps=500, input_range=(low, high), seed=i)
        scores = record_scores(found.x, x, fed)
        assert found.labels.tolist() == y.tolist()
        # Every numeric feature within 5% of its range; sex and admission type exact.
        assert scores["max_rel_error"] < 0.05, scores
        assert scores["categorical_match"] == 1.0


def test_decode_returns_the_original_record(small_fed):
    fed = small_fed
    records = decode(fed.preprocessor, fed.x_train[:20])
    original = fed.data[fed.data["split"] == "train"].head(20).reset_index(drop=True)
    measured = original["age"].notna()
    assert np.allclose(records["age"][measured], original["age"][measured], atol=1e-3)
    assert (records["admission_type"] == original["admission_type"].astype(str)).all()


def test_labels_come_from_the_sign_of_the_bias_gradient():
    assert recover_labels([np.zeros(3), np.array([-0.2])]).tolist() == [1.0]
    assert recover_labels([np.zeros(3), np.array([0.3])]).tolist() == [0.0]
    # A batch of 4 with mean risk 0.5 and bias gradient 0.5 - 3/4: three positives.
    assert recover_labels([np.zeros(3), np.array([-0.25])], batch_size=4, mean_risk=0.5).sum() == 3


def test_one_sgd_step_reveals_the_gradient():
    trainer = trainer_for(mlp, 5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 5)).astype(np.float32), np.array([0, 1, 1, 0], np.float32)
    weights = trainer.initial_weights(0)
    new, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=4, learning_rate=0.1, rng=rng)
    for a, b in zip(update_as_gradient(weights, new, 0.1), true_gradient(mlp, weights, x, y)):
        assert np.allclose(a, b, atol=1e-5)


def test_image_scores():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32))
    assert ssim(image, image) == pytest.approx(1.0)
    assert psnr(image, np.clip(image + 0.01, 0, 1)) > 39
    assert ssim(image, rng.random((32, 32))) < 0.2
    assert match(np.array([[1.0, 1], [0, 0]]), np.array([[0.0, 0], [5, 5], [1, 1]])).tolist() == [2, 0]


def test_dpsgd_trains_convolutions_with_per_example_clipping():
    trainer = trainer_for(cnn, 1024)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 1024), dtype=np.float32), (rng.random(32) < 0.5).astype(np.float32)
    weights = trainer.initial_weights(0)
    plain, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1, rng=np.random.default_rng(1))
    # A clip no gradient reaches and no noise, on plain SGD's batches (shuffled, all full): exactly plain SGD.
    loose, _, _ = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1,
                              rng=np.random.default_rng(1), dp=DPTraining(1e6, 0.0, "shuffle"))
    assert max(np.abs(a - b).max() for a, b in zip(plain, loose)) < 1e-5
    # A tight clip bounds each step: the update is at most lr * clip per step (full batches).
    tight, _, steps = trainer.fit(weights, x, y, epochs=1, batch_size=8, learning_rate=0.1,
                                  rng=np.random.default_rng(1), dp=DPTraining(0.01, 0.0, "shuffle"))
    moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(tight, weights)))
    assert moved <= 0.1 * 0.01 * steps + 1e-6


def test_sparsify_keeps_the_largest_entries():
    update = [np.array([[0.1, -5.0], [0.2, 3.0]]), np.array([-0.3, 4.0])]
    kept = sparsify(update, keep=0.5)
    assert np.count_nonzero(np.concatenate([k.ravel() for k in kept])) == 3
    assert kept[0][0, 1] == -5.0 and kept[0][0, 0] == 0.0 and kept[1][1] == 4.0


@pytest.mark.parametrize("make, field", [
    (lambda: fs.attacks.GradientInversion(method="magic"), "method"),
    (lambda: fs.attacks.GradientInversion(target="everyone"), "target"),
    (lambda: fs.attacks.GradientInversion(round=0), "round"),
    (lambda: fs.privacy.Sparsify(keep=0), "keep"),
    (lambda: fs.attacks.MembershipInference(n_shadows=3), "n_shadows"),
])
def test_bad_attack_settings_raise_naming_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        make()


def test_bad_gradients_are_refused(small_fed):
    weights = trainer_for(mlp, small_fed.n_features).initial_weights(0)
    gradient = [np.zeros_like(w) for w in weights]
    with pytest.raises(ValueError, match="^gradient: expected arrays"):
        invert_gradient("mlp", weights, gradient[:-1], small_fed.n_features)
    gradient[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="^gradient: contains NaN"):
        invert_gradient("mlp", weights, gradient, small_fed.n_features)


@pytest.fixture(scope="module")
def scans():
    return fs.synthetic_federation("lesion_scans", n_hospitals=4, n_patients=400, seed=0)


def attacked(fed, steps=500, **changes):
    """One round of batch-1, one-step FedAvg with the curious server inverting hospital 1's update."""
    settings = {"model": "cnn", "rounds": 1, "batch_size": 1, "local_steps": 1, "learning_rate": 0.05,
                "observers": [fs.attacks.GradientInversion(hospital=1, round=1, steps=steps)], **changes}
    res = fs.Experiment(federation=fed, **settings).run()
    return res, res.attacks.set_index("metric")["value"]


def test_idlg_recovers_the_label_of_every_single_scan(scans):
    trainer = trainer_for(cnn, scans.n_features)
    weights = trainer.initial_weights(0)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(scans.y_train), 20, replace=False)
    assert 0 < scans.y_train[picks].sum() < 20  # both labels among the 20 trials
    for i in picks:
        gradient = true_gradient(cnn, weights, scans.x_train[i : i + 1], scans.y_train[i : i + 1])
        assert recover_labels(gradient)[0] == scans.y_train[i]


def test_one_plain_update_gives_the_scan_back(scans):
    res, scores = attacked(scans)
    assert scores["psnr"] >= 25 and scores["ssim"] > 0.9 and scores["label_accuracy"] == 1.0
    assert scores["psnr"] > scores["psnr_prior"] + 10  # far beyond guessing the average scan
    record = res.tables["reconstructions"].iloc[0]
    assert record["reconstruction"].shape == (scans.n_features,) and record["hospital"] == scans.hospitals[1]
    assert psnr(record["reconstruction"], record["original"]) == pytest.approx(scores["psnr"], abs=1e-3)


def test_dpsgd_noise_pushes_the_reconstruction_back(scans):
    _, plain = attacked(scans)
    _, private = attacked(scans, privacy=fs.privacy.DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0))
    assert plain["psnr"] - private["psnr"] >= 10


def test_secagg_server_attacks_the_aggregate(scans):
    with pytest.raises(ValueError, match="^target: under SecAgg"):
        attacked(scans, rounds=2, privacy=fs.privacy.SecAgg())
    inversion = fs.attacks.GradientInversion(hospital=1, round=1, steps=300, target="aggregate")
    res = fs.Experiment(federation=scans, model="cnn", rounds=2, batch_size=1, local_steps=1, learning_rate=0.05,
                        privacy=fs.privacy.SecAgg(), observers=[inversion]).run()
    scores = res.attacks.set_index("metric")["value"]
    _, plain = attacked(scans, steps=300)
    assert scores["psnr"] < plain["psnr"] - 10


def test_mitigations_are_compared_on_leakage_and_utility(scans):
    experiment = fs.Experiment(federation=scans, model="cnn", rounds=1, batch_size=1, local_steps=1)
    comparison = fs.studies.compare_mitigations(
        experiment, fs.attacks.GradientInversion(hospital=0, steps=300),
        {"none": {}, "sparsify 1%": {"privacy": fs.privacy.Sparsify(keep=0.01)}, "batch 16": {"batch_size": 16}},
        utility={"batch_size": 16, "local_steps": None, "rounds": 2})
    table = comparison.table()
    assert list(table.columns) == ["mitigation", "attack", "hospital", "round", "metric", "value", "auroc"]
    psnrs = table[table.metric == "psnr"].set_index("mitigation")["value"]
    assert psnrs["none"] > psnrs["sparsify 1%"] + 5 and psnrs["none"] > psnrs["batch 16"] + 5
    # AUROC comes from the utility runs: a full local epoch of batch 16, two rounds.
    assert comparison.utility["none"].config["batch_size"] == 16 and comparison.utility["none"].config["rounds"] == 2
    auroc = table.groupby("mitigation").auroc.first()
    assert auroc["none"] == comparison.utility["none"].final("auroc") and auroc["none"] == auroc["batch 16"]
    assert comparison.plot_reconstructions().axes and comparison.plot().axes


def test_the_curious_server_inverts_a_tabular_update(small_fed):
    inversion = fs.attacks.GradientInversion(hospital="H001", method="idlg", steps=500)
    res = fs.Experiment(federation=small_fed, model="mlp", rounds=1, batch_size=1, local_steps=1,
                        observers=[inversion]).run()
    scores = res.attacks.set_index("metric")["value"]
    assert scores["label_accuracy"] == 1.0 and scores["max_rel_error"] < 0.05
    assert {"mean_rel_error", "categorical_match", "rel_error[age]"} <= set(scores.index)


def test_a_multi_step_update_is_inverted_as_an_average_gradient(scans):
    spy = fs.attacks.GradientInversion(hospital=2, steps=200, batch_size=3)
    res = fs.Experiment(federation=scans, model="cnn", rounds=1, batch_size=1, local_steps=3,
                        observers=[spy]).run()
    records = res.tables["reconstructions"]
    assert len(records) == 3 and records.hospital.eq(scans.hospitals[2]).all()
    scores = res.attacks.set_index("metric")["value"]
    assert np.isfinite(scores["psnr"]) and 0 <= scores["label_accuracy"] <= 1


def test_the_audit_log_keeps_attack_scores_but_no_reconstructed_records(scans):
    res, _ = attacked(scans, steps=50)
    logged = [e for e in fs.governance.read(res.audit_path) if e["kind"] == "result"][0]["data"]["tables"]
    assert "reconstructions" not in logged
    assert {row["metric"] for row in logged["attacks"]} >= {"psnr", "ssim", "label_accuracy"}


def test_the_risk_report_states_the_measured_leakage(scans, tmp_path):
    attacked(scans, steps=50, out=tmp_path)
    with open(fs.governance.report(tmp_path)["markdown"], encoding="utf-8") as report:
        text = report.read()
    row = next(line for line in text.splitlines() if "| update leakage |" in line)
    assert f"gradient inversion (geiping) on {scans.hospitals[1]}, round 1" in row and "PSNR" in row


def _nan_from_hospital_1(message, context, call_next):
    reply = call_next(message, context)
    if message.metadata.message_type == "train" and context.node_config["partition-id"] == 1:
        weights = weights_of(reply.content)
        weights[0][0, 0] = np.nan
        replace_weights(reply.content, weights)
    return reply


def test_an_update_the_attack_cannot_use_is_a_recorded_failure_not_a_crash(scans):
    # Hospital 1 sends NaN: the validator keeps it out of aggregation, the attack on it records why it failed.
    res, _ = attacked(scans, steps=10, client_mods=[_nan_from_hospital_1])
    row = res.attacks.set_index("metric").loc["failed"]
    assert "NaN" in row["details"] and res.metrics["round"].max() == 1
    assert (res.participation.event == "rejected").sum() == 1
