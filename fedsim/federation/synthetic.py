"""Synthetic federations: a scenario of ``data_synthetic`` as a Federation, and its provenance."""

import dataclasses

import data_synthetic
from fedsim.federation.federation import Federation
from fedsim.federation.preprocessing import PREPROCESSING
from fedsim.validation import Integer, check


def synthetic_federation(
    scenario: str = "icu_mortality",
    n_hospitals: int = 20,
    n_patients: int | None = None,
    seed: int = 0,
    test_size: float = 0.2,
    image_size: int | None = None,
    preprocessing: str = "federated",
    **knobs: float,
) -> Federation:
    """A federation of synthetic hospitals from a ``data_synthetic`` scenario.

    Scenario cards (tables) take the knobs of ``data_synthetic.KNOBS`` (0 = IID)
    and ``preprocessing`` (``Federation.from_dataframe``'s). Image scenarios
    (``data_synthetic.IMAGE_SCENARIOS``: ``lesion_scans``) take ``image_size``
    (32 by default, or 64) and the knobs of ``data_synthetic.SCAN_KNOBS``.
    """
    check("n_hospitals", n_hospitals, Integer(min=2))
    check("preprocessing", preprocessing, PREPROCESSING)
    if scenario in data_synthetic.IMAGE_SCENARIOS:
        if preprocessing != "federated":
            raise ValueError(f"preprocessing: {scenario!r} keeps pixels as they are, nothing is fitted or pooled; "
                             f"{preprocessing!r} is for table scenarios")
        unknown = sorted(set(knobs) - set(data_synthetic.SCAN_KNOBS))
        if unknown:
            raise ValueError(f"knobs: unknown {unknown} for {scenario!r}; allowed: {list(data_synthetic.SCAN_KNOBS)}")
        scans = data_synthetic.generate_scans(n_hospitals=n_hospitals, n_patients=n_patients, seed=seed,
                                              image_size=32 if image_size is None else image_size, **knobs)
        fed = Federation.from_images(scans.images, scans.patients["lesion"], scans.patients["hospital"],
                                     test_size=test_size, seed=seed, name=scenario, data=scans.patients,
                                     target="lesion", site="hospital")
        return dataclasses.replace(fed, sites=scans.hospitals, provenance=synthetic_provenance(
            scenario, n_hospitals, n_patients, seed, test_size, {"image_size": fed.image_shape[0], **knobs}))
    if image_size is not None:
        raise ValueError(f"image_size: only for image scenarios {list(data_synthetic.IMAGE_SCENARIOS)}, "
                         f"not {scenario!r}")
    allowed = data_synthetic.list_scenarios() + list(data_synthetic.IMAGE_SCENARIOS)
    if isinstance(scenario, str) and scenario not in allowed:
        raise ValueError(f"scenario: must be one of {allowed}, got {scenario!r}")
    cohort = data_synthetic.generate(scenario, n_hospitals=n_hospitals, n_patients=n_patients, seed=seed, **knobs)
    fed = Federation.from_dataframe(cohort.patients, target=cohort.card.target, site="hospital",
                                    test_size=test_size, seed=seed, name=scenario, preprocessing=preprocessing)
    provenance = synthetic_provenance(scenario, n_hospitals, n_patients, seed, test_size, knobs)
    return dataclasses.replace(fed, sites=cohort.hospitals, provenance={**provenance, "preprocessing": preprocessing})


def synthetic_provenance(scenario, n_hospitals, n_patients, seed, test_size, knobs) -> dict:
    """A synthetic federation's provenance: the generator's settings, as plain data."""
    return {"source": "synthetic", "scenario": scenario, "n_hospitals": n_hospitals, "n_patients": n_patients,
            "seed": seed, "test_size": test_size,
            "knobs": {k: int(v) if k == "image_size" else float(v) for k, v in knobs.items()}}
