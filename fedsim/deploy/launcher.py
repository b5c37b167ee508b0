"""A Flower federation on this machine, started from Python: ``LoopbackFederation``.

Deployment: ``flower-superlink --insecure`` and one ``flower-supernode`` per
hospital (``--node-config "partition-id=i num-partitions=n"``), each with its
own free port on 127.0.0.1 and its own ``FLWR_HOME`` under the federation's
folder, with ``--isolation process`` and a long-lived ClientApp process
(``fedsim.deploy.worker``) beside it. Simulation: one ``flower-superlink
--simulation`` (Flower's simulation runtime runs the nodes).

``run(app)`` is ``flwr run APP loopback --stream``; ``close()`` stops every
process started, and everything they started (each carries the federation's
tag in its environment), SIGTERM first, SIGKILL after a grace period.
Telemetry and update checks are off; the SuperLink installs no dependencies.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

import tomli_w

from fedsim.settings import FEDERATION_TAG

TAG = FEDERATION_TAG
BIN = Path(sys.executable).parent  # flower-superlink, flwr-serverapp, ... are started by name


class FederationError(RuntimeError):
    """The federation did not start, or a run failed; the message ends with the relevant log tail."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1, free right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def healthy(port: int) -> bool:
    """Whether a Flower server answers ``/health`` on 127.0.0.1:port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as reply:
            return reply.status == 200
    except OSError:
        return False


def tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``tag``."""
    needle, found = f"{TAG}={tag}".encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class LoopbackFederation:
    """A SuperLink and ``n_nodes`` SuperNodes (or a simulation SuperLink) on 127.0.0.1; a context manager.

    ``root``: the folder for logs, each process's ``FLWR_HOME`` and run
    configs. ``timeout``: seconds to wait for each process to come up.
    ``noise_seed``: the experimenter's secret, given to every SuperNode in its
    node config (``noise-seed``), as a hospital's operator would set its own;
    the SuperLink and the ServerApp never see it (None: each node draws a
    fresh secret).
    """

    def __init__(self, n_nodes: int, root: str | Path, simulation: bool = False, timeout: float = 300,
                 noise_seed: int | None = None):
        self.n_nodes, self.simulation, self.timeout = n_nodes, simulation, timeout
        self.noise_seed = noise_seed
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tag = uuid.uuid4().hex
        self.port, *self.node_ports = free_ports(1 + (0 if simulation else n_nodes))
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def env(self, name: str) -> dict[str, str]:
        """The environment of one process: its own FLWR_HOME, the venv on PATH, telemetry off, the tag."""
        home = self.root / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "FLWR_HOME": str(home),
                "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
                "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"), TAG: self.tag}

    def spawn(self, name: str, command: list[str], log: str | None = None) -> subprocess.Popen:
        """Start ``command`` in its own session, output to ``<log or name>.log``."""
        with open(self.root / f"{log or name}.log", "ab") as out:
            process = subprocess.Popen(command, env=self.env(log or name), stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 25) -> str:
        """The last lines of a process's log."""
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait(self, ready: Callable[[], bool], what: str, process: subprocess.Popen, log: str) -> None:
        """Wait until ``ready()``; fail with the log tail if ``process`` exits or the timeout passes."""
        deadline = time.monotonic() + self.timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                why = f"exited with code {process.returncode}" if process.poll() is not None else \
                    f"not ready after {self.timeout:.0f} s"
                raise FederationError(f"{what} {why}; {log}.log ends with:\n{self.log_tail(log)}")
            time.sleep(0.1)

    def start(self) -> "LoopbackFederation":
        """Start the SuperLink, then the SuperNodes and their ClientApp workers; return when all are up."""
        link = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(self.port),
                "--disable-runtime-dependency-installation", *(["--simulation"] if self.simulation else [])]
        self.wait(lambda: healthy(self.port), "the SuperLink", self.spawn("superlink", link), "superlink")
        if self.simulation:
            return self
        nodes = []
        for i, port in enumerate(self.node_ports):  # SuperNodes, then their workers, each batch starting together
            nodes.append((i, port, self.spawn(f"supernode-{i}", [
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}", "--host", "127.0.0.1",
                "--port", str(port), "--isolation", "process",
                "--node-config", f"partition-id={i} num-partitions={self.n_nodes}" + (
                    f" noise-seed={self.noise_seed}" if self.noise_seed is not None else "")])))
        for i, port, node in nodes:
            self.wait(lambda p=port: healthy(p), f"SuperNode {i}", node, f"supernode-{i}")
        workers = []
        for i, port, node in nodes:
            ready = self.root / f"worker-{i}.ready"
            workers.append((i, ready, self.spawn(f"worker-{i}", [
                sys.executable, "-m", "fedsim.deploy.worker", "--runtime-api-address", f"127.0.0.1:{port}",
                "--parent-pid", str(node.pid), "--ready-file", str(ready)], log=f"supernode-{i}")))
        for i, ready, worker in workers:
            self.wait(ready.exists, f"the ClientApp worker of SuperNode {i}", worker, f"supernode-{i}")
        return self

    def run(self, app: str | Path, run_config: dict | None = None, on_line: Callable[[str], None] | None = None,
            timeout: float = 3600) -> int:
        """``flwr run APP`` on this federation with ``--stream``; return the run id when the log stream ends.

        ``run_config`` overrides the app's run config; ``on_line`` gets each
        streamed log line. A run that does not end within ``timeout`` seconds
        raises ``FederationError`` (``close()`` then stops it).
        """
        env = self.env("flwr")
        Path(env["FLWR_HOME"], "config.toml").write_text(tomli_w.dumps({"superlink": {
            "default": "loopback", "loopback": {"address": f"127.0.0.1:{self.port}", "insecure": True}}}))
        command = ["flwr", "run", str(Path(app).resolve()), "loopback", "--stream"]
        if run_config:  # a TOML file: `k=v` pairs cannot carry a JSON string
            path = self.root / f"run-config-{uuid.uuid4().hex[:8]}.toml"
            path.write_text(tomli_w.dumps(run_config))
            command += ["--run-config", str(path)]
        if self.simulation:
            command += ["--federation-config", f"num-supernodes={self.n_nodes}"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        self.processes.append(("flwr run", process))
        tail: deque[str] = deque(maxlen=25)
        started: list[int] = []

        def follow() -> None:  # the stream ends with the run
            with process.stdout:
                for line in process.stdout:
                    tail.append(line.rstrip())
                    if on_line is not None:
                        on_line(line)
                    if not started and (found := re.search(r"Successfully started run (\d+)", line)):
                        started.append(int(found.group(1)))

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FederationError(f"the run did not end within {timeout:.0f} s; its log ends with:\n"
                                  + "\n".join(tail)) from None
        reader.join(timeout=5)
        if not started:
            raise FederationError(f"`flwr run` started no run (exit code {process.returncode}):\n" + "\n".join(tail))
        return started[0]

    def close(self, grace: float = 10.0) -> list[int]:
        """Stop every process of the federation; return the PIDs still alive afterwards (none, normally)."""
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = {p.pid for _, p in self.processes if p.poll() is None} | set(tagged(self.tag))
            for pid in pids:
                for kill in (os.killpg, os.kill):  # its session's group first: each was started in its own
                    try:
                        kill(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and (any(p.poll() is None for _, p in self.processes)
                                                   or tagged(self.tag)):
                time.sleep(0.1)
        return [p.pid for _, p in self.processes if p.poll() is None] + tagged(self.tag)

    def __enter__(self) -> "LoopbackFederation":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        left = self.close()
        if left:
            raise FederationError(f"processes still alive after stopping the federation: {left}")
