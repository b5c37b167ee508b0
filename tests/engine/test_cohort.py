"""The cohort engine gives the numbers the per-hospital path gives, with every mod, wrapper and observer."""

import numpy as np
import pytest

import fedsim as fs
from fedsim.cohort import CohortTrainer, Task, cohort_form
from fedsim.engine.cohort import batch_slot
from fedsim.models import cnn, logreg, mlp
from fedsim.training import DPTraining, expected_batch, local_batches, noise_draws, trainer_for


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=6, n_patients=1800, seed=5, quantity_skew=1.0)


def _close(a, b, tolerance=1e-5):
    return all(np.max(np.abs(x - y)) <= tolerance * max(1.0, float(np.max(np.abs(x)))) for x, y in zip(a, b))


CASES = {
    "FedAvg": {},
    "FedProx": {"strategy": "fedprox", "strategy_options": {"proximal_mu": 0.5}},
    "FedAvg, 3 local epochs, capped steps": {"local_epochs": 3, "local_steps": 20},
    # With ReLU units, a pre-activation a rounding error away from 0 can switch a unit's gradient on in
    # one path and off in the other (seen once in ~10,000 noisy DP-SGD steps): the run-level comparison
    # uses logistic regression, the step-level one below the MLP.
    "DP-SGD": {"privacy": fs.privacy.DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0), "model": "logreg"},
    "sign flip": {"adversaries": fs.adversaries.SignFlip(hospitals=["H001"])},
    "ALIE, omniscient": {"adversaries": fs.adversaries.ALIE(hospitals=["H002"], omniscient=True)},
    "backdoor training longer": {"adversaries": fs.adversaries.ModelReplacement(hospitals=["H003"], local_epochs=3),
                                 "defenses": fs.defenses.UpdateValidator.off()},
    "dropout": {"availability": fs.availability.Dropout(0.3)},
    "SecAgg+": {"privacy": fs.privacy.SecAgg()},
    "central DP, half sampled": {"privacy": fs.privacy.CentralDP(noise_multiplier=0.5), "fraction_train": 0.5},
    "local DP": {"privacy": fs.privacy.LocalDP(epsilon=10.0)},
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_cohort_engine_equals_the_per_hospital_path(fed, case):
    run = fs.Experiment(federation=fed, rounds=3, learning_rate=0.2, noise_seed=5, **{"model": "mlp", **CASES[case]})
    cohort, alone = run.run(), run.replace(engine="sequential").run()
    merged = cohort.metrics.merge(alone.metrics, on=["round", "scope", "metric"])
    assert len(merged) == len(cohort.metrics)
    tolerance = 1e-4 if case == "SecAgg+" else 1e-5  # SecAgg+ quantizes: one grid step is ~4e-6
    assert np.allclose(merged.value_x, merged.value_y, atol=tolerance, rtol=0, equal_nan=True)
    assert _close(cohort.weights, alone.weights, tolerance)
    assert cohort.participation.equals(alone.participation)
    if not cohort.privacy.empty:
        assert cohort.privacy.epsilon.tolist() == alone.privacy.epsilon.tolist()
    again = run.run()  # same seed, identical numbers
    assert all(np.array_equal(a, b) for a, b in zip(cohort.weights, again.weights))


@pytest.mark.parametrize("model_fn, dp", [(mlp, None), (mlp, (1.0, 0.8)), (logreg, None), (logreg, (0.5, 1.0))])
def test_one_cohort_pass_is_each_hospitals_pass(fed, model_fn, dp):
    """Unequal sizes, padded idle hospitals, partial last batches (DP-SGD: Poisson batches of any size, empty ones
    included): each hospital as if trained alone."""
    trainer = trainer_for(model_fn, fed.n_features)
    start = trainer.initial_weights(1)
    dp = None if dp is None else DPTraining(*dp)
    tasks, alone = [], []
    for i in range(fed.n_hospitals):
        x, y = fed.train_rows(i)
        rng = np.random.default_rng([9, i])
        order, bounds = local_batches(len(x), 2, 32, rng, dp=dp)
        noise = noise_draws(rng, len(bounds) - 1, trainer.n_parameters) if dp else None
        tasks.append(Task(start, x, y, order, bounds, 0.1, 0.0, noise, expected_batch(len(x), 32) if dp else None))
        alone.append(trainer.fit(start, x, y, epochs=2, batch_size=32, learning_rate=0.1,
                                 rng=np.random.default_rng([9, i]), dp=dp))
    slot = batch_slot(32, max(int(np.diff(t.bounds).max()) for t in tasks))
    together = CohortTrainer(model_fn, fed.n_features, cohort=8, batch=slot).fit(tasks, dp)
    for (w1, loss1, steps1), (w2, loss2, steps2) in zip(alone, together):
        assert steps1 == steps2 and abs(loss1 - loss2) < 1e-5 and _close(w1, w2)


def test_convolutions_train_as_a_cohort():
    scans = fs.synthetic_federation("lesion_scans", n_hospitals=3, n_patients=240, seed=0)
    assert cohort_form(cnn, scans.n_features) is None
    run = fs.Experiment(federation=scans, model="cnn", rounds=2, batch_size=8, learning_rate=0.05)
    assert _close(run.run().weights, run.replace(engine="sequential").run().weights)


def test_a_model_without_a_cohort_form_trains_alone_with_a_notice(fed, caplog):
    from fedsim._tf import tf

    def with_dropout(n):
        return tf.keras.Sequential([tf.keras.Input((n,)), tf.keras.layers.Dense(8, activation="relu"),
                                    tf.keras.layers.Dropout(0.0), tf.keras.layers.Dense(1)])

    assert "Dropout" in cohort_form(with_dropout, fed.n_features)
    run = fs.Experiment(federation=fed, model=with_dropout, rounds=2, learning_rate=0.2)
    with caplog.at_level("WARNING", logger="fedsim"):
        res = run.run()
    assert all(np.array_equal(a, b) for a, b in zip(res.weights, run.replace(engine="sequential").run().weights))
    assert res.final("auroc") > res.metrics.query("round == 0 and scope == 'global' and metric == 'auroc'").value[0]
    assert any("one after another" in r.message for r in caplog.records)
