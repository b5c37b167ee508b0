"""``Experiment(engine="deployment" | "simulation").run()``: export the app, run it on this machine, read back.

Both engines are registered here (``fedsim.engine.engines``); ``ray`` is
another name of ``simulation`` (the name it had when it ran Flower's
deprecated ``run_simulation``).

``deployment``: a SuperLink and one SuperNode per hospital on 127.0.0.1, each
SuperNode with a long-lived ClientApp process; ``simulation``: Flower's
simulation runtime behind a SuperLink (``flwr run`` with ``num-supernodes``,
not the deprecated ``run_simulation``). The ServerApp writes the Result and
the audit log into the experiment's results folder (``out``, or a fresh one);
they are read back into this process. Every process started is stopped, also
when the run fails or is interrupted.
"""

import re
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fedsim.deploy.app import export
from fedsim.deploy.launcher import FederationError, LoopbackFederation
from fedsim.deploy.outputs import DONE, read_result
from fedsim.deploy.spec import to_spec
from fedsim.engine.engines import register
from fedsim.governance.trail import results_folder
from fedsim.models import resolve_model
from fedsim.results import Result

ROUND = re.compile(r"\[ROUND (\d+)/\d+\]")  # Flower's log line as a round starts


@dataclass(frozen=True)
class FlowerRuntime:
    """An engine that runs the experiment as an exported Flower app: on a loopback Deployment Engine (a SuperLink
    and one SuperNode per hospital) or on Flower's simulation runtime (``simulation``)."""

    name: str
    simulation: bool

    def check(self, experiment) -> None:
        """What cannot travel to the federation's processes is refused (``fedsim.deploy.spec.to_spec``)."""
        to_spec(experiment)

    def run(self, experiment) -> Result:
        """Export, run on this machine, read the Result and its audit log back (``run``)."""
        return run(experiment)

    def export(self, experiment, folder, federation: dict | None = None) -> Path:
        """Write ``experiment`` as a self-contained Flower app folder (``fedsim.deploy.app.export``)."""
        return export(experiment, folder, federation)


register(FlowerRuntime("deployment", simulation=False))
register(FlowerRuntime("simulation", simulation=True), aliases=("ray",))


def run(experiment, timeout: float = 3600) -> Result:
    """Run ``experiment`` as a Flower app on a federation of processes on this machine; its Result."""
    folder = results_folder(experiment.out, experiment.label).resolve()
    with tempfile.TemporaryDirectory(prefix="fedsim-federation-") as root:
        app = export(experiment, Path(root) / "app")
        log: deque[str] = deque(maxlen=40)
        progress = tqdm(total=experiment.rounds, desc=f"{experiment.label} ({experiment.engine})", unit="round",
                        leave=False)

        def follow(line: str) -> None:
            log.append(line.rstrip())
            if found := ROUND.search(line):
                progress.update(int(found.group(1)) - 1 - progress.n)

        with progress, LoopbackFederation(experiment.federation.n_hospitals, Path(root) / "federation",
                                          simulation=experiment.engine == "simulation",
                                          noise_seed=experiment.noise_seed) as federation:
            federation.run(app, {"out-dir": str(folder)}, on_line=follow, timeout=timeout)
            if not (folder / DONE).exists():
                raise FederationError(f"the {experiment.engine} run of {experiment.label!r} ended without a result; "
                                      f"its log ends with:\n" + "\n".join(log)
                                      + "\n--- superlink.log ---\n" + federation.log_tail("superlink"))
    return read_result(folder, experiment, resolve_model(experiment.model))
