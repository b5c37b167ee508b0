"""The Deployment Engine on this machine: the same numbers as in-process, and no process left behind."""

import re

import numpy as np
import pandas as pd
import pytest

import fedsim as fs
from fedsim.deploy import engine as deploy_engine
from fedsim.deploy import launcher
from fedsim.deploy.app import export
from fedsim.deploy.launcher import FederationError, LoopbackFederation
from tests.privacy.test_secagg import quantization_tolerance

pytestmark = pytest.mark.deployment


class RecordingFederation(LoopbackFederation):
    """A LoopbackFederation that remembers every process it started."""

    started: list["RecordingFederation"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingFederation.started.append(self)


class KeptRunning:
    """Stands in for the engine's LoopbackFederation: one started federation serves run after run, stopped once
    by the ``deployment`` fixture (each start imports TensorFlow once per hospital)."""

    def __init__(self, federation: LoopbackFederation):
        self.federation = federation

    def __call__(self, n_nodes, root, simulation=False, noise_seed=None):
        assert (n_nodes, simulation) == (self.federation.n_nodes, False)
        assert noise_seed in (None, self.federation.noise_seed)  # each SuperNode holds the experimenter's secret
        return self

    def __enter__(self):
        return self.federation

    def __exit__(self, *exc):
        return None


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A SuperLink and 3 SuperNodes with their ClientApp workers for this module's deployment runs."""
    federation = LoopbackFederation(3, tmp_path_factory.mktemp("federation"), noise_seed=NOISE_SEED).start()
    yield federation
    assert federation.close() == [] and not launcher.tagged(federation.tag)


@pytest.fixture()
def on_deployment(monkeypatch, deployment):
    """Runs with ``engine="deployment"`` in this test go to the module's ``deployment`` federation."""
    monkeypatch.setattr(deploy_engine, "LoopbackFederation", KeptRunning(deployment))
    return deployment


def global_auroc(result):
    return result.metrics.query("scope == 'global' and metric == 'auroc'").set_index("round")["value"]


# The experimenter's noise secret: in-process, and in each SuperNode's node config (never sent by the server), so
# the DP-SGD runs on both engines draw the same noise.
NOISE_SEED = 20261208
DEFENDED = dict(privacy=fs.privacy.DPSGD(noise_multiplier=1.0), adversaries=fs.adversaries.SignFlip(hospitals=["H002"]),
                defenses=fs.defenses.NormBound(), noise_seed=NOISE_SEED)


# Hospitals drop out of rounds, and H000's test split stays out of evaluation (the hospitals evaluate).
UNRELIABLE = dict(availability=fs.availability.Dropout(0.4), policies={"H000": fs.governance.Policy(evaluate=False)})


@pytest.mark.parametrize("engine, changes", [("deployment", {}), ("deployment", DEFENDED), ("ray", UNRELIABLE)],
                         ids=["deployment-fedavg", "deployment-dpsgd-signflip-normbound", "ray-alias-of-simulation"])
def test_flowers_runtimes_match_inprocess_and_stop_every_process(monkeypatch, request, tmp_path, engine, changes):
    """The simulation runtime starts and stops its own processes; the deployment runs share the ``deployment``
    fixture's, which it stops at the end of the module."""
    deployment = request.getfixturevalue("on_deployment") if engine == "deployment" else None
    if not deployment:
        monkeypatch.setattr(deploy_engine, "LoopbackFederation", RecordingFederation)
    RecordingFederation.started.clear()
    before = len(deployment.processes) if deployment else 0
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=2)
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=2, seed=1, **changes)
    reference = experiment.run()
    deployed = experiment.replace(engine=engine, out=tmp_path / "run").run()

    np.testing.assert_allclose(global_auroc(deployed), global_auroc(reference), rtol=0, atol=1e-6)
    for name in ("privacy", "adversaries", "defenses", "attacks", "policy"):  # the ledger, attacks, policies: equal
        if name in reference.tables:
            pd.testing.assert_frame_equal(deployed.tables[name].reset_index(drop=True),
                                          reference.tables[name].reset_index(drop=True), check_dtype=False,
                                          atol=1e-9)
    assert list(global_auroc(deployed).index) == [0, 1, 2]
    for a, b in zip(deployed.weights, reference.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert deployed.config == experiment.replace(engine=engine).config()
    assert deployed.config["engine"] == ("simulation" if engine == "ray" else engine)  # "ray": another name
    assert deployed.audit_path == tmp_path / "run" / "audit.jsonl"
    assert list(deployed.audit.kind)[0] == "start" and list(deployed.audit.kind)[-1] == "end"
    assert list(deployed.participation.columns) == list(reference.participation.columns)

    if deployment:  # the run's own process (`flwr run`) ended; the SuperLink, SuperNodes and workers stay up
        (name, run), = deployment.processes[before:]
        assert name == "flwr run" and not launcher.alive(run.pid)
        assert all(launcher.alive(p.pid) for _, p in deployment.processes[:1 + 2 * 3])
        return
    (federation,) = RecordingFederation.started
    assert federation.simulation and len(federation.processes) == 2  # the simulation's SuperLink and `flwr run`
    assert not [p.pid for _, p in federation.processes if launcher.alive(p.pid)]
    assert not launcher.tagged(federation.tag)


def test_secagg_completes_on_the_deployment_engine(tmp_path, on_deployment):
    """SecAgg+ across processes: Flower's workflow and mod, each hospital masking in its own process."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=2)
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=1, seed=1, privacy=fs.privacy.SecAgg())
    reference = experiment.run()
    deployed = experiment.replace(engine="deployment", out=tmp_path / "run").run()
    assert list(global_auroc(deployed).index) == [0, 1]
    assert deployed.participation.empty  # every hospital took part in every stage
    # Stochastic rounding happens in each SuperNode's own process (not seeded by the run): equal up to quantization
    # (the bound test_secagg computes for its two rounds holds for one).
    for a, b in zip(deployed.weights, reference.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=quantization_tolerance(fed))


def test_a_failing_run_raises_with_its_log(monkeypatch, tmp_path, on_deployment):
    def broken_export(experiment, folder):  # the ServerApp will fail to read its spec
        app = export(experiment, folder)
        pyproject = app / "pyproject.toml"
        pyproject.write_text(re.sub(r"^spec = .*$", 'spec = "{}"', pyproject.read_text(), flags=re.M))
        return app

    monkeypatch.setattr(deploy_engine, "export", broken_export)
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=2)
    experiment = fs.Experiment(federation=fed, model="logreg", rounds=1, engine="deployment", out=tmp_path / "run")
    with pytest.raises(FederationError, match="(?s)ended without a result.*not a fedsim spec"):
        experiment.run()


@pytest.mark.parametrize("error", [RuntimeError("the run failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_federation_stops_every_process_when_its_run_fails_or_is_interrupted(tmp_path, error):
    """What the engine's ``with LoopbackFederation(...)`` does when the run raises or the user presses Ctrl-C."""
    with pytest.raises(type(error)):
        with LoopbackFederation(2, tmp_path, simulation=True) as federation:
            assert launcher.alive(federation.processes[0][1].pid)  # the SuperLink
            raise error
    assert not [p.pid for _, p in federation.processes if launcher.alive(p.pid)]
    assert not launcher.tagged(federation.tag)
