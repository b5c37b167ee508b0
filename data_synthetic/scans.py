"""`generate_scans`: synthetic grayscale abdominal scans, with or without a lesion, across virtual hospitals.

Each scan is one axial slice: a body outline, a bright spine, an elliptical organ
with a smooth patient-specific texture, sometimes a faint benign spot and, for
label 1, a round malignant lesion brighter than the organ. Hospitals differ by
scanner (blur, intensity response, noise; knob ``scanner_shift``) and by case
mix (lesion prevalence; knob ``label_skew``). Not real patients: see DATASHEET.md.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .generator import _integer, _patients
from .knobs import MAX_HOSPITALS, MAX_SEED, chosen_hospitals, hospital_ids, hospital_sizes, hospital_streams

IMAGE_SCENARIOS = ("lesion_scans",)
SCAN_KNOBS = ("scanner_shift", "label_skew")
IMAGE_SIZES = (32, 64)
STREAMS = ("sizes",) + SCAN_KNOBS  # federation-level; each hospital draws its scans from its own streams

PATIENTS_PER_HOSPITAL = 200  # default, on average
MAX_PIXELS = 2**25  # memory cap on n_patients * image_size**2: about 1 GB while the scans are drawn
SIZE_SKEW = 0.25  # mild Zipf-like spread of hospital sizes (see knobs.hospital_sizes)
PREVALENCE = 0.35  # share of scans with a lesion at label_skew 0
PREVALENCE_LOGIT_SD = 0.8  # hospital shift of the lesion log-odds at label_skew 1
BENIGN_SPOT_RATE = 0.3  # share of patients with a faint benign spot, whatever their label

# Tissue intensities before the scanner (coordinates: the image spans -1 .. 1 both ways).
AIR, BODY, ORGAN, SPINE = 0.02, 0.3, 0.5, 0.85
SPINE_RADIUS, SPINE_DEPTH = 0.1, 0.75  # the spine's centre sits at this share of the body's half-height
TEXTURE = 0.05  # amplitude of the organ's low-frequency texture (sum of 3 plane waves)
ANATOMY = {  # uniform ranges: body and organ semi-axes, organ centre and rotation (radians)
    "body_a": (0.8, 0.92), "body_b": (0.6, 0.72), "organ_x": (-0.1, 0.1), "organ_y": (-0.2, 0.0),
    "organ_a": (0.32, 0.4), "organ_b": (0.22, 0.27), "organ_angle": (-0.3, 0.3),
}
WAVES = {"wave_freq": (0.5, 1.5), "wave_angle": (0, 2 * np.pi), "wave_phase": (0, 2 * np.pi)}  # texture
LESION_RADIUS, LESION_CONTRAST = (0.07, 0.14), (0.15, 0.3)
SPOT_RADIUS, SPOT_CONTRAST = (0.04, 0.07), (0.04, 0.08)

# Scanner at scanner_shift 0 (every hospital) and the spread at scanner_shift 1.
BLUR_SIGMA, BLUR_LOG_SD = 0.6, 0.35  # Gaussian point-spread sd, pixels of a 32 x 32 scan
GAIN_LOG_SD, GAMMA_LOG_SD, OFFSET_SD = 0.12, 0.12, 0.02  # response: offset + gain * x ** gamma
NOISE_SD, NOISE_LOG_SD, NOISE_RANGE = 0.025, 0.35, (0.01, 0.05)  # additive Gaussian noise


@dataclass(frozen=True, eq=False)
class ScanCohort:
    """Scans (n, s, s) float32 in [0, 1], one patients row per scan, one hospitals row each, the knobs."""

    images: np.ndarray
    patients: pd.DataFrame
    hospitals: pd.DataFrame
    knobs: dict[str, float]


def generate_scans(n_hospitals: int = 10, n_patients: int | None = None, image_size: int = 32, seed: int = 0,
                   scanner_shift: float = 1.0, label_skew: float = 1.0, hospitals=None) -> ScanCohort:
    """Generate `n_patients` (default 200 per hospital) scans of `image_size` pixels across `n_hospitals`.

    Knobs are 0 for identical hospitals and 1 for the documented "strong" level.
    ``hospitals``: indices of the hospitals whose scans to generate (default all;
    each draws from its own streams, as in ``generate``).
    """
    n_hospitals = _integer("n_hospitals", n_hospitals, minimum=1, maximum=MAX_HOSPITALS)
    image_size = _integer("image_size", image_size, minimum=1)
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size: must be one of {list(IMAGE_SIZES)}, got {image_size}")
    seed = _integer("seed", seed, minimum=0, maximum=MAX_SEED)
    n_patients = _patients(n_patients, n_hospitals, PATIENTS_PER_HOSPITAL, maximum=MAX_PIXELS // image_size**2)
    knobs = {"scanner_shift": _knob("scanner_shift", scanner_shift), "label_skew": _knob("label_skew", label_skew)}

    rngs = dict(zip(STREAMS, map(np.random.default_rng, np.random.SeedSequence(seed).spawn(len(STREAMS)))))
    table = _hospital_table(rngs, n_hospitals, n_patients, image_size, knobs)
    chosen = chosen_hospitals(hospitals, n_hospitals)
    idx = np.repeat(chosen, table["n_patients"].to_numpy()[chosen])
    parts = []
    for i in chosen:
        own = hospital_streams(seed, i, ("anatomy", "noise"))
        a = _anatomy(own["anatomy"], int(table["n_patients"].iloc[i]))
        lesion = (a.pop("label_uniform") < table["prevalence"].iloc[i]).astype(np.int8)
        parts.append((a, lesion, _scanner(_draw(a, lesion, image_size), table.iloc[i], own["noise"])))
    a = {name: np.concatenate([part[0][name] for part in parts], axis=-1) for name in parts[0][0]}
    lesion = np.concatenate([part[1] for part in parts])
    images = np.concatenate([part[2] for part in parts])

    def pixels(u):  # image coordinate (-1 .. 1) -> pixel units (0 = centre of the first row or column)
        return ((u + 1) * image_size / 2 - 0.5).astype(np.float32)

    def length(u):
        return (u * image_size / 2).astype(np.float32)

    absent = np.where(lesion == 1, 1, np.nan).astype(np.float32)
    patients = pd.DataFrame({
        "hospital": pd.Categorical.from_codes(idx, categories=table["hospital"]),
        "organ_x": pixels(a["organ_x"]), "organ_y": pixels(a["organ_y"]),
        "organ_a": length(a["organ_a"]), "organ_b": length(a["organ_b"]),
        "organ_angle": a["organ_angle"].astype(np.float32),
        "lesion_x": pixels(a["lesion_x"]) * absent, "lesion_y": pixels(a["lesion_y"]) * absent,
        "lesion_radius": length(a["lesion_r"]) * absent, "lesion_contrast": (a["lesion_c"] * absent).astype(np.float32),
        "benign_spot": a["spot"].astype(np.int8),
        "lesion": lesion,
    })
    return ScanCohort(images, patients, table, knobs)


def _knob(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


def _hospital_table(rngs, n_hospitals, n_patients, image_size, knobs):
    """One row per hospital: size, lesion prevalence and scanner settings; each knob scales its own draws."""
    h = n_hospitals
    t = {"hospital": hospital_ids(h), "n_patients": hospital_sizes(rngs["sizes"], h, n_patients, SIZE_SKEW)}
    shift = knobs["label_skew"] * PREVALENCE_LOGIT_SD * rngs["label_skew"].standard_normal(h)
    t["prevalence"] = 1 / (1 + np.exp(-(math.log(PREVALENCE / (1 - PREVALENCE)) + shift)))
    k = knobs["scanner_shift"]
    z = rngs["scanner_shift"].standard_normal((5, h))
    t["blur_sigma"] = BLUR_SIGMA * image_size / 32 * np.exp(k * BLUR_LOG_SD * z[0])  # pixels of this image size
    t["gain"] = np.exp(k * GAIN_LOG_SD * z[1])
    t["gamma"] = np.exp(k * GAMMA_LOG_SD * z[2])
    t["offset"] = k * OFFSET_SD * z[3]
    t["noise_sd"] = np.clip(NOISE_SD * np.exp(k * NOISE_LOG_SD * z[4]), *NOISE_RANGE)
    return pd.DataFrame(t)


def _anatomy(rng, n):
    """Per-patient shapes and positions (image coordinates -1 .. 1), drawn for every patient."""
    def uniform(low, high, size=n):
        return low + (high - low) * rng.random(size)

    a = {name: uniform(*bounds) for name, bounds in ANATOMY.items()}
    for name in ("wave_freq", "wave_angle", "wave_phase"):
        a[name] = uniform(*WAVES[name], (3, n))
    for name, radius, contrast in (("lesion", LESION_RADIUS, LESION_CONTRAST), ("spot", SPOT_RADIUS, SPOT_CONTRAST)):
        # a point of the organ's inner part (60 % of each semi-axis), uniform over its area
        r, theta = 0.6 * np.sqrt(rng.random(n)), uniform(0, 2 * np.pi)
        along, across = r * np.cos(theta) * a["organ_a"], r * np.sin(theta) * a["organ_b"]
        cos, sin = np.cos(a["organ_angle"]), np.sin(a["organ_angle"])
        a[f"{name}_x"] = a["organ_x"] + cos * along - sin * across
        a[f"{name}_y"] = a["organ_y"] + sin * along + cos * across
        a[f"{name}_r"], a[f"{name}_c"] = uniform(*radius), uniform(*contrast)
    a["spot"] = rng.random(n) < BENIGN_SPOT_RATE
    a["label_uniform"] = rng.random(n)
    return a


def _draw(a, lesion, s):
    """Noise-free scans (n, s, s) float32 from the anatomy."""
    u = (np.arange(s, dtype=np.float32) + 0.5) * 2 / s - 1
    x, y = u[None, None, :], u[None, :, None]
    pixel = 2 / s

    def col(values):
        return np.asarray(values, np.float32)[:, None, None]

    def ellipse(cx, cy, ax, ay, angle=None):
        """Anti-aliased inside-ness (0 .. 1) of one ellipse per patient (axis-aligned without angle)."""
        dx, dy = x - col(cx), y - col(cy)
        if angle is not None:
            cos, sin = col(np.cos(angle)), col(np.sin(angle))
            dx, dy = cos * dx + sin * dy, cos * dy - sin * dx
        q = np.sqrt((dx / col(ax)) ** 2 + (dy / col(ay)) ** 2)
        return np.clip((1 - q) * col(np.minimum(ax, ay)) / pixel + 0.5, 0, 1)

    def wave(f, angle, phase):
        """cos(pi f (x cos angle + y sin angle) + phase) as a sum of two outer products."""
        along_x, along_y = np.pi * col(f * np.cos(angle)) * x, np.pi * col(f * np.sin(angle)) * y + col(phase)
        return np.cos(along_x) * np.cos(along_y) - np.sin(along_x) * np.sin(along_y)

    n = len(lesion)
    zero = np.zeros(n)
    img = AIR + (BODY - AIR) * ellipse(zero, zero, a["body_a"], a["body_b"])
    spine = np.full(n, SPINE_RADIUS)
    img += (SPINE - BODY) * ellipse(zero, SPINE_DEPTH * a["body_b"], spine, spine)
    texture = sum(wave(*w) for w in zip(a["wave_freq"], a["wave_angle"], a["wave_phase"]))
    img += ellipse(a["organ_x"], a["organ_y"], a["organ_a"], a["organ_b"], a["organ_angle"]) * (
        ORGAN - BODY + TEXTURE / 3 * texture)
    for name, has in (("spot", a["spot"]), ("lesion", lesion == 1)):
        b = {k: v[has] for k, v in a.items() if k.startswith(name)}
        r = b[f"{name}_r"]
        img[has] += col(b[f"{name}_c"]) * ellipse(b[f"{name}_x"], b[f"{name}_y"], r, r)
    return img


def _scanner(clean, hospital, rng):
    """One hospital's scanner: Gaussian blur, intensity response, additive noise; clipped to [0, 1]."""
    s = clean.shape[-1]
    d = np.arange(s)[:, None] - np.arange(s)[None, :]
    kernel = np.exp(-0.5 * (d / hospital.blur_sigma) ** 2) * (np.abs(d) <= 4 * hospital.blur_sigma)  # no denormals
    blur_t = (kernel / kernel.sum(axis=1, keepdims=True)).T.astype(np.float32)  # renormalised at the edges
    img = (clean.reshape(-1, s) @ blur_t).reshape(-1, s, s).transpose(0, 2, 1)  # along rows
    img = (img.reshape(-1, s) @ blur_t).reshape(-1, s, s).transpose(0, 2, 1)  # along columns
    out = np.float32(hospital.offset) + np.float32(hospital.gain) * np.clip(img, 0, 1) ** np.float32(hospital.gamma)
    out += np.float32(hospital.noise_sd) * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.clip(out, 0, 1, out=out)
