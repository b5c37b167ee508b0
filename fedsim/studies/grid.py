"""The one study runner: a grid of Experiments, each run once, cached on disk, behind one progress bar.

Every study (``compare``, ``sweep``, ``evaluate_defense``,
``compare_defenses``, ...) is a thin view over ``run_grid``: it lists the
Experiments to run and turns their Results into its table. A run is cached
under ``cache`` (default ``$FEDSIM_CACHE`` or ``.fedsim_cache``), keyed by
the federation's data, the Experiment's resolved settings (every component
by its registry name and settings), the seed and the fedsim version; a grid
that stops halfway resumes where it stopped. Experiments with pieces that
settings cannot describe (a Flower strategy instance, a model callable,
ClientApp mods or observers of your own, a wrapper class defined in a
notebook) always run afresh.
"""

import copy
import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.serverapp.strategy import Strategy
from tqdm.auto import tqdm

from fedsim.experiment import Experiment
from fedsim.models import resolve_model
from fedsim.results import Result
from fedsim.settings import cache_folder
from fedsim.validation import Integer, Seq, check

VERSION = "2"  # of the cache's layout (2: runs keep their decision table)


def default_cache() -> str:
    """Where studies cache their runs unless told otherwise (``fedsim.settings.cache_folder``)."""
    return cache_folder()


@dataclass(frozen=True)
class Trial:
    """One cell of a grid: its label, seed, Result and the wall time of the run (when it first ran)."""

    label: str
    seed: int
    result: Result
    seconds: float
    cached: bool


def check_seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as a non-empty tuple of integers >= 0."""
    return check("seeds", seeds, Seq(Integer(min=0, max=2**32 - 1), what="a non-empty list of integers >= 0",
                                     non_empty=True))


def run_grid(experiments: dict[str, Experiment], seeds: Sequence[int] | None = None,
             cache: str | os.PathLike | None = "default", desc: str = "study") -> list[Trial]:
    """Run every Experiment of ``experiments`` ({label: Experiment}) for every seed; cached, one progress bar.

    ``seeds=None`` runs each Experiment with its own seed. ``cache=None``
    turns caching off.
    """
    if not isinstance(experiments, dict) or not experiments:
        raise ValueError("experiments: give a non-empty {label: Experiment} dict")
    for label, experiment in experiments.items():
        if not isinstance(experiment, Experiment):
            raise ValueError(f"experiments[{label!r}]: expected a fedsim Experiment, got {type(experiment).__name__}")
    seeds = None if seeds is None else check_seeds(seeds)
    folder = None if cache is None else Path(default_cache() if cache == "default" else cache)
    cells = [(str(label), experiment, seed) for label, experiment in experiments.items()
             for seed in (seeds or (experiment.seed,))]
    trials = []
    for label, experiment, seed in tqdm(cells, desc=desc, unit="run", leave=False, disable=len(cells) < 2):
        trials.append(_trial(label, experiment.replace(seed=seed, name=experiment.name or label), folder))
    return trials


def _trial(label: str, experiment: Experiment, folder: Path | None) -> Trial:
    key = cache_key(experiment) if folder is not None else None
    path = folder / key if key is not None else None
    if path is not None and (path / "run.json").exists():
        return Trial(label, experiment.seed, *_load(path, experiment), cached=True)
    if isinstance(experiment.strategy, Strategy):  # strategies keep per-run state: each run gets its own copy
        experiment = experiment.replace(strategy=copy.deepcopy(experiment.strategy))
    start = time.perf_counter()
    result = experiment.run()
    seconds = time.perf_counter() - start
    if path is not None:
        _save(path, result, seconds)
    return Trial(label, experiment.seed, result, seconds, cached=False)


def cache_key(experiment: Experiment) -> str | None:
    """The run's cache key, or None when its settings do not describe it fully (it then always runs)."""
    if not isinstance(experiment.model, str) or not isinstance(experiment.strategy, str) or experiment.client_mods:
        return None
    config = experiment.config()
    for component in config["components"]:
        if _unimportable(component["settings"]):
            return None
    if len(config["components"]) != len(experiment.components()) or len(experiment.observers) != sum(
            c["family"] == "attack" for c in config["components"]):
        return None
    fed = experiment.federation
    digest = hashlib.sha256(VERSION.encode())
    for array in (fed.x_train, fed.y_train, fed.x_test, fed.y_test, fed.train_offsets, fed.test_offsets):
        digest.update(np.ascontiguousarray(array).tobytes())
    settings = {**config, "name": experiment.label, "version": importlib.metadata.version("fedsim")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    if experiment.noise_seed is not None:  # the experimenter's secret changes the key, never appears in it
        digest.update(hashlib.sha256(f"noise-seed {experiment.noise_seed}".encode()).digest())
    return digest.hexdigest()[:24]


def _unimportable(value) -> bool:
    """A settings value naming a class or function that another process could not import."""
    if isinstance(value, dict):
        return any(_unimportable(v) for v in value.values())
    if isinstance(value, list):
        return any(_unimportable(v) for v in value)
    return isinstance(value, str) and ":" in value and (value.startswith("__main__:") or "<" in value)


def _save(path: Path, result: Result, seconds: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result.metrics.to_parquet(path / "metrics.parquet", index=False)
    (path / "tables").mkdir(exist_ok=True)
    for name, table in result.tables.items():
        table.to_parquet(path / "tables" / f"{name}.parquet", index=False)
    np.savez(path / "weights.npz", *result.weights)
    meta = {"name": result.name, "seconds": seconds, "config": result.config, "tables": list(result.tables),
            "audit_path": str(result.audit_path) if result.audit_path else None}
    (path / "run.json").write_text(json.dumps(meta, default=str))  # written last: its presence marks a whole run


def _load(path: Path, experiment: Experiment) -> tuple[Result, float]:
    meta = json.loads((path / "run.json").read_text())
    tables = {name: pd.read_parquet(path / "tables" / f"{name}.parquet") for name in meta["tables"]}
    with np.load(path / "weights.npz") as stored:
        weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    audit = Path(meta["audit_path"]) if meta["audit_path"] and Path(meta["audit_path"]).exists() else None
    result = Result(meta["name"], pd.read_parquet(path / "metrics.parquet"), weights, experiment.federation,
                    resolve_model(experiment.model), meta["config"], tables, audit_path=audit)
    return result, float(meta["seconds"])
