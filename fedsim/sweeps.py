"""Sweeps: one experiment under many privacy settings and seeds, cached on disk."""

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fedsim.components import Component, as_components
from fedsim.experiment import Experiment

COLUMNS = ["technique", "parameters", "seed", "scope", "metric", "value", "epsilon", "unit", "seconds"]


def describe(privacy) -> tuple[str, str]:
    """A technique label and its non-default parameters, e.g. ("DPSGD", "noise_multiplier=1.0")."""
    parts = as_components("privacy", privacy)
    if not parts:
        return "none", ""
    names, params = [], []
    for part in parts:
        names.append(type(part).__name__)
        if dataclasses.is_dataclass(part):
            params += [f"{f.name}={getattr(part, f.name)}" for f in dataclasses.fields(part)
                       if getattr(part, f.name) != f.default]
    return " + ".join(names), ", ".join(params)


def _fingerprint(experiment: Experiment, seed: int) -> str:
    """A key that changes when the data, the settings, the privacy or the seed change."""
    fed = experiment.federation
    digest = hashlib.sha256()
    for array in (fed.x_train, fed.y_train, fed.x_test, fed.y_test, fed.train_offsets, fed.test_offsets):
        digest.update(np.ascontiguousarray(array).tobytes())
    settings = {**experiment.config(), "seed": seed}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _rows(experiment: Experiment, seed: int) -> pd.DataFrame:
    """Final metrics of one run, global and per hospital, beside the epsilon each unit spent."""
    start = time.perf_counter()
    result = experiment.replace(seed=seed).run()
    seconds = time.perf_counter() - start
    final = result.metrics[result.metrics["round"] == result.metrics["round"].max()]
    ledger = result.privacy
    if ledger.empty:
        epsilon = dict.fromkeys(final.scope.unique(), math.inf)
        units = ""
    else:
        by_hospital = ledger.groupby("hospital").epsilon.max()
        epsilon = {**by_hospital.to_dict(), "global": float(by_hospital.max())}
        units = "/".join(sorted(ledger.unit.unique()))
    technique, parameters = describe(experiment.privacy)
    return final.assign(technique=technique, parameters=parameters, seed=seed,
                        epsilon=final.scope.map(epsilon), unit=units, seconds=seconds)[COLUMNS]


def sweep(
    experiment: Experiment,
    privacy: Sequence[Component | Sequence[Component] | None],
    seeds: Sequence[int] = (0,),
    cache: str | Path | None = ".fedsim_cache",
) -> pd.DataFrame:
    """Run ``experiment`` under each privacy setting and seed; one tidy table.

    Rows: (technique, parameters, seed, scope, metric, value, epsilon, unit,
    seconds) for the final round, ``scope`` "global" or a hospital; ``seconds``
    is the run's wall time (as measured when it was first run). ``epsilon`` is the
    hospital's largest epsilon in the ledger (global: the largest over
    hospitals), inf without DP. Each run is cached under ``cache`` (None turns
    caching off), keyed by the data, the settings and the seed, so re-running
    a notebook is instant.
    """
    if not isinstance(experiment, Experiment):
        raise ValueError(f"experiment: expected a fedsim Experiment, got {type(experiment).__name__}")
    if isinstance(privacy, (Component, str)) or not privacy:
        raise ValueError("privacy: give a list of settings, e.g. [None, DPSGD(1.0), CentralDP(0.5)]")
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds: give a list of integers >= 0, got {seeds!r}")
    folder = Path(cache) if cache is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    frames = []
    runs = [(setting, seed) for setting in privacy for seed in seeds]
    for setting, seed in tqdm(runs, desc="sweep", unit="run"):
        run = experiment.replace(privacy=setting, name=describe(setting)[0])
        path = folder / f"{_fingerprint(run, seed)}.parquet" if folder is not None else None
        if path is not None and path.exists():
            frames.append(pd.read_parquet(path))
            continue
        rows = _rows(run, seed)
        if path is not None:
            rows.to_parquet(path, index=False)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)
