"""Every notebooks/*.ipynb runs top to bottom in quick mode, shows its figures and states only what its numbers show.

The kernel runs in a temporary folder (figures and files stay out of the
repository) with FEDSIM_QUICK=1 and FEDSIM_CLAIMS=strict (a sentence of the
text that a ``fs.claim`` cell finds false raises), on this interpreter: a
private "python3" kernelspec pointing at ``sys.executable`` shadows any other
one installed on the machine, so the notebooks see the same packages as the
test suite. Each code cell that calls a plotting function must display an
image; no cell may print TensorFlow's native log lines; the notebooks are
saved without outputs. One notebook also runs in JupyterLab in a headless
Chromium, where one is installed (skipped otherwise).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
# A call that draws a figure: fedsim's figures, a result's or federation's .plot(), pandas' .plot.*, seaborn, pyplot.
PLOTTING = re.compile(r"\bfs\.plots\.\w+\(|\bplot_\w+\(|\.plot(\.\w+)?\(|\bsns\.(?!set_theme|move_legend|color_palette)"
                      r"\w+\(|\bplt\.subplots\(")
NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit|oneDNN|TF_ENABLE_ONEDNN_OPTS", re.MULTILINE)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_saved_without_outputs(path):
    """Outputs belong to a run, not to the repository: clear them (JupyterLab: Edit > Clear Outputs of All Cells)."""
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs or execution counts; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_link_of_a_notebook_opens(path):
    """Relative links (the datasheet, other notebooks, the index) point at files of the repository, which
    ``make lab`` serves from its root."""
    nb = nbformat.read(path, as_version=4)
    targets = [m.group(1).split("#")[0] for cell in nb.cells if cell.cell_type == "markdown"
               for m in re.finditer(r"\]\(([^)\s]+)\)", cell.source) if "://" not in m.group(1)]
    missing = [t for t in targets if t and not (path.parent / t).resolve().exists()]
    assert not missing, f"{path.name}: links to missing files {missing}"
    assert all((path.parent / t).resolve().is_relative_to(ROOT) for t in targets if t), "a link leaves the repository"


def test_the_plotting_pattern_finds_plots():
    for source in ("fs.plots.plot_comparison(table)", "fed.plot()", "ax = counts.plot.bar(stacked=True)",
                   "sns.barplot(df, x='a', y='b')", "fig, ax = plt.subplots()", "comparison.plot_reconstructions()"):
        assert PLOTTING.search(source), source
    for source in ("sns.set_theme(style='whitegrid')", "table.head()", "fs.claim('x', True)"):
        assert not PLOTTING.search(source), source


@pytest.fixture()
def kernel_env(tmp_path, monkeypatch):
    """A 'python3' kernelspec for this interpreter, first on JUPYTER_PATH; quick mode and strict claims on."""
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
    monkeypatch.setenv("FEDSIM_CLAIMS", "strict")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "work"
    work.mkdir()
    return work


def _has_parameters_cell(nb) -> bool:
    return any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.cells)


def _shows_image(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])
               if out.output_type in ("display_data", "execute_result"))


def _text(cell, name: str | None = None) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.output_type == "stream" and (name is None or out.get("name") == name))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    assert _has_parameters_cell(nb), f"{path.name}: no cell tagged 'parameters' (cell metadata tags)"
    assert any("fs.claim(" in cell.source for cell in nb.cells if cell.cell_type == "code"), \
        f"{path.name}: no fs.claim(...) checks what its text says against its numbers"
    # A last cell reports which interpreter and mode the kernel ran with.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys; print(sys.executable); print('QUICK', QUICK)"))

    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(kernel_env)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed in quick mode:\n{error}")

    code = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in code
              for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors, f"{path.name}: cells raised {errors}"
    report = _text(nb.cells[-1], "stdout")
    assert os.path.realpath(report.splitlines()[0]) == os.path.realpath(sys.executable), report
    assert "QUICK True" in report, f"{path.name} did not pick up FEDSIM_QUICK=1: {report}"

    blank = [i for i, cell in code if PLOTTING.search(cell.source) and not _shows_image(cell)]
    assert not blank, (f"{path.name}: cells {blank} call a plotting function but show no figure (a fedsim figure "
                       "shows only as the cell's value: no trailing ';', or display(fig))")
    noisy = [(i, m.group()) for i, cell in code for m in [NATIVE_LOG.search(_text(cell))] if m]
    assert not noisy, f"{path.name}: TensorFlow's native log lines in cells {noisy}"
    claims = [line for _, cell in code for line in _text(cell, "stdout").splitlines() if line[:2] in ("✓ ", "✗ ")]
    assert claims and all(line.startswith("✓ ") for line in claims), f"{path.name}: claims {claims}"


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def jupyterlab(kernel_env, tmp_path):
    """A JupyterLab server on 127.0.0.1 rooted at a copy of the repository's notebooks and datasheet; stopped by
    its PID."""
    root = tmp_path / "lab"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(ROOT / "data_synthetic", root / "data_synthetic", ignore=shutil.ignore_patterns("__pycache__"))
    port, token = _free_port(), "fedsim-test"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.disable_check_xsrf=True",
         "--LabApp.news_url=", *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
             "JUPYTER_DATA_DIR": str(tmp_path / "jupyter")})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.skipif(not (BROWSER and DRIVER), reason="no Chromium and chromedriver here (Debian: apt-get "
                                                     "install chromium chromium-driver): browser test skipped")
def test_notebook_01_runs_in_jupyterlab_in_a_browser(jupyterlab):
    """Open 01 in JupyterLab, Run All, wait for the kernel; every claim line is ✓, figures appear, no error."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.common.by import By

    url, token, root = jupyterlab
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        driver.get(f"{url}/lab/tree/notebooks/01_threat_model.ipynb?token={token}")
        deadline = time.monotonic() + 90
        while not driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell") and time.monotonic() < deadline:
            time.sleep(1)
        assert driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), "the notebook did not open"
        _wait_for_idle_kernel(driver, deadline=time.monotonic() + 90)
        _run_all_from_the_menu(driver, By)
        time.sleep(3)
        _wait_for_idle_kernel(driver, deadline=time.monotonic() + 400)
        text = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
        images = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        errors = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type*='error']")
        driver.save_screenshot(str(root / "screenshot.png"))
    finally:
        driver.quit()
    assert not errors, f"cells raised: {[e.text[:300] for e in errors]}"
    claims = [line for line in text.splitlines() if line[:2] in ("✓ ", "✗ ")]
    assert claims and all(line.startswith("✓ ") for line in claims), claims
    assert len(images) >= 3, f"only {len(images)} figures shown"
    assert not NATIVE_LOG.search(text), "TensorFlow's native log lines in the notebook"


def _wait_for_idle_kernel(driver, deadline: float) -> None:
    """Until the notebook's kernel is idle and no cell is queued or running ('[*]')."""
    script = ("const s = document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-KernelStatus');"
              "const busy = [...document.querySelectorAll('.jp-InputArea-prompt')]"
              ".some(p => p.textContent.includes('*'));"
              "return [busy, s ? (s.getAttribute('data-status') || s.textContent) : ''];")
    idle_since = None
    while time.monotonic() < deadline:
        busy, status = driver.execute_script(script)
        if not busy and "busy" not in str(status).lower() and "starting" not in str(status).lower():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3:
                return
        else:
            idle_since = None
        time.sleep(1)
    pytest.fail("the kernel stayed busy past the deadline")


def _run_all_from_the_menu(driver, by) -> None:
    """Run > Run All Cells, through JupyterLab's menu bar."""
    menus = [m for m in driver.find_elements(by.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if m.text == "Run"]
    assert menus, "no Run menu"
    menus[0].click()
    time.sleep(0.5)
    items = [i for i in driver.find_elements(by.CSS_SELECTOR, ".lm-Menu-itemLabel") if i.text == "Run All Cells"]
    assert items, "no 'Run All Cells' in the Run menu"
    items[0].click()
