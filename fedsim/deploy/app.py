"""``export``: an Experiment as a self-contained Flower app folder, runnable with ``flwr run`` on any federation.

The folder holds ``pyproject.toml`` (``[tool.flwr.app]``: the components and
the run config, the experiment's spec as one JSON string plus ``out-dir``)
and the ``fedsim_app`` package (``fedsim.deploy.flower_app``: the ServerApp
and the ClientApp). Every SuperNode needs fedsim installed and names its
hospital by index in its node config (``partition-id=i``; Flower's
simulation runtime sets that itself) or, for a table federation, its own
table (``data-path=...``): each loads its own rows only (``fedsim.deploy.hospital``).
"""

import json
import shutil
from pathlib import Path

import tomli_w

from fedsim.deploy.spec import to_spec

SOURCE = Path(__file__).parent / "flower_app"  # fedsim.deploy.flower_app, copied (not imported: it sits above)
PACKAGE = "fedsim_app"
MODULES = ("__init__.py", "server_app.py", "client_app.py")


def export(experiment, out_dir: str | Path, federation: dict | None = None, results: str | Path = "") -> Path:
    """Write ``experiment`` as a Flower app into ``out_dir`` (created; its fedsim files replaced); return it.

    ``federation``: how to load a federation built from a table
    (``{"path": ..., "target": ..., "site": ...}``, see ``fedsim.deploy.spec.to_spec``).
    ``results``: the ServerApp's default ``out-dir`` (``flwr run --run-config``
    overrides it); empty: a fresh folder under $FEDSIM_RESULTS or the temp dir.
    """
    spec = to_spec(experiment, federation)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out_dir: {str(folder)!r} is a file, expected a folder")
    package = folder / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        shutil.copyfile(SOURCE / module, package / module)
    (folder / "pyproject.toml").write_text(tomli_w.dumps(pyproject(experiment, spec, str(results))))
    return folder


def pyproject(experiment, spec: dict, results: str) -> dict:
    """The app's ``pyproject.toml`` as data."""
    return {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {
            "name": "fedsim-experiment",
            "version": "1.0.0",
            "description": f"fedsim experiment {experiment.label!r} on {experiment.federation!r}",
            "license": "Apache-2.0",
            "dependencies": ["fedsim"],  # installed on every SuperNode and where the ServerApp runs
        },
        "tool": {
            "hatch": {"build": {"targets": {"wheel": {"packages": ["."]}}}},
            "flwr": {"app": {
                "publisher": "fedsim",
                "components": {"serverapp": f"{PACKAGE}.server_app:app", "clientapp": f"{PACKAGE}.client_app:app"},
                "config": {"spec": json.dumps(spec, sort_keys=True), "out-dir": results},
            }},
        },
    }
