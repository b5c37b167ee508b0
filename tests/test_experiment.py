import numpy as np
import pandas as pd
import pytest

import fedsim as fs


def test_fedavg_on_iid_hospitals_matches_centralized_training(iid_fed):
    fedavg = fs.Experiment(federation=iid_fed, rounds=12, learning_rate=0.1).run()
    pooled = fs.baselines.centralized(iid_fed, epochs=12, learning_rate=0.1)
    assert pooled.final("auroc") > 0.85
    assert abs(fedavg.final("auroc") - pooled.final("auroc")) < 0.02


def test_fedavg_beats_the_average_local_model_on_non_iid_hospitals(non_iid_fed):
    fedavg = fs.Experiment(federation=non_iid_fed, rounds=10, learning_rate=0.1).run()
    local = fs.baselines.local_only(non_iid_fed, epochs=10, learning_rate=0.1)
    assert fedavg.final("auroc") > local.final("auroc") + 0.03
    # Local-only rows: every hospital on its own test split, plus the global average.
    assert set(local.metrics.scope) == {"global", *non_iid_fed.hospitals}


def test_same_seed_gives_identical_metrics(small_fed):
    a = fs.Experiment(federation=small_fed, rounds=2, fraction_train=0.5, seed=3).run()
    b = fs.Experiment(federation=small_fed, rounds=2, fraction_train=0.5, seed=3).run()
    c = fs.Experiment(federation=small_fed, rounds=2, fraction_train=0.5, seed=4).run()
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    assert not a.metrics.value.equals(c.metrics.value)


def test_result_has_tidy_metrics_a_model_and_predictions(small_fed):
    res = fs.Experiment(federation=small_fed, rounds=2, model="logreg").run()
    assert list(res.metrics.columns) == ["round", "scope", "metric", "value"]
    assert set(res.metrics.metric) == {"auroc", "auprc", "accuracy", "loss", "brier"}
    assert set(res.metrics.scope) == {"global", *small_fed.hospitals}
    assert sorted(res.metrics["round"].unique()) == [0, 1, 2]
    raw = small_fed.data.drop(columns=[small_fed.target, small_fed.site, "split"]).head(50)
    risk = res.predict(raw)
    x = small_fed.preprocessor.transform(raw)
    assert risk.shape == (50,) and ((risk > 0) & (risk < 1)).all()
    assert np.allclose(res.model(x).numpy()[:, 0], np.log(risk / (1 - risk)), atol=1e-4)
    with pytest.raises(ValueError, match="^columns: missing"):
        res.predict(raw.drop(columns="age"))
    assert res.plot() is not None


@pytest.mark.parametrize("name", sorted(fs.STRATEGIES))
def test_every_named_strategy_builds(small_fed, name):
    fs.Experiment(federation=small_fed, strategy=name)


def test_fedprox_and_fedadam_train(small_fed):
    table = fs.compare({
        "FedProx": fs.Experiment(federation=small_fed, strategy="fedprox", rounds=2),
        "FedAdam": fs.Experiment(federation=small_fed, strategy="fedadam", rounds=2,
                                 strategy_options={"eta": 0.01}),
        "centralized": fs.baselines.centralized(small_fed, epochs=2),
    })
    assert list(table.columns) == ["run", "round", "scope", "metric", "value"]
    assert set(table.run) == {"FedProx", "FedAdam", "centralized"}
    final = table.query("scope == 'global' and metric == 'loss' and round == 2").set_index("run").value
    assert final.notna().all()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"strategy": "fedmagic"}, "strategy"),
        ({"model": "transformer"}, "model"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 2.5}, "rounds"),
        ({"fraction_train": 0.0}, "fraction_train"),
        ({"fraction_train": 1.5}, "fraction_train"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"local_steps": 0}, "local_steps"),
        ({"engine": "spark"}, "engine"),
        ({"evaluate_every": 0}, "evaluate_every"),
        ({"strategy_options": {"bogus": 1}}, "strategy_options"),
        ({"observers": [object()]}, "observers"),
        ({"federation": "icu"}, "federation"),
        ({"name": 123}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"client_mods": [1]}, "client_mods"),
        ({"strategy_options": [1]}, "strategy_options"),
        ({"seed": 2**32}, "seed"),
        ({"out": 3}, "out"),
        # sampling that cannot be met: refused now, not a run that waits forever
        ({"strategy_options": {"min_available_nodes": 10}}, "strategy"),
        ({"strategy_options": {"min_train_nodes": 7}}, "strategy"),
        ({"fraction_train": 1e-9, "strategy_options": {"min_train_nodes": 0}}, "fraction_train"),
        ({"strategy_options": {"fraction_train": 5.0}}, "strategy_options.fraction_train"),
        ({"strategy": "multikrum", "strategy_options": {"num_nodes_to_select": 0}},
         "strategy_options.num_nodes_to_select"),
        ({"strategy": "fedtrimmedavg", "strategy_options": {"beta": 0.5}}, "strategy_options.beta"),
    ],
)
def test_bad_settings_raise_naming_the_field(small_fed, changes, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        fs.Experiment(**{"federation": small_fed, **changes})


def test_an_out_that_is_a_file_is_refused_and_numpy_integers_are_fine(small_fed, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ValueError, match="^out: .* is a file"):
        fs.Experiment(federation=small_fed, out=tmp_path / "taken")
    exp = fs.Experiment(federation=small_fed, rounds=np.int64(2), batch_size=np.int32(16), seed=np.uint8(3))
    assert (exp.rounds, exp.batch_size, exp.seed) == (2, 16, 3) and type(exp.rounds) is int
    one = fs.Experiment(federation=small_fed, observers=fs.attacks.GradientInversion(steps=5))
    assert len(one.observers) == 1


def test_evaluate_every_skips_rounds_but_keeps_first_and_last(small_fed):
    res = fs.Experiment(federation=small_fed, rounds=5, evaluate_every=2).run()
    assert sorted(res.metrics["round"].unique()) == [0, 2, 4, 5]


def test_local_steps_caps_the_work_per_round(small_fed):
    class Steps(fs.RoundObserver):
        seen = []

        def on_exchange(self, exchange):
            self.seen += [c["metrics"]["local_steps"] for c in exchange.updates().values()]

    fs.Experiment(federation=small_fed, rounds=1, local_steps=1, observers=[Steps()]).run()
    assert Steps.seen == [1] * small_fed.n_hospitals


def test_a_run_builds_its_plan_once(monkeypatch):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=0)
    exp = fs.Experiment(federation=fed, rounds=1, privacy=fs.privacy.DPSGD(noise_multiplier=1.0), noise_seed=0)
    built = []
    original = fs.Experiment.build_plan
    monkeypatch.setattr(fs.Experiment, "build_plan", lambda self: built.append(1) or original(self))
    res = exp.run()
    assert len(built) == 1
    assert res.config == exp.config() and res.config["client_training"]["dpsgd-noise"] == 1.0
