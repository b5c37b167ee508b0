"""Every notebooks/*.ipynb runs top to bottom in quick mode without an error.

The kernel runs in a temporary folder (figures and files stay out of the
repository) with FEDSIM_QUICK=1, on this interpreter: a private "python3"
kernelspec pointing at ``sys.executable`` shadows any other one installed on
the machine, so the notebooks see the same packages as the test suite.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.fixture()
def kernel_env(tmp_path, monkeypatch):
    """A 'python3' kernelspec for this interpreter, first on JUPYTER_PATH; quick mode on."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (fedsim tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(tmp_path / "jupyter"),
                                                                    os.environ.get("JUPYTER_PATH")])))
    monkeypatch.setenv("FEDSIM_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "work"
    work.mkdir()
    return work


def _has_parameters_cell(nb) -> bool:
    return any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    assert _has_parameters_cell(nb), f"{path.name}: no cell tagged 'parameters' (cell metadata tags)"
    # A last cell reports which interpreter and mode the kernel ran with.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys; print(sys.executable); print('QUICK', QUICK)"))

    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(kernel_env)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed in quick mode:\n{error}")

    errors = [
        (i, out.get("ename"), out.get("evalue"))
        for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.output_type == "error"
    ]
    assert not errors, f"{path.name}: cells raised {errors}"
    report = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.output_type == "stream")
    assert os.path.realpath(report.splitlines()[0]) == os.path.realpath(sys.executable), report
    assert "QUICK True" in report, f"{path.name} did not pick up FEDSIM_QUICK=1: {report}"
