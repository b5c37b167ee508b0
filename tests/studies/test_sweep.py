import math

import numpy as np
import pytest

import fedsim as fs
from fedsim.privacy import DPSGD, CentralDP
from fedsim.studies import describe


def test_sweep_is_tidy_cached_and_plots(small_fed, tmp_path, monkeypatch):
    exp = fs.Experiment(federation=small_fed, model="logreg", rounds=2, learning_rate=0.1)
    settings = [None, DPSGD(noise_multiplier=1.0), [DPSGD(noise_multiplier=2.0), CentralDP(noise_multiplier=0.5)]]
    table = fs.sweep(exp, privacy=settings, seeds=[0, 1], cache=tmp_path)
    assert list(table.columns) == ["technique", "parameters", "seed", "scope", "metric", "value", "epsilon", "unit",
                                   "seconds"]
    assert set(table.technique) == {"none", "DPSGD", "DPSGD + CentralDP"}
    assert len(table) == 3 * 2 * (1 + small_fed.n_hospitals) * 5
    glob = table[(table.scope == "global") & (table.metric == "auroc")]
    assert glob[glob.technique == "none"].epsilon.eq(math.inf).all()
    dp = glob[glob.technique == "DPSGD"]
    assert np.isfinite(dp.epsilon).all() and (dp.unit == "record").all()
    assert set(glob[glob.technique == "DPSGD + CentralDP"].unit) == {"hospital/record"}
    assert (table.seconds > 0).all()

    # A second sweep reads every run from the cache.
    monkeypatch.setattr(fs.Experiment, "run", lambda self: pytest.fail("ran instead of reading the cache"))
    again = fs.sweep(exp, privacy=settings, seeds=[0, 1], cache=tmp_path)
    assert again.equals(table)

    assert fs.plots.privacy_utility(table) is not None
    assert fs.plots.privacy_cost_by_hospital(table, small_fed) is not None


def test_two_settings_of_one_technique_are_two_runs(small_fed, tmp_path):
    exp = fs.Experiment(federation=small_fed, model="logreg", rounds=1, learning_rate=0.1)
    table = fs.sweep(exp, privacy=[DPSGD(noise_multiplier=1.0), DPSGD(noise_multiplier=4.0)], cache=tmp_path)
    glob = table[(table.scope == "global") & (table.metric == "auroc")].set_index("parameters")
    assert list(glob.index) == ["", "noise_multiplier=4.0"]
    assert glob.epsilon[""] > 2 * glob.epsilon["noise_multiplier=4.0"]  # more noise, less epsilon


def test_describe_names_the_technique_and_its_settings():
    assert describe(None) == ("none", "")
    assert describe(DPSGD(noise_multiplier=2.0)) == ("DPSGD", "noise_multiplier=2.0")


def test_sweep_rejects_bad_arguments(small_fed):
    exp = fs.Experiment(federation=small_fed)
    with pytest.raises(ValueError, match="^privacy:"):
        fs.sweep(exp, privacy=DPSGD())
    with pytest.raises(ValueError, match="^seeds:"):
        fs.sweep(exp, privacy=[None], seeds=[])
