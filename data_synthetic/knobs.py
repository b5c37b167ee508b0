"""Hospital heterogeneity knobs: per-hospital parameters drawn from one stream per knob.

Each knob scales fixed standard draws, so a knob at 0 gives identical hospitals
and changing one knob leaves every other knob's draws untouched. The reference
scales below are what a knob value of 1.0 means.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .scm import ADMISSION_MIX, LABS, MEDIAN_AGE, VITALS

KNOBS = ("quantity_skew", "label_skew", "covariate_shift", "measurement_shift", "missingness", "concept_shift")

MIN_PATIENTS = 20  # per hospital
MAX_HOSPITALS = 100_000  # memory caps: generating MAX_PATIENTS peaks at about 1 GB
MAX_PATIENTS = 5_000_000
MAX_SEED = 2**32 - 1
ZIPF_EXPONENT = 1.0  # size ~ rank ** -(exponent * quantity_skew)
INTERCEPT_SD = 0.9  # outcome log-odds shift
AGE_SHIFT_SD = 7.0  # years, shift of the median age
ADMISSION_LOGIT_SD = 0.8  # shift of each admission type's log-odds
COMORBIDITY_SHIFT_SD = 0.5  # shared shift of every comorbidity's log-odds
OFFSET_SD = {"heart_rate": 5.0, "systolic_bp": 8.0, "resp_rate": 2.0, "spo2": 1.5, "temperature": 0.3}  # units
GAIN_SD = {"creatinine": 0.10, "lactate": 0.15, "wbc": 0.08, "glucose": 0.08, "hemoglobin": 0.05}  # log scale
P_UNMEASURED = {"creatinine": 0.04, "lactate": 0.35, "wbc": 0.04, "glucose": 0.04, "hemoglobin": 0.04}
KIND_FACTOR = {"academic": 0.25, "community": 1.0, "rural": 2.5}  # multiplies P_UNMEASURED
MISSING_RATE = 0.05  # median share of sporadically missing vitals and labs
MISSING_RATE_SPREAD = 0.5  # log-normal sd of that share across hospitals
PROTOCOL_SHARE = 0.5  # share of hospitals (rounded up) that run the scenario's care protocol
PATIENT_STREAMS = 1_000  # spawn key of the per-hospital patient streams (above any knob stream's index)


def hospital_streams(seed: int, hospital: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Hospital ``hospital``'s own random streams, one per name: they draw its patients and nothing else.

    They are children of the seed apart from the federation-level knob streams
    (spawn key ``(PATIENT_STREAMS, hospital)``), so any one hospital is generated
    without drawing, or holding, the others' patients.
    """
    root = np.random.SeedSequence(seed, spawn_key=(PATIENT_STREAMS, hospital))
    return dict(zip(names, map(np.random.default_rng, root.spawn(len(names)))))


def chosen_hospitals(hospitals, n_hospitals: int) -> list[int]:
    """The sorted hospital indices to generate (``None``: all of them), checked."""
    if hospitals is None:
        return list(range(n_hospitals))
    if isinstance(hospitals, (str, bytes)) or not hasattr(hospitals, "__iter__"):
        raise ValueError(f"hospitals: expected a list of hospital indices, got {hospitals!r}")
    picked = list(hospitals)
    bad = [h for h in picked if isinstance(h, bool) or not isinstance(h, numbers.Integral)
           or not 0 <= h < n_hospitals]
    if bad or not picked:
        raise ValueError(f"hospitals: expected indices 0 .. {n_hospitals - 1}, got {bad[:3] or 'none'}")
    return sorted({int(h) for h in picked})


def hospital_ids(n_hospitals: int) -> list[str]:
    width = max(3, len(str(n_hospitals - 1)))
    return [f"H{i:0{width}d}" for i in range(n_hospitals)]


def hospital_sizes(rng: np.random.Generator, n_hospitals: int, n_patients: int, skew: float) -> np.ndarray:
    """Zipf-like sizes (random rank per hospital), at least MIN_PATIENTS each, summing to n_patients."""
    weight = (rng.permutation(n_hospitals) + 1.0) ** -(ZIPF_EXPONENT * skew)
    quota = (n_patients - MIN_PATIENTS * n_hospitals) * weight / weight.sum()
    sizes = np.floor(quota).astype(np.int64)
    left = n_patients - MIN_PATIENTS * n_hospitals - int(sizes.sum())
    sizes[np.argsort(sizes - quota, kind="stable")[:left]] += 1  # largest remainders
    return sizes + MIN_PATIENTS


def hospital_table(rngs: dict[str, np.random.Generator], n_hospitals: int, n_patients: int,
                   knobs: dict[str, float]) -> pd.DataFrame:
    """One row per hospital with its size, kind and every realised knob parameter."""
    h = n_hospitals
    sizes = hospital_sizes(rngs["quantity_skew"], h, n_patients, knobs["quantity_skew"])
    mean = n_patients / h
    kind = np.where(sizes >= 2 * mean, "academic", np.where(sizes <= mean / 2, "rural", "community"))
    t = {"hospital": hospital_ids(h), "n_patients": sizes, "kind": kind}

    t["intercept_shift"] = knobs["label_skew"] * INTERCEPT_SD * rngs["label_skew"].standard_normal(h)

    rng, k = rngs["covariate_shift"], knobs["covariate_shift"]
    median_age = np.clip(MEDIAN_AGE + k * AGE_SHIFT_SD * rng.standard_normal(h), 30, 85)
    t["age_shift"] = median_age - MEDIAN_AGE
    log_odds = np.log(ADMISSION_MIX) + k * ADMISSION_LOGIT_SD * rng.standard_normal((h, 3))
    odds = np.exp(log_odds - log_odds.max(axis=1, keepdims=True))
    mix = odds / odds.sum(axis=1, keepdims=True)
    t["p_emergency"], t["p_elective"], t["p_transfer"] = mix.T
    t["comorbidity_shift"] = k * COMORBIDITY_SHIFT_SD * rng.standard_normal(h)

    rng, k = rngs["measurement_shift"], knobs["measurement_shift"]
    z = rng.standard_normal((len(VITALS) + len(LABS), h))
    for name, row in zip(VITALS, z):
        t[f"offset_{name}"] = k * OFFSET_SD[name] * row
    for name, row in zip(LABS, z[len(VITALS):]):
        t[f"gain_{name}"] = np.exp(k * GAIN_SD[name] * row)

    rng, k = rngs["missingness"], knobs["missingness"]
    u = rng.random((len(LABS), h))
    factor = pd.Series(kind).map(KIND_FACTOR).to_numpy()
    unmeasured = [u_lab < np.minimum(1, k * P_UNMEASURED[lab] * factor) for lab, u_lab in zip(LABS, u)]
    t["unmeasured"] = [",".join(lab for lab, off in zip(LABS, flags) if off) for flags in zip(*unmeasured)]
    t["missing_rate"] = np.minimum(0.5, k * MISSING_RATE * np.exp(MISSING_RATE_SPREAD * rng.standard_normal(h)))

    t["protocol"] = (rngs["concept_shift"].permutation(h) < PROTOCOL_SHARE * h) & (knobs["concept_shift"] > 0)
    return pd.DataFrame(t)
