"""Synthetic, non-IID adult-inpatient cohorts spread across virtual hospitals.

Not real patients and not for clinical use: see DATASHEET.md.

    import data_synthetic as ds
    cohort = ds.generate("icu_mortality", n_hospitals=20, seed=0, label_skew=1.0)
    cohort.patients, cohort.hospitals, cohort.card
"""

from .cards import ScenarioCard, list_scenarios, load_card
from .generator import Cohort, generate
from .knobs import KNOBS

__all__ = ["KNOBS", "Cohort", "ScenarioCard", "generate", "list_scenarios", "load_card"]
