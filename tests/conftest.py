"""Shared, session-scoped federations: building them once keeps the suite fast."""

import numpy as np
import pandas as pd
import pytest

import fedsim as fs

STRONG_NON_IID = dict(quantity_skew=1.0, label_skew=1.0, covariate_shift=1.0,
                      measurement_shift=1.0, missingness=1.0, concept_shift=1.0)


@pytest.fixture(autouse=True, scope="session")
def results_in_a_temporary_folder(tmp_path_factory):
    """Audit logs of runs without ``out`` go to one temporary folder, not /tmp at large; so does the study cache
    (a fresh one per session: no run of an earlier session is reused)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDSIM_RESULTS", str(tmp_path_factory.mktemp("results")))
    mp.setenv("FEDSIM_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def iid_fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=6000, seed=0)


@pytest.fixture(scope="session")
def non_iid_fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=6000, seed=0, **STRONG_NON_IID)


@pytest.fixture(scope="session")
def small_fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1200, seed=1)


@pytest.fixture()
def mixed_table():
    """A user's own table: numeric, string and missing values, three sites."""
    rng = np.random.default_rng(0)
    n = 600
    age = rng.normal(60, 12, n)
    ward = rng.choice(["icu", "surgery", "medicine"], n)
    lactate = rng.lognormal(0.3, 0.5, n)
    lactate[rng.random(n) < 0.2] = np.nan
    risk = 0.05 * (age - 60) + 0.8 * np.nan_to_num(lactate, nan=1.3) + (ward == "icu")
    outcome = np.where(risk + rng.normal(0, 1, n) > 2.2, "died", "survived")
    return pd.DataFrame({"age": age, "ward": ward, "lactate": lactate,
                         "site": rng.choice(["north", "south", "east"], n), "outcome": outcome})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """Under ``pytest -n 2`` (pytest-xdist), tests that start Flower's own runtimes (SuperLink, SuperNodes, the
    simulation runtime) run one after another on one worker: two federations at once would compete for the
    same cores."""
    for item in items:
        if item.path.name == "test_deployment.py" or "deployment.ipynb" in item.name:
            item.add_marker(pytest.mark.xdist_group("flower_runtimes"))
