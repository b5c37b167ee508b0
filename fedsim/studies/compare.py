"""Several runs side by side: one tidy table of their metrics by round."""

import pandas as pd

from fedsim.experiment import Experiment
from fedsim.results import Result
from fedsim.studies.grid import run_grid


def compare(runs: dict[str, "Experiment | Result"], cache="default") -> pd.DataFrame:
    """Run what is not yet run (cached, see ``fedsim.studies.run_grid``); one tidy table with a ``run`` column."""
    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs: give at least one {name: Experiment or Result}")
    for name, item in runs.items():
        if not isinstance(item, (Experiment, Result)):
            raise ValueError(f"runs[{name!r}]: expected an Experiment or Result, got {type(item).__name__}")
    pending = {name: item for name, item in runs.items() if isinstance(item, Experiment)}
    done = {t.label: t.result for t in run_grid(pending, cache=cache, desc="compare")} if pending else {}
    frames = [(done[str(name)] if isinstance(item, Experiment) else item).metrics.assign(run=name)
              for name, item in runs.items()]
    return pd.concat(frames, ignore_index=True)[["run", "round", "scope", "metric", "value"]]
