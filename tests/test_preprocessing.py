"""Federated preprocessing: the pooled fit's parameters from per-hospital summary statistics only."""

import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.federation import Preprocessor, federation, hospital_statistics

SHIFTED = dict(missingness=1.0, covariate_shift=1.0, measurement_shift=1.0, quantity_skew=1.0)


def _same_inputs(pooled: fs.Federation, federated: fs.Federation) -> None:
    assert (pooled.preprocessor.fitting, federated.preprocessor.fitting) == ("pooled", "federated")
    assert federated.feature_names == pooled.feature_names
    np.testing.assert_allclose(federated.x_train, pooled.x_train, rtol=0, atol=1e-6)
    np.testing.assert_allclose(federated.x_test, pooled.x_test, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scenario", ["icu_mortality", "readmission_30d"])
def test_federated_preprocessing_gives_the_pooled_model_inputs(scenario):
    settings = dict(n_hospitals=5, n_patients=1500, seed=4, **SHIFTED)
    pooled = fs.synthetic_federation(scenario, preprocessing="pooled", **settings)
    federated = fs.synthetic_federation(scenario, **settings)  # the default
    assert pooled.preprocessor.flagged and pooled.preprocessor.categorical  # missing values and categories
    _same_inputs(pooled, federated)
    assert (pooled.provenance["preprocessing"], federated.provenance["preprocessing"]) == ("pooled", "federated")


def test_federated_preprocessing_of_a_table_with_uneven_columns(mixed_table):
    rng = np.random.default_rng(1)
    east = mixed_table.site == "east"
    table = mixed_table.assign(
        lactate=mixed_table.lactate.where(~east),  # one hospital never measures it
        ward=mixed_table.ward.where(~east, "burns").where(rng.random(len(mixed_table)) > 0.1),  # its own category
        constant=7.0, empty=np.nan,
        big=1e6 + rng.normal(0, 1, len(mixed_table)))  # a large mean beside a unit spread
    args = dict(target="outcome", site="site", positive="died", seed=3)
    pooled = fs.Federation.from_dataframe(table, preprocessing="pooled", **args)
    federated = fs.Federation.from_dataframe(table, **args)
    assert "ward=burns" in pooled.feature_names and "empty_missing" in pooled.feature_names
    _same_inputs(pooled, federated)


def test_the_federated_fit_sees_one_hospitals_training_rows_at_a_time(mixed_table, monkeypatch):
    seen = []

    def spy(train, features):
        seen.append((set(train.site), set(train.split), len(train)))
        return hospital_statistics(train, features)

    def pooled_fit(*args):
        raise AssertionError("the pooled fit ran")

    monkeypatch.setattr(federation, "hospital_statistics", spy)
    monkeypatch.setattr(Preprocessor, "__init__", pooled_fit)
    fed = fs.Federation.from_dataframe(mixed_table, target="outcome", site="site", preprocessing="federated")
    assert seen == [({h}, {"train"}, n) for h, n in zip(fed.hospitals, np.diff(fed.train_offsets))]


def test_from_statistics_on_per_hospital_statistics_equals_the_pooled_fit(mixed_table):
    features = ["age", "ward", "lactate"]
    train = mixed_table.iloc[:500]
    pooled = Preprocessor(train, features)
    federated = Preprocessor.from_statistics(
        features, [hospital_statistics(rows, features) for _, rows in train.groupby("site")])
    np.testing.assert_allclose(federated.mean, pooled.mean, rtol=1e-12)
    np.testing.assert_allclose(federated.std, pooled.std, rtol=1e-12)
    assert (federated.flagged, federated.categories) == (pooled.flagged, pooled.categories)
    disagreeing = hospital_statistics(train.assign(age=train.age.astype(str)), features)
    with pytest.raises(ValueError, match="^statistics: hospitals disagree"):
        Preprocessor.from_statistics(features, [hospital_statistics(train, features), disagreeing])
    with pytest.raises(ValueError, match="^features: column 'x' .*the standard deviation overflows float64"):
        Preprocessor.from_statistics(["x"], [hospital_statistics(pd.DataFrame({"x": [1e308]}), ["x"])] * 2)


def test_a_bad_preprocessing_value_is_refused_by_name(mixed_table):
    with pytest.raises(ValueError, match="^preprocessing: must be one of 'pooled', 'federated', got 'local'"):
        fs.Federation.from_dataframe(mixed_table, target="outcome", site="site", preprocessing="local")
    with pytest.raises(ValueError, match="^preprocessing: must be one of"):
        fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, preprocessing=None)
    with pytest.raises(ValueError, match="^preprocessing: 'lesion_scans' keeps pixels as they are"):
        fs.synthetic_federation("lesion_scans", n_hospitals=3, n_patients=300, preprocessing="pooled")


@pytest.mark.parametrize("preprocessing, words", [
    ("federated", "the server sees: per column, the hospital's counts of values and of missing values, their "
                  "means and variances (sums and sums of squares), and the set of categories it has"),
    ("pooled", "fitted on the pooled training records of all hospitals, which a real deployment cannot do"),
])
def test_the_report_says_how_the_preprocessor_was_fitted(preprocessing, words, tmp_path):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=0, preprocessing=preprocessing)
    res = fs.Experiment(federation=fed, model="logreg", rounds=1, out=tmp_path).run()
    text = fs.governance.report(res.audit_path.parent)["markdown"].read_text(encoding="utf-8")
    assert words in " ".join(text.split())
