"""`generate`: a federation of virtual hospitals with synthetic inpatient cohorts."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import scm
from .cards import ScenarioCard, load_card
from .knobs import (
    KNOBS,
    MAX_HOSPITALS,
    MAX_PATIENTS,
    MAX_SEED,
    MIN_PATIENTS,
    chosen_hospitals,
    hospital_streams,
    hospital_table,
)

STREAMS = KNOBS  # federation-level: one stream per knob (hospital_table); patients: per hospital


@dataclass(frozen=True, eq=False)
class Cohort:
    """Patients (one row each), hospitals (one row each, with realised knob values) and the card."""

    patients: pd.DataFrame
    hospitals: pd.DataFrame
    card: ScenarioCard
    knobs: dict[str, float]


def generate(scenario: str | ScenarioCard, n_hospitals: int = 20, n_patients: int | None = None,
             seed: int = 0, hospitals=None, **knobs: float) -> Cohort:
    """Generate `n_patients` (default 800 per hospital) patients across `n_hospitals` hospitals.

    Knobs (see KNOBS) are 0 for IID hospitals, 1 for the documented "strong" level; default: the card's.
    ``hospitals``: indices of the hospitals whose patients to generate (default
    all); each hospital draws its patients from its own streams, so hospital
    ``i`` alone has the same rows as in the whole federation. The hospitals
    table always describes every hospital (their sizes and realised knobs).
    """
    card = scenario if isinstance(scenario, ScenarioCard) else load_card(scenario)
    n_hospitals = _integer("n_hospitals", n_hospitals, minimum=1, maximum=MAX_HOSPITALS)
    seed = _integer("seed", seed, minimum=0, maximum=MAX_SEED)
    n_patients = _patients(n_patients, n_hospitals, per_hospital=800, maximum=MAX_PATIENTS)
    knobs = {name: _knob(name, value) for name, value in {**card.knobs, **knobs}.items()}
    chosen = chosen_hospitals(hospitals, n_hospitals)

    rngs = dict(zip(STREAMS, map(np.random.default_rng, np.random.SeedSequence(seed).spawn(len(STREAMS)))))
    table = hospital_table(rngs, n_hospitals, n_patients, knobs)
    sizes = table["n_patients"].to_numpy()[chosen]
    idx = np.repeat(chosen, sizes)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    own = [hospital_streams(seed, i, ("patients", "missingness")) for i in chosen]

    def per_patient(column):
        return table[column].to_numpy(np.float32)[idx]

    def per_hospital(draw):
        """One draw per patient, each hospital's from its own stream."""
        return np.concatenate([draw(streams, hi - lo) for streams, lo, hi in zip(own, bounds[:-1], bounds[1:])])

    mix = table[["p_emergency", "p_elective", "p_transfer"]].to_numpy(np.float32)[idx]
    age, comorbidity = scm.MEDIAN_AGE + per_patient("age_shift"), per_patient("comorbidity_shift")
    parts = [scm.simulate(streams["patients"], age[lo:hi], mix[lo:hi], comorbidity[lo:hi])
             for streams, lo, hi in zip(own, bounds[:-1], bounds[1:])]
    v = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    protocol = table["protocol"].to_numpy()[idx]
    multipliers = {
        term: np.where(protocol, np.float32(m ** knobs["concept_shift"]), np.float32(1))
        for term, m in card.protocol.multipliers.items()
    }
    logit = scm.outcome_logit(v, card.intercept + per_patient("intercept_shift"), card.coefficients, multipliers)
    target = (v["outcome_uniform"] < scm.expit(logit)).astype(np.int8)

    _record(v, table, idx)
    if knobs["missingness"] > 0:
        _blank(v, table, idx, per_hospital)

    columns = {"hospital": pd.Categorical.from_codes(idx, categories=table["hospital"])}
    for name in scm.VARIABLES:
        if name in card.numeric_features:
            columns[name] = v[name]
    for name, categories in scm.CATEGORIES.items():
        if name in card.categorical_features:
            columns[name] = pd.Categorical.from_codes(v[name], categories=categories)
    columns[card.target] = target
    return Cohort(pd.DataFrame(columns), table, card, knobs)


def _record(v, hospitals, idx):
    """Recorded values: hospital calibration offsets (vitals) and gains (labs), rounded and clipped."""
    for name in scm.MEASURED:
        var = scm.VARIABLES[name]
        if name in scm.VITALS:
            x = v[name] + hospitals[f"offset_{name}"].to_numpy(np.float32)[idx]
        else:
            x = v[name] * hospitals[f"gain_{name}"].to_numpy(np.float32)[idx]
        v[name] = np.clip(np.round(x, var.decimals), var.low, var.high)
    v["age"] = np.floor(v["age"])
    for name in scm.COMORBIDITIES:
        v[name] = v[name].astype(np.int8)


def _blank(v, hospitals, idx, per_hospital):
    """NaN for labs a hospital does not measure and for sporadically missing vitals and labs.

    ``per_hospital(draw)``: one value per patient, ``draw(streams, n)`` giving each hospital's n."""
    rate = hospitals["missing_rate"].to_numpy(np.float32)[idx]
    unmeasured = hospitals["unmeasured"].str.get_dummies(sep=",").reindex(columns=scm.MEASURED, fill_value=0)
    for name in scm.MEASURED:
        off = unmeasured[name].to_numpy(bool)[idx]
        u = per_hospital(lambda streams, n: streams["missingness"].random(n, dtype=np.float32))
        v[name][off | (u < rate)] = np.nan


def _integer(field, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{field}: must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{field}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}: must be <= {maximum}, got {value}")
    return int(value)


def _patients(n_patients, n_hospitals, per_hospital, maximum):
    """``n_patients`` checked (``per_hospital`` each by default), at most ``maximum`` (a memory cap)."""
    n = per_hospital * n_hospitals if n_patients is None else _integer(
        "n_patients", n_patients, minimum=MIN_PATIENTS * n_hospitals)
    if n > maximum:
        default = f" ({per_hospital} per hospital by default)" if n_patients is None else ""
        raise ValueError(f"n_patients: must be <= {maximum} (a memory cap), got {n}{default}")
    return n


def _knob(name, value):
    if name not in KNOBS:
        raise ValueError(f"unknown knob {name!r}; allowed knobs: {list(KNOBS)}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


def calibrated_intercept(card: ScenarioCard, n_patients: int = 200_000, seed: int = 0) -> float:
    """The intercept giving card.prevalence at all knobs 0 (how the cards' intercepts were set)."""
    n = n_patients
    mix = np.tile(np.float32(scm.ADMISSION_MIX), (n, 1))
    v = scm.simulate(np.random.default_rng(seed), np.full(n, scm.MEDIAN_AGE, np.float32), mix, np.zeros(n, np.float32))
    z = scm.outcome_logit(v, 0.0, card.coefficients).astype(np.float64)
    lo, hi = -20.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if scm.expit(z + mid).mean() < card.prevalence else (lo, mid)
    return round((lo + hi) / 2, 3)
