"""Sweeps: one experiment with any of its fields varied, over seeds; final metrics beside the epsilon spent."""

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from fedsim.components import as_components
from fedsim.experiment import Experiment
from fedsim.studies.grid import check_seeds, run_grid

COLUMNS = ["technique", "parameters", "seed", "scope", "metric", "value", "epsilon", "unit", "seconds"]


def describe(privacy) -> tuple[str, str]:
    """A technique label and its non-default parameters, e.g. ("DPSGD", "noise_multiplier=1.0")."""
    parts = as_components("privacy", privacy, "privacy")
    if not parts:
        return "none", ""
    names, params = [], []
    for part in parts:
        names.append(type(part).__name__)
        params += [f"{f.name}={getattr(part, f.name)}" for f in dataclasses.fields(part)
                   if getattr(part, f.name) != f.default]
    return " + ".join(names), ", ".join(params)


def _shown(field: str, value) -> str:
    """A varied value as a column entry (privacy: the technique and its non-default parameters, so that two
    settings of one technique stay two runs)."""
    if field == "privacy":
        technique, parameters = describe(value)
        return f"{technique} ({parameters})" if parameters else technique
    return value if isinstance(value, (int, float, str)) else repr(value)


def sweep(experiment: Experiment, privacy: Sequence | None = None, seeds: Sequence[int] = (0,),
          cache="default", **vary) -> pd.DataFrame:
    """Run ``experiment`` with fields varied (every combination) for each seed; one tidy table.

    ``privacy=[None, DPSGD(1.0), CentralDP(0.5)]`` varies the privacy
    technique; any other Experiment field works the same way
    (``learning_rate=[0.01, 0.1]``, ``strategy=["fedavg", "fedprox"]``).
    Rows: (technique, parameters, seed, scope, metric, value, epsilon, unit,
    seconds) for the final round, plus a column per varied field other than
    ``privacy``; ``scope`` is "global" or a hospital; ``seconds`` is the run's
    wall time (as measured when it was first run). ``epsilon`` is the
    hospital's largest epsilon in the ledger (global: the largest over
    hospitals), inf without DP. Runs are cached (``fedsim.studies.run_grid``).
    """
    if not isinstance(experiment, Experiment):
        raise ValueError(f"experiment: expected a fedsim Experiment, got {type(experiment).__name__}")
    if privacy is not None:
        if isinstance(privacy, (str, dict)) or not isinstance(privacy, Sequence) or not privacy:
            raise ValueError("privacy: give a list of settings, e.g. [None, DPSGD(1.0), CentralDP(0.5)]")
        vary = {"privacy": list(privacy), **vary}
    if not vary:
        raise ValueError("vary: give at least one field to vary, e.g. privacy=[None, DPSGD(1.0)]")
    fields = {f.name for f in dataclasses.fields(Experiment)} - {"federation", "seed", "name"}
    for field, values in vary.items():
        if field not in fields:
            raise ValueError(f"vary: {field!r} is not an Experiment field that can vary; allowed: {sorted(fields)}")
        if isinstance(values, (str, dict)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{field}: give a non-empty list of values to try")
    seeds = check_seeds(seeds)
    combos = [{}]
    for field, values in vary.items():
        combos = [{**combo, field: value} for combo in combos for value in values]
    runs, settings = {}, {}
    for combo in combos:
        label = " | ".join(f"{f}={_shown(f, v)}" for f, v in combo.items())
        runs[label] = experiment.replace(name=_run_name(combo), **combo)
        settings[label] = combo
    trials = run_grid(runs, seeds=seeds, cache=cache, desc="sweep")
    frames = [_rows(trial, settings[trial.label], experiment.privacy) for trial in trials]
    return pd.concat(frames, ignore_index=True)


def _run_name(combo: dict) -> str:
    return " ".join(str(_shown(f, v)) for f, v in combo.items())


def _rows(trial, combo: dict, privacy) -> pd.DataFrame:
    """Final metrics of one run, global and per hospital, beside the epsilon each unit spent."""
    result = trial.result
    final = result.metrics[result.metrics["round"] == result.metrics["round"].max()]
    ledger = result.privacy
    if ledger.empty:
        epsilon = dict.fromkeys(final.scope.unique(), math.inf)
        units = ""
    else:
        by_hospital = ledger.groupby("hospital").epsilon.max()
        epsilon = {**by_hospital.to_dict(), "global": float(by_hospital.max())}
        units = "/".join(sorted(ledger.unit.unique()))
    technique, parameters = describe(combo.get("privacy", privacy))
    extra = {field: _shown(field, value) for field, value in combo.items() if field != "privacy"}
    return final.assign(technique=technique, parameters=parameters, seed=trial.seed,
                        epsilon=final.scope.map(epsilon), unit=units, seconds=trial.seconds,
                        **extra)[COLUMNS + list(extra)]
