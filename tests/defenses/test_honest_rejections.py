"""A default never harms an honest hospital: the default defenses reject no honest reply, measured.

Every non-IID knob at 0 and at 1 (the others at 0), and every shipped example with its own settings and
candidates (rounds cut to 3 to keep the suite fast: a false rejection shows in the first rounds, as the
example's largest hospital did in all 20 of its rounds), run with the default defenses and no adversary: the
participation table must hold no rejection. ``fs.evaluate_defense`` reports the same measure as
``honest_rejected``.
"""

from pathlib import Path

import pytest
import yaml

import data_synthetic
import fedsim as fs
from fedsim.cli import ASSESS_KEYS, build_experiment, load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def rejected(experiment: fs.Experiment) -> list[str]:
    participation = experiment.run().participation
    return participation[participation.event == "rejected"].reason.tolist()


@pytest.mark.parametrize("level", [0.0, 1.0])
@pytest.mark.parametrize("knob", data_synthetic.KNOBS)
def test_no_honest_hospital_is_rejected_at_any_knob(knob, level):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=4000, seed=2, **{knob: level})
    assert rejected(fs.Experiment(federation=fed, rounds=3)) == []


def example_runs(path: Path) -> dict[str, fs.Experiment]:
    """The example's experiment, and each of its candidates (for an assessment), with 3 rounds."""
    config = load_config(str(path), extra=ASSESS_KEYS)
    settings = {k: v for k, v in config.items() if k not in ASSESS_KEYS}
    runs = {path.stem: build_experiment(settings).replace(rounds=3)}
    for label, changes in (config.get("candidates") or {}).items():
        runs[label] = build_experiment({**settings, **changes}).replace(rounds=3)
    return runs


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_no_honest_hospital_is_rejected_in_a_shipped_example(path):
    assert yaml.safe_load(path.read_text())  # the example itself, as shipped
    for label, experiment in example_runs(path).items():
        assert rejected(experiment.replace(noise_seed=0)) == [], label
