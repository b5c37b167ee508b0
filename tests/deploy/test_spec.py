"""An Experiment travels as a plain JSON spec and comes back the same."""

import json

import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.deploy import experiment_fields, to_spec
from fedsim.models import MODELS


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=2, label_skew=0.5)


def test_round_trip_gives_the_same_config_and_the_same_weights(fed):
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=2, seed=3,
                               privacy=[{"name": "dpsgd", "noise_multiplier": 0.8}],
                               adversaries=[{"name": "sign_flip", "hospitals": [fed.hospitals[0]]}],
                               defenses=[{"name": "norm_bound"}], policies={"default": {"min_records": 10}})
    spec = json.loads(json.dumps(to_spec(experiment)))
    rebuilt = fs.Experiment(**experiment_fields(spec))
    assert rebuilt.config() == experiment.config()
    plain = experiment.replace(privacy=None, adversaries=None, defenses=None, policies=None)
    again = fs.Experiment(**experiment_fields(json.dumps(to_spec(plain))))
    for a, b in zip(plain.run().weights, again.run().weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_table_federation_travels_as_its_path(fed, tmp_path):
    table = tmp_path / "hospitals.csv"
    fed.data.drop(columns="split").to_csv(table, index=False)
    loaded = fs.Federation.from_dataframe(pd.read_csv(table), target=fed.target, site=fed.site)
    with pytest.raises(ValueError, match="^federation: built from an in-memory table"):
        to_spec(fs.Experiment(federation=loaded, model="logreg", rounds=1))
    spec = to_spec(fs.Experiment(federation=loaded, model="logreg", rounds=1),
                   federation={"path": str(table), "target": fed.target, "site": fed.site})
    again = experiment_fields(spec)["federation"]
    np.testing.assert_array_equal(again.x_train, loaded.x_train)


@pytest.mark.parametrize("change, field", [
    ({"model": MODELS["logreg"]}, "model"),
    ({"client_mods": [lambda message, context, call_next: call_next(message, context)]}, "client_mods"),
    ({"audit_key": b"0123456789abcdef0123456789abcdef"}, "audit_key"),
    ({"observers": [fs.attacks.GradientInversion(hospital="H001", round=1)]}, "observers: gradient_inversion scores"),
    ({"defenses": [fs.defenses.TrustScore()]}, "defenses: trust_score draws its root dataset"),
    ({"adversaries": [fs.adversaries.ModelReplacement(hospitals=["H001"])]}, "adversaries: model_replacement"),
])
def test_what_cannot_travel_is_refused_by_name(fed, change, field):
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=1)
    with pytest.raises(ValueError, match=f"^{field}"):
        to_spec(experiment.replace(**change))


def test_components_that_read_rows_at_the_server_say_why_they_cannot_travel(fed):
    """A Flower federation's server holds no hospital's rows: what needs them there says so and stays in-process."""
    reading = {c.name for family in fs.components.REGISTRY.values() for c in family.values() if c.server_reads_rows}
    assert reading == {"gradient_inversion", "trust_score", "model_replacement"}
    with pytest.raises(ValueError, match="the server of a Flower federation holds no hospital's rows; run it with "
                                         "engine='inprocess'"):
        to_spec(fs.Experiment(federation=fed, defenses=[fs.defenses.TrustScore()]))


def test_only_federated_preprocessing_travels(tmp_path):
    """No party of a Flower federation holds the pooled rows a pooled fit needs."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=1)
    spec = to_spec(fs.Experiment(federation=fed, model="logreg", rounds=1))
    assert spec["federation"]["synthetic"]["preprocessing"] == "federated"
    again = experiment_fields(json.dumps(spec))["federation"]
    assert again.preprocessor.fitting == "federated"
    np.testing.assert_array_equal(again.x_train, fed.x_train)
    pooled = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=1, preprocessing="pooled")
    with pytest.raises(ValueError, match="^federation.preprocessing: 'pooled' fits on every hospital's rows"):
        to_spec(fs.Experiment(federation=pooled, model="logreg", rounds=1))
    table = tmp_path / "hospitals.csv"
    fed.data.drop(columns="split").to_csv(table, index=False)
    loaded = fs.Federation.from_dataframe(pd.read_csv(table), target=fed.target, site=fed.site)
    experiment = fs.Experiment(federation=loaded, model="logreg", rounds=1)
    where = {"path": str(table), "target": fed.target, "site": fed.site}
    assert to_spec(experiment, federation=where)["federation"]["table"]["preprocessing"] == "federated"
    with pytest.raises(ValueError, match="^federation.preprocessing: 'pooled'; a Flower federation fits it"):
        to_spec(experiment, federation={**where, "preprocessing": "pooled"})
