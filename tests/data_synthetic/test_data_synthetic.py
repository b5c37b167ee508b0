"""Tests for the data_synthetic package: API, determinism, the SCM and every heterogeneity knob."""

import dataclasses
import subprocess
import sys
from functools import cache

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import data_synthetic as ds
from data_synthetic import datasheet
from data_synthetic.generator import calibrated_intercept

VITALS = ["heart_rate", "systolic_bp", "resp_rate", "spo2", "temperature"]
LABS = ["creatinine", "lactate", "wbc", "glucose", "hemoglobin"]
COMORBIDITIES = ["diabetes", "hypertension", "ckd", "copd", "heart_failure"]


@cache
def _gen(scenario="icu_mortality", **knobs):
    return ds.generate(scenario, n_hospitals=20, seed=0, **knobs)


def gen(scenario="icu_mortality", **knobs):
    """Cached cohort; callers only read it."""
    return _gen(scenario, **knobs)


def hospital_rates(cohort, column):
    return cohort.patients.groupby("hospital", observed=True)[column].mean()


def log_odds_ratio(y, exposed, unexposed):
    p1, p0 = y[exposed].mean(), y[unexposed].mean()
    return np.log(p1 / (1 - p1)) - np.log(p0 / (1 - p0))


def test_public_api_and_cards():
    assert ds.list_scenarios() == ["icu_mortality", "readmission_30d"]
    assert ds.KNOBS == ("quantity_skew", "label_skew", "covariate_shift", "measurement_shift", "missingness",
                        "concept_shift")
    card = ds.load_card("icu_mortality")
    assert (card.target, card.prevalence) == ("died_in_hospital", 0.10)
    assert ds.load_card("readmission_30d").target == "readmitted_30d"
    assert card.knobs == dict.fromkeys(ds.KNOBS, 0.0)
    assert card.categorical_features == ("sex", "admission_type")
    assert len(card.numeric_features) == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.target = "x"


@pytest.mark.parametrize("scenario", ["icu_mortality", "readmission_30d"])
def test_intercept_is_calibrated_to_the_prevalence(scenario):
    card = ds.load_card(scenario)
    assert abs(calibrated_intercept(card) - card.intercept) < 0.02


@pytest.mark.parametrize("scenario, low, high", [("icu_mortality", 0.08, 0.12), ("readmission_30d", 0.13, 0.17)])
def test_prevalence(scenario, low, high):
    for seed in (0, 1, 2):
        cohort = ds.generate(scenario, n_hospitals=10, seed=seed)
        assert low < cohort.patients[cohort.card.target].mean() < high


def test_columns_dtypes_and_ranges():
    cohort = gen()
    p = cohort.patients
    assert list(p.columns) == ["hospital", "age", *COMORBIDITIES, *VITALS, *LABS, "sex", "admission_type",
                               "died_in_hospital"]
    assert len(p) == 16000
    for column in ["age", *VITALS, *LABS]:
        assert p[column].dtype == np.float32, column
    for column in [*COMORBIDITIES, "died_in_hospital"]:
        assert p[column].dtype == np.int8 and set(p[column].unique()) == {0, 1}, column
    assert list(p["sex"].cat.categories) == ["F", "M"]
    assert list(p["admission_type"].cat.categories) == ["emergency", "elective", "transfer"]
    assert p["age"].between(18, 100).all() and (p["age"] % 1 == 0).all()
    assert p["spo2"].between(60, 100).all() and p["lactate"].between(0.3, 20).all()
    assert 60 < p["age"].mean() < 66 and 0.45 < (p["sex"] == "F").mean() < 0.51
    assert 0.6 < (p["admission_type"] == "emergency").mean() < 0.7
    # the SCM's documented directions
    assert p.groupby("ckd")["creatinine"].median().diff().iloc[-1] > 0.5
    assert p.groupby("copd")["spo2"].mean().diff().iloc[-1] < -1
    assert p.groupby("diabetes")["glucose"].mean().diff().iloc[-1] > 30
    assert p.groupby("ckd")["hemoglobin"].mean().diff().iloc[-1] < -1
    assert p.groupby(p["age"] > 70)["heart_failure"].mean().diff().iloc[-1] > 0.1
    y = p["died_in_hospital"]
    assert log_odds_ratio(y, p["lactate"] > 4, p["lactate"] < 2) > 2


def test_hospital_ids_and_table():
    h = gen().hospitals
    assert list(h["hospital"]) == [f"H{i:03d}" for i in range(20)]
    assert list(gen().patients["hospital"].cat.categories) == list(h["hospital"])
    assert h["n_patients"].sum() == 16000
    assert set(h["kind"]) == {"community"}
    assert {"intercept_shift", "age_shift", "p_emergency", "comorbidity_shift", "offset_heart_rate",
            "gain_lactate", "unmeasured", "missing_rate", "protocol"} <= set(h.columns)
    assert ds.generate("icu_mortality", n_hospitals=1, n_patients=20).hospitals["hospital"].tolist() == ["H000"]
    wide = ds.generate("icu_mortality", n_hospitals=1001, n_patients=20020).hospitals["hospital"]
    assert (wide.iloc[0], wide.iloc[-1]) == ("H0000", "H1000")


def test_determinism():
    a = ds.generate("readmission_30d", n_hospitals=5, seed=7, **dict.fromkeys(ds.KNOBS, 1.0))
    b = ds.generate("readmission_30d", n_hospitals=5, seed=7, **dict.fromkeys(ds.KNOBS, 1.0))
    c = ds.generate("readmission_30d", n_hospitals=5, seed=8, **dict.fromkeys(ds.KNOBS, 1.0))
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.hospitals, b.hospitals)
    assert not a.patients["age"].equals(c.patients["age"])
    assert not a.hospitals["intercept_shift"].equals(c.hospitals["intercept_shift"])


def test_all_knobs_zero_gives_homogeneous_hospitals():
    cohort = gen()
    p, h = cohort.patients, cohort.hospitals
    assert not p.isna().any().any()
    assert (h["n_patients"] == 800).all() and not h["protocol"].any() and (h["unmeasured"] == "").all()
    assert (h.filter(regex="^(intercept_shift|age_shift|comorbidity_shift|offset_|missing_rate)") == 0).all().all()
    assert (h.filter(like="gain_") == 1).all().all()
    table = pd.crosstab(p["hospital"], p["died_in_hospital"])
    assert stats.chi2_contingency(table).pvalue > 0.01
    for column in ["age", "heart_rate", "lactate"]:
        assert stats.f_oneway(*[g.to_numpy() for _, g in p.groupby("hospital", observed=True)[column]]).pvalue > 0.01


def test_quantity_skew():
    sizes = gen(quantity_skew=1.0).hospitals["n_patients"]
    assert sizes.sum() == 16000 and sizes.min() >= 20
    assert sizes.max() / sizes.min() > 10
    assert {"academic", "community", "rural"} == set(gen(quantity_skew=1.0).hospitals["kind"])
    stronger = gen(quantity_skew=2.0).hospitals["n_patients"]
    assert stronger.max() / stronger.min() > sizes.max() / sizes.min()
    assert ds.generate("icu_mortality", n_hospitals=3, n_patients=61).hospitals["n_patients"].sum() == 61


def test_label_skew_changes_only_the_outcome():
    prevalence = hospital_rates(gen(label_skew=1.0), "died_in_hospital")
    assert prevalence.min() < 0.06 and prevalence.max() > 0.2
    stronger = hospital_rates(gen(label_skew=2.0), "died_in_hospital")
    assert stronger.std() > prevalence.std()
    base, skewed = gen().patients, gen(label_skew=1.0).patients
    pd.testing.assert_frame_equal(base.drop(columns="died_in_hospital"), skewed.drop(columns="died_in_hospital"))
    # higher intercept shift, higher prevalence
    shift = gen(label_skew=1.0).hospitals.set_index("hospital")["intercept_shift"]
    assert stats.spearmanr(shift, prevalence[shift.index]).statistic > 0.8


def test_covariate_shift():
    cohort = gen(covariate_shift=1.0)
    ages = hospital_rates(cohort, "age")
    assert ages.max() - ages.min() > 15
    emergency = cohort.patients.groupby("hospital", observed=True)["admission_type"].apply(
        lambda s: (s == "emergency").mean())
    assert emergency.max() - emergency.min() > 0.4
    comorbid = hospital_rates(cohort, "heart_failure")
    assert comorbid.max() > 2 * comorbid.min()
    assert stats.spearmanr(cohort.hospitals["age_shift"], ages).statistic > 0.8


def test_measurement_shift_biases_recorded_values_only():
    base, shifted = gen(), gen(measurement_shift=1.0)
    means = hospital_rates(shifted, "heart_rate")
    assert means.max() - means.min() > 10
    groups = [g.to_numpy() for _, g in shifted.patients.groupby("hospital", observed=True)["heart_rate"]]
    assert stats.f_oneway(*groups).pvalue < 1e-10
    untouched = ["hospital", "age", *COMORBIDITIES, "sex", "admission_type", "died_in_hospital"]
    pd.testing.assert_frame_equal(base.patients[untouched], shifted.patients[untouched])
    difference = means - hospital_rates(base, "heart_rate")
    offset = shifted.hospitals.set_index("hospital")["offset_heart_rate"]
    np.testing.assert_allclose(difference[offset.index], offset, atol=0.6)
    ratio = hospital_rates(shifted, "creatinine") / hospital_rates(base, "creatinine")
    gain = shifted.hospitals.set_index("hospital")["gain_creatinine"]
    np.testing.assert_allclose(ratio[gain.index], gain, rtol=0.02)


def test_missingness():
    assert not gen().patients.isna().any().any()
    base, cohort = gen().patients, gen(missingness=1.0)
    p, h = cohort.patients, cohort.hospitals
    off = h[h["unmeasured"] != ""]
    assert len(off) >= 1 and off["unmeasured"].str.contains("lactate").any()
    for hospital, labs in zip(off["hospital"], off["unmeasured"]):
        rows = p["hospital"] == hospital
        for lab in labs.split(","):
            assert p.loc[rows, lab].isna().all()
    missing = p.isna()
    assert not missing.drop(columns=VITALS + LABS).any().any()
    assert 0.03 < missing[VITALS].to_numpy().mean() < 0.15
    pd.testing.assert_frame_equal(base.where(~missing), p)  # values only disappear
    weaker = gen(missingness=0.5).patients.isna()
    assert (missing | ~weaker).all().all() and weaker.to_numpy().sum() < missing.to_numpy().sum()


def test_concept_shift_changes_the_outcome_at_protocol_hospitals_only():
    base, shifted = gen(), gen(concept_shift=1.0)
    protocol_ids = shifted.hospitals.loc[shifted.hospitals["protocol"], "hospital"]
    assert len(protocol_ids) == 10 and not base.hospitals["protocol"].any()
    at_protocol = base.patients["hospital"].isin(protocol_ids)
    pd.testing.assert_frame_equal(base.patients[~at_protocol], shifted.patients[~at_protocol])

    def lactate_log_or(patients, rows):
        lactate, y = patients.loc[rows, "lactate"], patients.loc[rows, "died_in_hospital"]
        return log_odds_ratio(y, lactate > 3, lactate < 1.5)

    before = lactate_log_or(base.patients, at_protocol) - lactate_log_or(base.patients, ~at_protocol)
    after = lactate_log_or(shifted.patients, at_protocol) - lactate_log_or(shifted.patients, ~at_protocol)
    assert abs(before) < 0.3 and after < -0.5

    # The same patients (common random numbers) with and without transitional care at the protocol hospitals:
    # heart failure's log odds ratio of readmission drops (its coefficient 0.7 is multiplied by 0.3 there).
    usual, cared = gen("readmission_30d").patients, gen("readmission_30d", concept_shift=1.0).patients
    rows, hf = cared["hospital"].isin(protocol_ids), cared["heart_failure"] == 1
    y, y_cared = usual["readmitted_30d"], cared["readmitted_30d"]
    assert log_odds_ratio(y_cared[rows], hf[rows], ~hf[rows]) < log_odds_ratio(y[rows], hf[rows], ~hf[rows]) - 0.25
    assert (y_cared[~rows] == y[~rows]).all()


OWNED = {
    "label_skew": ["intercept_shift"],
    "covariate_shift": ["age_shift", "p_emergency", "p_elective", "p_transfer", "comorbidity_shift"],
    "measurement_shift": ["offset_heart_rate", "offset_spo2", "gain_lactate", "gain_glucose"],
    "missingness": ["unmeasured", "missing_rate"],
    "concept_shift": ["protocol"],
}


@pytest.mark.parametrize("knob", ds.KNOBS)
def test_one_knob_leaves_the_other_knobs_draws_alone(knob):
    strong = dict.fromkeys(ds.KNOBS, 1.0)
    a = ds.generate("icu_mortality", n_hospitals=30, seed=3, **strong).hospitals
    b = ds.generate("icu_mortality", n_hospitals=30, seed=3, **{**strong, knob: 0.0}).hospitals
    for owner, columns in OWNED.items():
        if owner != knob and not (knob == "quantity_skew" and owner == "missingness"):  # unmeasured follows kind
            pd.testing.assert_frame_equal(a[columns], b[columns])
    changed = ["n_patients"] if knob == "quantity_skew" else OWNED[knob][:1]
    assert not a[changed].equals(b[changed])


def test_custom_card():
    card = ds.load_card("icu_mortality")
    louder = dataclasses.replace(card, intercept=card.intercept + 1.0)
    assert ds.generate(louder, n_hospitals=5).patients["died_in_hospital"].mean() > 0.15
    with pytest.raises(ValueError, match="coefficients.*not_a_term"):
        dataclasses.replace(card, coefficients={"not_a_term": 1.0})


@pytest.mark.parametrize("kwargs, field", [
    ({"scenario": "sepsis"}, "scenario"),
    ({"scenario": 3}, "scenario"),
    ({"label_skw": 1.0}, "label_skw"),
    ({"label_skew": -0.1}, "label_skew"),
    ({"missingness": float("nan")}, "missingness"),
    ({"concept_shift": "strong"}, "concept_shift"),
    ({"n_hospitals": 0}, "n_hospitals"),
    ({"n_hospitals": 2.0}, "n_hospitals"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"seed": -1}, "seed"),
    ({"n_hospitals": 10, "n_patients": 199}, "n_patients"),
    ({"seed": 2**32}, "seed: must be <= 4294967295"),
    ({"n_hospitals": 100_001}, "n_hospitals: must be <= 100000"),
    ({"n_hospitals": 100_000}, r"n_patients: must be <= 5000000 \(a memory cap\), got 80000000 \(800 per hospital"),
    ({"n_hospitals": 2, "n_patients": 5_000_001}, "n_patients: must be <= 5000000"),
])
def test_errors_name_the_field(kwargs, field):
    kwargs = {"scenario": "icu_mortality", **kwargs}
    with pytest.raises(ValueError, match=field) as error:
        ds.generate(**kwargs)
    if field == "scenario":
        assert "icu_mortality" in str(error.value) and "readmission_30d" in str(error.value)
    if field == "label_skw":
        assert "quantity_skew" in str(error.value) and "concept_shift" in str(error.value)
    with pytest.raises(ValueError, match="scenario"):
        ds.load_card("sepsis")


def test_does_not_import_tensorflow_or_flower():
    code = ("import sys, data_synthetic as ds; ds.generate('icu_mortality', n_hospitals=2, missingness=1.0);"
            "import data_synthetic.datasheet;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'flwr', 'keras', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_datasheet_stats_in_sync():
    text = datasheet.PATH.read_text(encoding="utf-8")
    section = text.split(datasheet.BEGIN)[1].split(datasheet.END)[0]
    assert section.strip() == datasheet.stats_markdown().strip(), "run: python -m data_synthetic.datasheet"


def test_one_million_patients_across_ten_thousand_hospitals():
    cohort = ds.generate("readmission_30d", n_hospitals=10_000, n_patients=1_000_000, seed=0,
                         **dict.fromkeys(ds.KNOBS, 1.0))
    assert cohort.patients.shape == (1_000_000, 20)
    assert cohort.hospitals.shape[0] == 10_000 and cohort.hospitals["hospital"].iloc[-1] == "H9999"
    assert cohort.hospitals["n_patients"].min() >= 20
    assert cohort.patients.memory_usage(deep=True).sum() < 80e6


@pytest.mark.parametrize("scenario", ["icu_mortality", "readmission_30d"])
def test_one_hospital_is_generated_alone_with_its_rows_in_the_federation(scenario):
    knobs = dict.fromkeys(ds.KNOBS, 1.0)
    whole = ds.generate(scenario, n_hospitals=6, seed=11, **knobs)
    for i in (0, 4):
        alone = ds.generate(scenario, n_hospitals=6, seed=11, hospitals=[i], **knobs)
        mine = whole.patients[whole.patients.hospital == f"H{i:03d}"].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone.patients, mine)
        pd.testing.assert_frame_equal(alone.hospitals, whole.hospitals)  # every hospital's parameters, no rows
    both = ds.generate(scenario, n_hospitals=6, seed=11, hospitals=[4, 1], **knobs).patients
    assert sorted(both.hospital.unique()) == ["H001", "H004"] and len(both) == whole.hospitals.n_patients[[1, 4]].sum()
    scans = ds.generate_scans(n_hospitals=4, seed=2)
    alone = ds.generate_scans(n_hospitals=4, seed=2, hospitals=[2])
    np.testing.assert_array_equal(alone.images, scans.images[(scans.patients.hospital == "H002").to_numpy()])


@pytest.mark.parametrize("hospitals, words", [
    ([6], r"expected indices 0 \.\. 5, got \[6\]"), ([], "got none"), ("H001", "expected a list"), ([True], "True"),
])
def test_a_bad_hospital_choice_is_refused_by_name(hospitals, words):
    with pytest.raises(ValueError, match=f"^hospitals: .*{words}"):
        ds.generate("icu_mortality", n_hospitals=6, hospitals=hospitals)
