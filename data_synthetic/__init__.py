"""Synthetic, non-IID patient cohorts (inpatient records, lesion scans) spread across virtual hospitals.

Not real patients and not for clinical use: see DATASHEET.md.

    import data_synthetic as ds
    cohort = ds.generate("icu_mortality", n_hospitals=20, seed=0, label_skew=1.0)
    cohort.patients, cohort.hospitals, cohort.card

    scans = ds.generate_scans(n_hospitals=10, image_size=32, seed=0, scanner_shift=1.0)
    scans.images, scans.patients, scans.hospitals
"""

from .cards import ScenarioCard, list_scenarios, load_card
from .generator import Cohort, generate
from .knobs import KNOBS
from .scans import IMAGE_SCENARIOS, SCAN_KNOBS, ScanCohort, generate_scans

__all__ = ["IMAGE_SCENARIOS", "KNOBS", "SCAN_KNOBS", "Cohort", "ScanCohort", "ScenarioCard", "generate",
           "generate_scans", "list_scenarios", "load_card"]
