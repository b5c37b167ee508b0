"""The structural causal model of one adult inpatient stay.

`simulate` draws the true values of every variable (and the latent acute
severity) from one random stream in a fixed order, so that hospital-level
parameters change the values deterministically (common random numbers).
`TERMS` are the named transforms of true values that a scenario card combines
into the outcome logit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Variable:
    """One recorded column: unit, plausible range (values are clipped to it), rounding."""

    group: str
    unit: str
    low: float
    high: float
    decimals: int
    description: str


VARIABLES: dict[str, Variable] = {
    "age": Variable("demographic", "years", 18, 100, 0, "age at admission (whole years)"),
    "diabetes": Variable("comorbidity", "0/1", 0, 1, 0, "diabetes mellitus"),
    "hypertension": Variable("comorbidity", "0/1", 0, 1, 0, "arterial hypertension"),
    "ckd": Variable("comorbidity", "0/1", 0, 1, 0, "chronic kidney disease"),
    "copd": Variable("comorbidity", "0/1", 0, 1, 0, "chronic obstructive pulmonary disease"),
    "heart_failure": Variable("comorbidity", "0/1", 0, 1, 0, "chronic heart failure"),
    "heart_rate": Variable("vital", "bpm", 30, 220, 0, "heart rate"),
    "systolic_bp": Variable("vital", "mmHg", 50, 250, 0, "systolic blood pressure"),
    "resp_rate": Variable("vital", "/min", 6, 50, 0, "respiratory rate"),
    "spo2": Variable("vital", "%", 60, 100, 0, "peripheral oxygen saturation"),
    "temperature": Variable("vital", "°C", 33, 42, 1, "body temperature"),
    "creatinine": Variable("lab", "mg/dL", 0.2, 15, 2, "serum creatinine"),
    "lactate": Variable("lab", "mmol/L", 0.3, 20, 1, "blood lactate"),
    "wbc": Variable("lab", "10^9/L", 0.5, 80, 1, "white blood cell count"),
    "glucose": Variable("lab", "mg/dL", 30, 800, 0, "blood glucose"),
    "hemoglobin": Variable("lab", "g/dL", 4, 20, 1, "hemoglobin"),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "sex": ("F", "M"),
    "admission_type": ("emergency", "elective", "transfer"),
}
COMORBIDITIES = tuple(n for n, v in VARIABLES.items() if v.group == "comorbidity")
VITALS = tuple(n for n, v in VARIABLES.items() if v.group == "vital")
LABS = tuple(n for n, v in VARIABLES.items() if v.group == "lab")
MEASURED = VITALS + LABS

MEDIAN_AGE = 64.0  # years, at covariate_shift = 0
AGE_SPREAD = 0.8  # sd of age on the logit scale of (age - 18) / 82
P_FEMALE = 0.48
ADMISSION_MIX = (0.65, 0.25, 0.10)  # emergency, elective, transfer


def expit(x):
    return 1 / (1 + np.exp(-x))


def logit(p):
    return np.log(p / (1 - p))


def simulate(rng: np.random.Generator, median_age, admission_mix, comorbidity_shift) -> dict[str, np.ndarray]:
    """True values for len(median_age) patients given their hospital's case mix.

    median_age: (n,) years; admission_mix: (n, 3) probabilities; comorbidity_shift: (n,) logit.
    Every draw has size n and no parameters, so the stream is used identically for any case mix.
    """
    n = len(median_age)
    f32 = np.float32

    def normal():
        return rng.standard_normal(n, dtype=f32)

    def uniform():
        return rng.random(n, dtype=f32)

    def bernoulli(log_odds):
        return (uniform() < expit(log_odds + comorbidity_shift)).astype(f32)

    age = 18 + 82 * expit(logit((median_age - 18) / 82) + AGE_SPREAD * normal())
    female = (uniform() < P_FEMALE).astype(f32)
    male = 1 - female
    u = uniform()
    emergency = (u < admission_mix[:, 0]).astype(f32)
    transfer = (u >= admission_mix[:, 0] + admission_mix[:, 1]).astype(f32)
    admission = (1 - emergency + transfer).astype(np.int8)  # 0 emergency, 1 elective, 2 transfer

    dec = (age - 60) / 10
    diabetes = bernoulli(-1.4 + 0.2 * dec)
    hypertension = bernoulli(-0.3 + 0.5 * dec + 0.9 * diabetes)
    ckd = bernoulli(-2.6 + 0.45 * dec + 0.8 * diabetes + 0.7 * hypertension)
    copd = bernoulli(-2.3 + 0.3 * dec + 0.3 * male)
    heart_failure = bernoulli(-2.9 + 0.5 * dec + 0.7 * hypertension + 0.4 * diabetes + 0.6 * ckd)
    chronic = ckd + copd + heart_failure

    severity = -0.75 + 0.15 * dec + 0.8 * emergency + 1.0 * transfer + 0.25 * chronic + 0.1 * diabetes + normal()
    shock = np.maximum(severity - 1, 0)

    v = {
        "age": age,
        "female": female,
        "sex": male.astype(np.int8),
        "admission_type": admission,
        "emergency": emergency,
        "transfer": transfer,
        "diabetes": diabetes,
        "hypertension": hypertension,
        "ckd": ckd,
        "copd": copd,
        "heart_failure": heart_failure,
        "severity": severity,
        "heart_rate": 80 + 8 * severity + 3 * copd + 10 * normal(),
        "systolic_bp": (
            124 + 3 * dec + 12 * hypertension - 4 * heart_failure - 4 * severity - 10 * shock + 14 * normal()
        ),
        "resp_rate": 17 + 2.2 * severity + 2.5 * copd + 1.5 * heart_failure + 2.5 * normal(),
        "spo2": 100 - np.exp(0.9 + 0.3 * severity + 0.6 * copd + 0.3 * heart_failure + 0.35 * normal()),
        "temperature": 36.9 + 0.35 * severity + 0.5 * normal(),
        "creatinine": np.exp(
            -0.3 + 0.15 * male + 0.04 * dec + 0.9 * ckd + 0.1 * diabetes + 0.15 * heart_failure
            + 0.12 * severity + 0.25 * normal()
        ),
        "lactate": np.exp(0.15 + 0.4 * severity + 0.1 * diabetes + 0.35 * normal()),
        "wbc": np.exp(2.05 + 0.15 * severity + 0.35 * normal()),
        "glucose": np.exp(4.6 + 0.45 * diabetes + 0.07 * severity + (0.15 + 0.15 * diabetes) * normal()),
        "hemoglobin": 13.8 - 1.3 * female - 1.6 * ckd - 0.15 * dec - 0.3 * severity + 1.4 * normal(),
    }
    for name in MEASURED + ("age",):
        var = VARIABLES[name]
        v[name] = np.clip(v[name], var.low, var.high).astype(f32)
    v["outcome_uniform"] = uniform()
    return v


def _hinge(x, at, scale=1.0):
    return np.maximum(x - at, 0) / scale


Term = Callable[[dict[str, np.ndarray]], np.ndarray]

TERMS: dict[str, tuple[str, Term]] = {
    "severity": ("latent acute severity (not recorded)", lambda v: v["severity"]),
    "age_decades": ("(age - 60) / 10", lambda v: (v["age"] - 60) / 10),
    "age_over_75": ("max(age - 75, 0) / 10", lambda v: _hinge(v["age"], 75, 10)),
    "female": ("sex is F", lambda v: v["female"]),
    "emergency": ("admission_type is emergency", lambda v: v["emergency"]),
    "transfer": ("admission_type is transfer", lambda v: v["transfer"]),
    **{c: (f"{c} (0/1)", lambda v, c=c: v[c]) for c in COMORBIDITIES},
    "comorbidities_over_2": (
        "max(number of comorbidities - 2, 0)",
        lambda v: _hinge(sum(v[c] for c in COMORBIDITIES).astype(np.float32), 2),
    ),
    "heart_failure_x_ckd": ("heart_failure * ckd (cardiorenal)", lambda v: v["heart_failure"] * v["ckd"]),
    "heart_rate": ("(heart_rate - 80) / 10", lambda v: (v["heart_rate"] - 80) / 10),
    "hypotension": ("max(110 - systolic_bp, 0) / 10", lambda v: _hinge(110, v["systolic_bp"], 10)),
    "resp_rate": ("(resp_rate - 18) / 5", lambda v: (v["resp_rate"] - 18) / 5),
    "hypoxemia": ("max(94 - spo2, 0) / 2", lambda v: _hinge(94, v["spo2"], 2)),
    "temperature_deviation": ("|temperature - 37|", lambda v: np.abs(v["temperature"] - 37)),
    "log_creatinine": ("ln(creatinine)", lambda v: np.log(v["creatinine"])),
    "log_lactate": ("ln(lactate)", lambda v: np.log(v["lactate"])),
    "lactate_over_4": ("max(lactate - 4, 0) / 2", lambda v: _hinge(v["lactate"], 4, 2)),
    "age_x_lactate": ("age_decades * ln(lactate)", lambda v: (v["age"] - 60) / 10 * np.log(v["lactate"])),
    "wbc_deviation": ("|ln(wbc / 8)|", lambda v: np.abs(np.log(v["wbc"] / 8))),
    "glucose": ("(glucose - 120) / 50", lambda v: (v["glucose"] - 120) / 50),
    "anemia": ("max(12 - hemoglobin, 0)", lambda v: _hinge(12, v["hemoglobin"])),
}


def outcome_logit(v: dict[str, np.ndarray], intercept, coefficients: dict[str, float], multipliers=None):
    """intercept + sum_k coefficient_k * multiplier_k * term_k(v); intercept and multipliers may be per patient."""
    multipliers = multipliers or {}
    z = np.zeros(len(v["age"]), dtype=np.float32) + intercept
    for name, beta in coefficients.items():
        z += np.float32(beta) * multipliers.get(name, 1) * TERMS[name][1](v)
    return z
