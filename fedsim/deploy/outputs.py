"""The Result an exported app's ServerApp writes to its folder, and reading it back in another process.

The folder holds ``metrics.csv`` (tidy rows), one ``<table>.csv`` per
table (participation, privacy, attacks, ...; columns holding
arrays, such as reconstructed images, are left out), ``weights.npz`` (the
final global weights, in model order), the run's ``audit.jsonl`` and, written
last, ``result.json`` (which tables there are). Floats are written and read
back exactly; other values come back as CSV gives them (a mapping as its text).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.results import Result

ARRAY_COLUMNS = ("original", "reconstruction")
DONE = "result.json"
MISSING = "NaN"  # written for missing values, so an empty string stays one


def write_result(result: Result, folder: str | Path) -> Path:
    """Write ``result``'s metrics, tables and final weights into ``folder`` (``result.json`` last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.metrics.to_csv(folder / "metrics.csv", index=False, na_rep=MISSING)
    tables = []
    for name, table in result.tables.items():
        table.drop(columns=[c for c in ARRAY_COLUMNS if c in table]).to_csv(folder / f"{name}.csv", index=False,
                                                                           na_rep=MISSING)
        tables.append(name)
    np.savez(folder / "weights.npz", *result.weights)
    done = folder / f"{DONE}.tmp"
    done.write_text(json.dumps({"name": result.name, "tables": tables,
                                "audit": result.audit_path.name if result.audit_path else None}))
    done.replace(folder / DONE)  # whoever waits for the folder never reads half of it
    return folder


def read_result(folder: str | Path, experiment, model_fn) -> Result:
    """The Result written in ``folder`` by ``write_result``, for ``experiment`` (its federation and config)."""
    folder = Path(folder)
    if not (folder / DONE).exists():
        raise RuntimeError(f"the run wrote no result in {folder} (no {DONE})")
    done = json.loads((folder / DONE).read_text())
    read = {"keep_default_na": False, "na_values": [MISSING]}  # pandas 3 reads floats round-trip exactly
    tables = {name: pd.read_csv(folder / f"{name}.csv", **read) for name in done["tables"]}
    with np.load(folder / "weights.npz") as stored:
        weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    return Result(done["name"], pd.read_csv(folder / "metrics.csv", **read), weights, experiment.federation,
                  model_fn, experiment.config(), tables,
                  audit_path=folder / done["audit"] if done["audit"] else None)
