"""Each hospital holds only its own rows and the server none: the exported app's first round and run, in-process.

The exported ClientApp runs on the in-process Grid (no Flower processes), so
what every party holds can be inspected: the server's federation has no row,
each hospital's has its own, and the run still equals the simulation's.
"""

import json

import numpy as np
import pandas as pd
import pytest
from flwr.app import Array, ArrayRecord, MessageType

import data_synthetic as ds
import fedsim as fs
from fedsim.deploy.flower_app import client_app as exported
from fedsim.deploy.roster import FirstRoundError, first_round
from fedsim.deploy.spec import experiment_fields, to_spec
from fedsim.engine.grid import InProcessGrid


def federation_of_processes(spec: dict, n: int, node_configs=None, app=exported.app) -> InProcessGrid:
    """An in-process Grid whose nodes run the exported ClientApp with ``spec`` in their run config."""
    exported._HOSPITALS.clear()
    grid = InProcessGrid(app, n)
    for node in grid.get_node_ids():
        context = grid.context(node)
        context.run_config = {"spec": json.dumps(spec)}
        context.node_config.update((node_configs or {}).get(node - 1, {}))
    return grid


def held(hospital: str):
    """The federation the exported ClientApp of ``hospital`` built."""
    (found,) = [h.held for h in exported._HOSPITALS.values() if h.held is not None and h.hospital == hospital]
    return found


def run_exported(grid, spec):
    """What the exported ServerApp does: the first round, then the experiment on the server's federation."""
    federation, hospital_of = first_round(grid, spec)
    return federation, fs.Experiment(**experiment_fields(spec, federation=federation)).run_on(grid, hospital_of)


def test_each_hospital_holds_its_own_rows_and_the_server_none():
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=900, seed=4, missingness=1.0)
    experiment = fs.Experiment(fed, model="logreg", rounds=2, seed=3,
                               policies={"H002": fs.governance.Policy(evaluate=False)})
    spec = to_spec(experiment.replace(engine="deployment"))  # the report says what a deployment's server saw
    grid = federation_of_processes(spec, 3)
    server, result = run_exported(grid, spec)

    assert server.x_train.shape == (0, fed.n_features) and server.x_test.shape == (0, fed.n_features)
    with pytest.raises(ValueError, match="^hospital: H000's rows are held by H000 only"):
        server.train_rows(0)
    pd.testing.assert_frame_equal(server.roster, fed.roster)  # counts, events and data fingerprints
    np.testing.assert_array_equal(server.preprocessor.mean, fed.preprocessor.mean)
    np.testing.assert_array_equal(server.preprocessor.std, fed.preprocessor.std)
    for i, hospital in enumerate(fed.hospitals):
        own = held(hospital)
        assert len(own.y_train) == fed.n_train[i] and len(own.y_test) == fed.n_test[i]  # its rows, no other's
        for mine, simulated in zip((*own.train_rows(i), *own.test_rows(i)), (*fed.train_rows(i), *fed.test_rows(i))):
            np.testing.assert_array_equal(mine, simulated)  # the same model inputs as the simulation's
        other = (i + 1) % 3
        with pytest.raises(ValueError, match=f"^hospital: {fed.hospitals[other]}'s rows are held by"):
            own.train_rows(other)

    reference = experiment.run()
    pd.testing.assert_frame_equal(result.metrics, reference.metrics, check_exact=False, rtol=0, atol=1e-6)
    assert "H002" not in set(result.metrics.scope)  # its test split is left out, as in the simulation
    for a, b in zip(result.weights, reference.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    def start(run):
        return run.audit.query("kind == 'start'").iloc[0].data

    assert start(result)["data_fingerprints"] == start(reference)["data_fingerprints"]  # as each hospital told
    assert start(result)["data"] == start(reference)["data"]
    def final(run):  # the audit log's evaluation of the final model, from the hospitals' own test splits
        return run.audit.query("kind == 'result'").iloc[0].data["evaluation"]

    assert set(final(result)["scopes"]) == set(final(reference)["scopes"]) == {"global", "H000", "H001"}
    assert final(result)["scopes"]["global"]["n_test"] == final(reference)["scopes"]["global"]["n_test"]
    assert final(result)["scopes"]["global"]["auroc"] == pytest.approx(final(reference)["scopes"]["global"]["auroc"],
                                                                       abs=1e-6)
    report = fs.governance.report(result.audit_path.parent)["markdown"].read_text(encoding="utf-8")
    assert ("each hospital loaded and kept its own records only; the server held none" in " ".join(report.split())
            and "predicted risk and outcome (no features, no identifiers)" in " ".join(report.split()))


def test_a_hospital_reads_its_own_file_and_a_table_run_equals_the_simulation(tmp_path):
    cohort = ds.generate("readmission_30d", n_hospitals=3, n_patients=900, seed=5)
    table = cohort.patients.assign(hospital=cohort.patients.hospital.astype(str))
    args = dict(target="readmitted_30d", site="hospital", seed=5)
    fed = fs.Federation.from_dataframe(table, **args)
    files = {}
    for i, (hospital, rows) in enumerate(table.groupby("hospital")):
        files[i] = {"data-path": str(tmp_path / f"{hospital}.parquet")}
        rows.to_parquet(files[i]["data-path"], index=False)
    experiment = fs.Experiment(fed, model="logreg", rounds=1, seed=0)
    spec = to_spec(experiment, federation=args)  # no shared path: each hospital reads its own file
    assert "path" not in spec["federation"]["table"] and spec["federation"]["table"]["hospitals"] == list(fed.hospitals)
    server, result = run_exported(federation_of_processes(spec, 3, files), spec)

    assert len(server.y_train) == 0 and server.preprocessor.feature_names == fed.preprocessor.feature_names
    for i, hospital in enumerate(fed.hospitals):
        np.testing.assert_array_equal(held(hospital).train_rows(i)[0], fed.train_rows(i)[0])
    reference = experiment.run()
    pd.testing.assert_frame_equal(result.metrics, reference.metrics, check_exact=False, rtol=0, atol=1e-6)


def test_scans_are_generated_per_hospital_on_every_node():
    fed = fs.synthetic_federation("lesion_scans", n_hospitals=2, n_patients=200, seed=1)
    experiment = fs.Experiment(fed, model="cnn", rounds=1, seed=0, batch_size=16)
    spec = to_spec(experiment)
    server, result = run_exported(federation_of_processes(spec, 2), spec)
    assert server.image_shape == fed.image_shape and len(server.x_train) == 0
    for i, hospital in enumerate(fed.hospitals):
        np.testing.assert_array_equal(held(hospital).images("train", i), fed.images("train", i))
    assert result.final("auroc") == pytest.approx(experiment.run().final("auroc"), abs=1e-6)


def test_a_first_round_that_does_not_add_up_stops_the_run_naming_the_node(tmp_path):
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=0)
    spec = to_spec(fs.Experiment(fed, rounds=1))
    twice = federation_of_processes(spec, 3, {2: {"partition-id": 1}})  # two nodes say they are H001
    with pytest.raises(FirstRoundError, match=r"^first round: two nodes serve the same hospital \['H001'\]"):
        first_round(twice, spec)
    outside = federation_of_processes(spec, 3, {0: {"partition-id": 7}})
    with pytest.raises(FirstRoundError, match=r"^first round \(statistics\): node 1: .*partition-id: must be an "
                                              r"integer >= 0 and <= 2, got 7"):
        first_round(outside, spec)

    def lying(message, context):  # H002's node claims a negative number of training rows
        reply = exported.app(message, context)
        if context.node_config["partition-id"] == 2 and message.metadata.message_type == MessageType.QUERY:
            told = json.loads(str(reply.content["fedsim"]["json"]))
            reply.content["fedsim"]["json"] = json.dumps({**told, "n_train": -5})
        return reply

    with pytest.raises(FirstRoundError, match=r"^first round: node 3 told n_train: must be an integer >= 1, got -5$"):
        first_round(federation_of_processes(spec, 3, app=lying), spec)
    table = fed.data.drop(columns="split")
    table.to_csv(tmp_path / "all.csv", index=False)
    spec = to_spec(fs.Experiment(fed, rounds=1), federation={"target": fed.target, "site": "hospital"})
    shared = federation_of_processes(spec, 3, {1: {"data-path": str(tmp_path / "all.csv")}})
    with pytest.raises(FirstRoundError, match="data-path: .*all.csv' holds the rows of 3 sites"):
        first_round(shared, spec)


def test_a_malformed_evaluation_reply_is_logged_and_leaves_that_hospital_out_of_the_round():
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=0)
    spec = to_spec(fs.Experiment(fed, model="logreg", rounds=1))

    def hostile(message, context):  # H001's node answers every evaluation with NaN risks
        reply = exported.app(message, context)
        if message.metadata.message_type == MessageType.EVALUATE and context.node_config["partition-id"] == 1:
            n = int(fed.n_test[1])
            reply.content["test"] = ArrayRecord({"risks": Array(np.full(n, np.nan, np.float32)),
                                                 "labels": Array(np.zeros(n, np.float32))})
        return reply

    _, result = run_exported(federation_of_processes(spec, 3, app=hostile), spec)
    logged = result.participation.query("event == 'not evaluated'")
    assert list(logged.hospital) == ["H001", "H001"] and list(logged["round"]) == [0, 1]
    assert set(logged.reason) == {"evaluation reply holds risks outside [0, 1] or labels other than 0/1"}
    final = result.audit.query("kind == 'result'").iloc[0].data["evaluation"]["scopes"]
    assert final["global"]["n_test"] == fed.n_test[0] + fed.n_test[2]  # the pooled set without H001's rows


def test_a_clientapp_process_started_per_message_builds_the_same_hospital_from_the_node_state():
    """Flower's default isolation starts a ClientApp process per message: the setup survives in context.state."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=600, seed=1)
    experiment = fs.Experiment(fed, model="logreg", rounds=2, seed=0)
    spec = to_spec(experiment)
    grid = federation_of_processes(spec, 3)
    federation, hospital_of = first_round(grid, spec)

    def fresh_process(message, context):  # nothing of an earlier message's process is left
        exported._HOSPITALS.clear()
        return exported.app(message, context)

    grid.client_app = fresh_process
    result = fs.Experiment(**experiment_fields(spec, federation=federation)).run_on(grid, hospital_of)
    pd.testing.assert_frame_equal(result.metrics, experiment.run().metrics, check_exact=False, rtol=0, atol=1e-6)
    # Messages before any setup: every reply is an error, recorded; the run ends with the untrained model.
    fresh = federation_of_processes(spec, 3, app=fresh_process)
    lost = fs.Experiment(**experiment_fields(spec, federation=federation)).run_on(fresh, {1: "H000", 2: "H001",
                                                                                        3: "H002"})
    assert set(lost.participation.event) == {"failed", "not evaluated"}
    assert set(lost.participation.query("event == 'not evaluated'").reason) == {
        "evaluation failed: RuntimeError: this hospital got a training or evaluation message before the first "
        "round's setup"}
    assert np.isnan(lost.final("auroc"))
