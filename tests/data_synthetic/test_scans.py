"""Tests for the lesion_scans image scenario and image federations."""

from functools import cache

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import data_synthetic as ds
import fedsim as fs
from fedsim.metrics import binary_metrics
from fedsim.models import logreg
from fedsim.training import trainer_for

SCANNER = ["blur_sigma", "gain", "gamma", "offset", "noise_sd"]


@cache
def scans(n_hospitals=10, n_patients=1000, image_size=32, seed=0, **knobs):
    """Cached cohort; callers only read it."""
    return ds.generate_scans(n_hospitals=n_hospitals, n_patients=n_patients, image_size=image_size, seed=seed,
                             **knobs)


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("lesion_scans", n_hospitals=5, n_patients=2000, seed=0)


def organ_masks(cohort, shrink=0.8):
    """Pixels inside each scan's organ ellipse (semi-axes scaled by ``shrink``)."""
    p, s = cohort.patients, cohort.images.shape[-1]
    grid = np.arange(s, dtype=np.float32)
    dx = grid[None, None, :] - p["organ_x"].to_numpy()[:, None, None]
    dy = grid[None, :, None] - p["organ_y"].to_numpy()[:, None, None]
    cos, sin = (f(p["organ_angle"].to_numpy())[:, None, None] for f in (np.cos, np.sin))
    a, b = (shrink * p[c].to_numpy()[:, None, None] for c in ("organ_a", "organ_b"))
    return ((cos * dx + sin * dy) / a) ** 2 + ((cos * dy - sin * dx) / b) ** 2 < 1


def noise_estimates(cohort):
    """Robust per-hospital noise sd from horizontal neighbour differences in unclipped tissue."""
    img = cohort.images
    diff = np.diff(img, axis=2)
    tissue = (img > 0.1) & (img < 0.95)
    ok = tissue[:, :, 1:] & tissue[:, :, :-1]
    hospital = cohort.patients["hospital"].cat.codes.to_numpy()
    return np.array([np.median(np.abs(diff[hospital == h][ok[hospital == h]])) / 0.6745 / np.sqrt(2)
                     for h in range(len(cohort.hospitals))])


def test_public_api():
    assert ds.IMAGE_SCENARIOS == ("lesion_scans",)
    assert ds.SCAN_KNOBS == ("scanner_shift", "label_skew")
    assert "lesion_scans" not in ds.list_scenarios()  # scenario cards only (tables)
    cohort = scans()
    assert isinstance(cohort, ds.ScanCohort)
    assert cohort.knobs == {"scanner_shift": 1.0, "label_skew": 1.0}


def test_deterministic_by_seed():
    a, b, c = scans(), ds.generate_scans(n_hospitals=10, n_patients=1000, seed=0), scans(seed=1)
    assert np.array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.hospitals, b.hospitals)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("image_size", [32, 64])
def test_shapes_dtypes_and_ranges(image_size):
    cohort = ds.generate_scans(n_hospitals=4, image_size=image_size, seed=2)
    images, p, h = cohort.images, cohort.patients, cohort.hospitals
    assert images.shape == (800, image_size, image_size) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert list(p.columns) == ["hospital", "organ_x", "organ_y", "organ_a", "organ_b", "organ_angle", "lesion_x",
                               "lesion_y", "lesion_radius", "lesion_contrast", "benign_spot", "lesion"]
    assert isinstance(p["hospital"].dtype, pd.CategoricalDtype) and p["lesion"].dtype == np.int8
    assert set(p["lesion"].unique()) == {0, 1} and set(p["benign_spot"].unique()) == {0, 1}
    lesion_columns = ["lesion_x", "lesion_y", "lesion_radius", "lesion_contrast"]
    assert p.loc[p["lesion"] == 1, lesion_columns].notna().all().all()
    assert p.loc[p["lesion"] == 0, lesion_columns].isna().all().all()
    found = p.dropna()
    assert found[["lesion_x", "lesion_y"]].stack().between(0, image_size - 1).all()
    assert found["lesion_radius"].between(image_size / 32, image_size / 32 * 2.3).all()
    assert list(h.columns) == ["hospital", "n_patients", "prevalence", *SCANNER]
    assert list(h["hospital"]) == ["H000", "H001", "H002", "H003"]
    assert h["n_patients"].sum() == 800 and h["n_patients"].max() < 2 * h["n_patients"].min()
    assert (p["hospital"].value_counts(sort=False).to_numpy() == h["n_patients"].to_numpy()).all()
    assert h["noise_sd"].between(0.01, 0.05).all()


def test_lesion_is_a_bright_blob_inside_the_organ():
    cohort = scans(scanner_shift=0.0)
    images, p = cohort.images, cohort.patients
    organ = np.where(organ_masks(cohort), images, np.nan)
    contrast = np.nanmax(organ, axis=(1, 2)) - np.nanmedian(organ, axis=(1, 2))
    y = p["lesion"].to_numpy()
    assert contrast[y == 1].mean() > contrast[y == 0].mean() + 0.08
    assert binary_metrics(y, contrast)["auroc"] > 0.9
    hit = p["lesion"] == 1
    rows, cols = (np.round(p.loc[hit, c]).to_numpy(int) for c in ("lesion_y", "lesion_x"))
    centre = images[hit.to_numpy()][np.arange(hit.sum()), rows, cols]
    assert (centre - np.nanmedian(organ[hit.to_numpy()], axis=(1, 2))).mean() > 0.1


def test_scanner_shift_changes_only_the_scanners():
    same, shifted = scans(scanner_shift=0.0), scans(scanner_shift=1.0)
    assert (same.hospitals[SCANNER].nunique() == 1).all()
    assert (shifted.hospitals[SCANNER].nunique() == len(shifted.hospitals)).all()
    pd.testing.assert_frame_equal(same.patients, shifted.patients)  # anatomy and labels untouched
    pd.testing.assert_frame_equal(same.hospitals.drop(columns=SCANNER), shifted.hospitals.drop(columns=SCANNER))

    def intensity(cohort):
        return pd.Series(cohort.images.mean(axis=(1, 2))).groupby(cohort.patients["hospital"], observed=True).mean()

    assert np.ptp(intensity(same)) < 0.01 and np.ptp(intensity(shifted)) > 0.05
    flat, noisy = noise_estimates(same), noise_estimates(shifted)
    assert flat.max() / flat.min() < 1.1 and noisy.max() / noisy.min() > 1.3
    assert stats.spearmanr(noisy, shifted.hospitals["noise_sd"]).statistic > 0.7


def test_label_skew_spreads_the_prevalence_and_changes_only_labels():
    flat, skewed = scans(label_skew=0.0), scans(label_skew=2.0)
    assert np.allclose(flat.hospitals["prevalence"], ds.scans.PREVALENCE)
    assert skewed.hospitals["prevalence"].std() > 0.15

    def spread(cohort):
        return cohort.patients.groupby("hospital", observed=True)["lesion"].mean().std()

    assert spread(skewed) > 2 * spread(flat)
    anatomy = ["hospital", "organ_x", "organ_y", "organ_a", "organ_b", "organ_angle", "benign_spot"]
    pd.testing.assert_frame_equal(flat.patients[anatomy], skewed.patients[anatomy])
    kept = (flat.patients["lesion"] == skewed.patients["lesion"]).to_numpy()
    assert 0.3 < kept.mean() < 1
    assert np.array_equal(flat.images[kept], skewed.images[kept])


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 48}, r"image_size: must be one of \[32, 64\]"),
    ({"image_size": 32.0}, "image_size: must be an integer"),
    ({"n_hospitals": 0}, "n_hospitals: must be >= 1"),
    ({"n_hospitals": True}, "n_hospitals: must be an integer"),
    ({"n_hospitals": 5, "n_patients": 50}, "n_patients: must be >= 100"),
    ({"seed": -1}, "seed: must be >= 0"),
    ({"seed": 2**32}, "seed: must be <= 4294967295"),
    ({"n_hospitals": 100_001}, "n_hospitals: must be <= 100000"),
    ({"n_hospitals": 1000}, r"n_patients: must be <= 32768 \(a memory cap\), got 200000 \(200 per hospital"),
    ({"image_size": 64, "n_patients": 9000}, "n_patients: must be <= 8192"),
    ({"scanner_shift": -0.5}, "scanner_shift: must be a finite number >= 0"),
    ({"label_skew": float("nan")}, "label_skew: must be a finite number >= 0"),
    ({"scanner_shift": "1"}, "scanner_shift: must be a finite number >= 0"),
])
def test_bad_arguments_raise_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ds.generate_scans(**kwargs)


def test_federation_of_scans(fed):
    cohort = ds.generate_scans(n_hospitals=5, n_patients=2000, seed=0)
    assert (fed.n_features, fed.image_shape, fed.preprocessor, fed.target) == (1024, (32, 32), None, "lesion")
    assert fed.hospitals == ("H000", "H001", "H002", "H003", "H004")
    assert repr(fed).endswith(f"{len(fed.y_train)} train / {len(fed.y_test)} test images of 32x32 pixels)")
    assert fed.x_train.dtype == np.float32 and fed.x_train.flags.c_contiguous
    train = (fed.data["split"] == "train").to_numpy()
    assert np.array_equal(fed.images("train"), cohort.images[train])  # hospital-major order kept, pixels as they are
    assert np.array_equal(fed.images("test"), cohort.images[~train])
    assert np.shares_memory(fed.images("train"), fed.x_train)
    x, _ = fed.test_rows(2)
    assert np.array_equal(fed.images("test", 2).reshape(len(x), -1), x)
    assert np.array_equal(fed.images("test", "H002"), fed.images("test", 2))
    assert np.array_equal(fed.data.loc[train, "lesion"].to_numpy(), fed.y_train)
    assert {"lesion_x", "lesion_radius", "benign_spot", "split"} <= set(fed.data.columns)
    assert list(fed.sites["hospital"]) == list(fed.hospitals)
    for _, group in fed.data.groupby(["hospital", "lesion"]):  # stratified per hospital
        assert abs((group["split"] == "test").sum() - 0.2 * len(group)) <= 0.5

    summary = fed.summary()
    assert list(summary.columns) == ["hospital", "n", "n_train", "n_test", "prevalence", "intensity_mean"]
    assert summary["n"].sum() == 2000 and (summary["n"].to_numpy() == fed.sites["n_patients"].to_numpy()).all()
    means = pd.Series(cohort.images.mean(axis=(1, 2))).groupby(cohort.patients["hospital"], observed=True).mean()
    np.testing.assert_allclose(summary["intensity_mean"], means, rtol=1e-4)
    assert len(fed.plot().axes) >= 4


def test_images_view_rejects_bad_requests(fed, small_fed):
    with pytest.raises(ValueError, match="^images: .* table rows"):
        small_fed.images()
    with pytest.raises(ValueError, match="^split:"):
        fed.images("validation")
    for hospital in (5, -1, "H999", True):
        with pytest.raises(ValueError, match="^hospital:"):
            fed.images("train", hospital)


def test_from_images_validates_its_inputs():
    rng = np.random.default_rng(0)
    images, labels, sites = rng.random((40, 8, 8)), np.tile([0, 1], 20), np.repeat(["a", "b"], 20)
    fed = fs.Federation.from_images(images, labels, sites, data=pd.DataFrame({"age": np.arange(40)}))
    assert (fed.image_shape, fed.n_features, fed.name, fed.site, fed.target) == ((8, 8), 64, "images", "hospital",
                                                                                "label")
    assert list(fed.data.columns) == ["age", "hospital", "label", "split"] and len(fed.y_test) == 8
    bad = [
        ({"images": images[:, :, 0]}, "^images: expected"),
        ({"images": images + 0.5}, r"^images: .*\[0, 1\]"),
        ({"images": np.where(images > 0.5, np.nan, images)}, "^images: .*finite"),
        ({"images": images > 0.5}, "^images: expected numeric"),
        ({"labels": labels[:30]}, "^labels: expected one value per image"),
        ({"labels": labels * 2}, "^labels: must be binary"),
        ({"labels": np.zeros(40)}, "^labels: must be binary"),
        ({"sites": np.repeat("a", 40)}, "^sites: a federation needs at least 2 sites"),
        ({"sites": np.where(np.arange(40) < 2, None, sites)}, "^sites: 2 images have no site"),
        ({"data": pd.DataFrame({"age": range(3)})}, "^data:"),
        ({"test_size": 1.0}, "^test_size:"),
        ({"site": "label"}, "^site:"),
    ]
    for change, message in bad:
        arguments = {"images": images, "labels": labels, "sites": sites, **change}
        with pytest.raises(ValueError, match=message):
            fs.Federation.from_images(**arguments)


def test_synthetic_federation_errors_name_the_scan_knobs():
    with pytest.raises(ValueError, match=r"^knobs: unknown \['missingness'\].*scanner_shift"):
        fs.synthetic_federation("lesion_scans", n_hospitals=2, missingness=1.0)
    with pytest.raises(ValueError, match="^image_size: only for image scenarios"):
        fs.synthetic_federation("icu_mortality", n_hospitals=2, image_size=32)
    with pytest.raises(ValueError, match="lesion_scans"):
        fs.synthetic_federation("no_such_scenario")
    with pytest.raises(ValueError, match="image_size: must be one of"):
        fs.synthetic_federation("lesion_scans", n_hospitals=2, image_size=28)


def test_a_pixel_model_learns_the_lesion(fed):
    trainer = trainer_for(logreg, fed.n_features)
    weights, _, _ = trainer.fit(trainer.initial_weights(0), fed.x_train, fed.y_train, epochs=20, batch_size=32,
                                learning_rate=0.1, rng=np.random.default_rng(0))
    assert binary_metrics(fed.y_test, trainer.predict(weights, fed.x_test))["auroc"] > 0.7
