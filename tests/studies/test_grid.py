"""The one study runner: every study cached and resumable, any field varied."""

import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.experiment import Experiment
from fedsim.studies import cache_key, run_grid


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=800, seed=0)


@pytest.fixture()
def runs(monkeypatch):
    """How many times Experiment.run really ran."""
    count = {"n": 0}
    real = Experiment.run

    def counting(self):
        count["n"] += 1
        return real(self)

    monkeypatch.setattr(Experiment, "run", counting)
    return count


def test_a_grid_runs_each_cell_once_and_resumes_from_its_cache(fed, tmp_path, runs):
    base = fs.Experiment(federation=fed, model="logreg", rounds=2, privacy=fs.privacy.DPSGD(1.0))
    grid = {"slow": base.replace(learning_rate=0.01), "fast": base.replace(learning_rate=0.1)}
    first = run_grid(grid, seeds=[0, 1], cache=tmp_path)
    assert runs["n"] == 4 and not any(t.cached for t in first)
    again = run_grid(grid, seeds=[0, 1], cache=tmp_path)
    assert runs["n"] == 4 and all(t.cached for t in again)
    for a, b in zip(first, again, strict=True):
        assert (a.label, a.seed, a.seconds) == (b.label, b.seed, b.seconds)
        pd.testing.assert_frame_equal(a.result.metrics, b.result.metrics)
        pd.testing.assert_frame_equal(a.result.privacy, b.result.privacy)
        assert all(np.array_equal(x, y) for x, y in zip(a.result.weights, b.result.weights, strict=True))
    # A grid stopped halfway: the cells done are reused, the others run.
    grid["medium"] = base.replace(learning_rate=0.05)
    resumed = run_grid(grid, seeds=[0, 1], cache=tmp_path)
    assert runs["n"] == 6 and [t.cached for t in resumed] == [True] * 4 + [False] * 2


def test_pieces_settings_cannot_describe_always_run(fed, tmp_path, runs):
    def mod(message, context, call_next):
        return call_next(message, context)

    own = fs.Experiment(federation=fed, model="logreg", rounds=1, client_mods=[mod])
    assert cache_key(own) is None and cache_key(own.replace(client_mods=())) is not None
    run_grid({"own": own}, cache=tmp_path)
    run_grid({"own": own}, cache=tmp_path)
    assert runs["n"] == 2


def test_every_study_is_a_view_over_the_cached_runner(fed, tmp_path, runs):
    base = fs.Experiment(federation=fed, model="logreg", rounds=2, learning_rate=0.1)
    table = fs.compare({"a": base, "b": base.replace(strategy="fedprox")}, cache=tmp_path)
    assert runs["n"] == 2
    pd.testing.assert_frame_equal(table, fs.compare({"a": base, "b": base.replace(strategy="fedprox")},
                                                    cache=tmp_path))
    bench = dict(attacks={"flip": fs.adversaries.SignFlip(hospitals=0.25)}, federation=fed, model="logreg",
                 rounds=2, cache=tmp_path)
    fs.evaluate_defense("fedmedian", **bench)
    assert runs["n"] == 4
    pd.testing.assert_frame_equal(fs.evaluate_defense("fedmedian", **bench).drop(columns="time_s"),
                                  fs.evaluate_defense("fedmedian", **bench).drop(columns="time_s"))
    assert runs["n"] == 4
    swept = fs.sweep(base, learning_rate=[0.05, 0.1], strategy=["fedavg", "fedprox"], cache=tmp_path)
    assert {"learning_rate", "strategy"} <= set(swept.columns)
    assert set(zip(swept.learning_rate, swept.strategy)) == {(lr, s) for lr in (0.05, 0.1) for s in ("fedavg",
                                                                                                       "fedprox")}
    assert runs["n"] == 4 + 4  # each run's name is part of its key: "a" is not "learning_rate=0.1 strategy=fedavg"
    fs.sweep(base, learning_rate=[0.05, 0.1], strategy=["fedavg", "fedprox"], cache=tmp_path)
    assert runs["n"] == 8


def test_a_leakage_study_keeps_its_reconstructions_through_the_cache(tmp_path, runs):
    scans = fs.synthetic_federation("lesion_scans", n_hospitals=3, n_patients=240, seed=0)
    worst = fs.Experiment(federation=scans, model="cnn", rounds=1, batch_size=1, local_steps=1)
    spy = fs.attacks.GradientInversion(hospital=1, steps=30)
    first = fs.attacks.compare_defenses(worst, spy, {"none": {}}, cache=tmp_path)
    again = fs.attacks.compare_defenses(worst, spy, {"none": {}}, cache=tmp_path)
    assert runs["n"] == 1
    pd.testing.assert_frame_equal(first.table(), again.table())
    record = again.attacked["none"].tables["reconstructions"].iloc[0]
    assert np.allclose(record["reconstruction"], first.attacked["none"].tables["reconstructions"].iloc[0][
        "reconstruction"])
    assert again.plot_reconstructions() is not None


def test_bad_grids_name_the_field(fed):
    with pytest.raises(ValueError, match="^experiments: give a non-empty"):
        run_grid({})
    with pytest.raises(ValueError, match="^seeds: must be a non-empty list of integers >= 0"):
        run_grid({"a": fs.Experiment(federation=fed, rounds=1)}, seeds=[-1])
    with pytest.raises(ValueError, match="^vary: 'federation' is not an Experiment field that can vary"):
        fs.sweep(fs.Experiment(federation=fed, rounds=1), federation=[fed])
    with pytest.raises(ValueError, match="^learning_rate: give a non-empty list"):
        fs.sweep(fs.Experiment(federation=fed, rounds=1), learning_rate=0.1)
