"""The in-process Grid against Flower's message contract and observers (Flower's runtimes: tests/deploy)."""

import pytest
from flwr.serverapp.strategy import FedMedian

import fedsim as fs
from tests.recording import Recorder


def test_observers_see_every_reply_before_aggregation(small_fed):
    recorder = Recorder()
    fs.Experiment(federation=small_fed, rounds=2, observers=[recorder]).run()
    assert [e.server_round for e in recorder.exchanges] == [1, 2]
    for exchange in recorder.exchanges:
        assert exchange.message_type == "train"
        assert set(exchange.replies) == set(small_fed.hospitals)
        for hospital, content in exchange.updates().items():
            i = small_fed.hospitals.index(hospital)
            assert content["metrics"]["num-examples"] == len(small_fed.train_rows(i)[1])
            assert exchange.replies[hospital].metadata.src_node_id == i + 1


def test_fraction_train_samples_hospitals(iid_fed):
    recorder = Recorder()
    fs.Experiment(federation=iid_fed, rounds=3, fraction_train=0.5, observers=[recorder]).run()
    sampled = [set(e.replies) for e in recorder.exchanges]
    assert all(len(s) == 5 for s in sampled)
    assert len(set.union(*sampled)) > 5


def test_each_node_gets_its_own_copy_of_the_message(small_fed):
    def greedy_mod(message, context, call_next):
        # Like secaggplus_mod, this mod pops what it reads from its incoming message.
        if context.node_config["partition-id"] == 0:
            message.content["config"].pop("lr")
            message.content["config"]["lr"] = 0.05
        return call_next(message, context)

    recorder = Recorder()
    fs.Experiment(federation=small_fed, rounds=1, client_mods=[greedy_mod], observers=[recorder]).run()
    assert recorder.exchanges[0].failures() == {}
    assert recorder.exchanges[0].sent["H000"].content["config"]["lr"] == 0.05


def test_a_failing_hospital_never_stops_the_experiment(small_fed):
    def crash_at_second_hospital(message, context, call_next):
        if context.node_config["partition-id"] == 1:
            raise RuntimeError("scanner offline")
        return call_next(message, context)

    recorder = Recorder()
    res = fs.Experiment(federation=small_fed, rounds=2, client_mods=[crash_at_second_hospital],
                        observers=[recorder]).run()
    for exchange in recorder.exchanges:
        assert exchange.failures() == {"H001": "RuntimeError: scanner offline"}
        assert len(exchange.updates()) == 3
    losses = res.metrics.query("scope == 'global' and metric == 'loss'").value.to_numpy()
    assert losses[-1] < losses[0]  # the others' updates were still aggregated


def test_a_flower_strategy_instance_runs_unmodified(small_fed):
    res = fs.Experiment(federation=small_fed, strategy=FedMedian(fraction_evaluate=0.0), rounds=2).run()
    assert res.name == "FedMedian"
    assert res.metrics["round"].max() == 2


def test_federated_evaluation_runs_on_hospital_test_splits(small_fed):
    recorder = Recorder()
    fs.Experiment(federation=small_fed, strategy=FedMedian(fraction_evaluate=1.0), rounds=1,
                  observers=[recorder]).run()
    evaluation = [e for e in recorder.exchanges if e.message_type == "evaluate"][0]
    for hospital, content in evaluation.updates().items():
        assert content["metrics"]["num-examples"] == len(small_fed.test_rows(small_fed.hospitals.index(hospital))[1])
        assert 0 <= content["metrics"]["accuracy"] <= 1


def test_an_engine_of_your_own_is_registered_and_used_by_name(small_fed):
    """An engine is an object with a name, check(experiment) and run(experiment); registered, it runs by name."""
    ran = []

    class Counting:
        name = "counting"

        def check(self, experiment):
            if experiment.rounds > 5:
                raise ValueError("rounds: the counting engine runs at most 5")

        def run(self, experiment):
            ran.append(experiment.label)
            return experiment.execute(lambda plan: fs.engine.run_inprocess(plan))

    fs.engine.register(Counting(), aliases=("tally",))
    try:
        res = fs.Experiment(federation=small_fed, model="logreg", rounds=2, engine="tally").run()
        assert ran == ["FedAvg"] and res.config["engine"] == "counting" and res.final("auroc") > 0.5
        with pytest.raises(ValueError, match="^rounds: the counting engine runs at most 5"):
            fs.Experiment(federation=small_fed, rounds=6, engine="counting")
        with pytest.raises(ValueError, match="^engine: must be one of"):
            fs.Experiment(federation=small_fed, engine="warp")
    finally:
        fs.engine.ENGINES.pop("counting")
        fs.engine.ALIASES.pop("tally")
