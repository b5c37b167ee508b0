"""A hostile hospital on every path: the run completes, the reply is rejected with its reason, the ledger
stays an upper bound of the privacy really spent, and the model is the one the honest hospitals make.

Hospital H000 rewrites its own train reply (a ClientApp mod, the ``custom`` stage: outside any client-side
privacy mod, as a malicious hospital would). Each run is compared with the same run where H000 simply fails:
the aggregate must be exactly the honest hospitals' (bit for bit where no randomness depends on H000).
"""

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

import fedsim as fs
from fedsim.engine.messages import replace_weights, weights_of
from fedsim.privacy import DPSGD, CentralDP, LocalDP, SecAgg
from tests.accounting import poisson_epsilon
from tests.recording import Recorder

ROUNDS = 2
PATHS = {
    "plain": {},
    "central DP (server)": {"privacy": CentralDP(noise_multiplier=0.8, clipping_norm=0.5)},
    "central DP (client)": {"privacy": CentralDP(noise_multiplier=0.8, clipping_norm=0.5, side="client")},
    "local DP": {"privacy": LocalDP(clipping_norm=0.5, epsilon=20.0)},
    "DP-SGD": {"privacy": DPSGD(noise_multiplier=1.0, l2_norm_clip=1.0)},
}


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1600, seed=3)


def _metrics(reply):
    return next(iter(reply.content.metric_records.values()))


def _with_weights(change):
    def rewrite(message, reply):
        replace_weights(reply.content, change(weights_of(reply.content), weights_of(message.content)))
        return reply
    return rewrite


def _with_metric(key, value):
    def rewrite(message, reply):
        if value is None:
            del _metrics(reply)[key]
        else:
            _metrics(reply)[key] = value
        return reply
    return rewrite


def _nan(w, g):
    w[0].flat[0] = np.nan
    return w


def _inf(w, g):
    w[-1].flat[0] = np.inf
    return w


def _array_record(change):
    def rewrite(message, reply):
        record = reply.content["arrays"]
        reply.content["arrays"] = ArrayRecord(change(dict(record.items())))
        return reply
    return rewrite


def _drop_last(arrays):
    return dict(list(arrays.items())[:-1])


def _add_extra(arrays):
    return {**arrays, "extra": Array(np.zeros(3, np.float32))}


def _garbage(arrays):
    key, array = next(iter(arrays.items()))
    return {**arrays, key: Array(dtype=array.dtype, shape=array.shape, stype=array.stype, data=b"garbage")}


def _sign_flip_big_claim(message, reply):
    replace_weights(reply.content, [g - 3 * (w - g) for w, g in zip(weights_of(reply.content),
                                                                     weights_of(message.content))])
    _metrics(reply)["num-examples"] = 10**9
    return reply


# Each hostile reply of H000, and what the record of its rejection must say.
REJECTED = {
    "empty reply": (lambda message, reply: Message(RecordDict(), reply_to=message), "ArrayRecord"),
    "NaN weight": (_with_weights(_nan), "NaN or Inf"),
    "Inf weight": (_with_weights(_inf), "NaN or Inf"),
    "wrong shape": (_with_weights(lambda w, g: [w[0][:-1], *w[1:]]), "shape"),
    "integer weights": (_with_weights(lambda w, g: [x.astype(np.int64) for x in w]), "dtype"),
    "missing array": (_array_record(_drop_last), "array keys"),
    "extra array": (_array_record(_add_extra), "array keys"),
    "undecodable bytes": (_array_record(_garbage), "cannot be read"),
    "no local_steps": (_with_metric("local_steps", None), "metrics"),
    "num-examples -1000": (_with_metric("num-examples", -1000), "not above 0"),
    "num-examples NaN": (_with_metric("num-examples", float("nan")), "not a finite number"),
    "num-examples 1e15": (_with_metric("num-examples", 10**15), "its committed training rows are"),
    "sign flip x3 claiming 1e9": (_sign_flip_big_claim, "its committed training rows are"),
}
# Claims the server never trusts: accepted, and nothing changes.
IGNORED = {
    "local_steps 0": _with_metric("local_steps", 0),
    "local_steps -1e6": _with_metric("local_steps", -10**6),
}


def hostile(rewrite):
    def mod(message, context, call_next):
        reply = call_next(message, context)
        if message.metadata.message_type == "train" and context.node_config["partition-id"] == 0 \
                and reply.has_content():
            return rewrite(message, reply)
        return reply
    return mod


def h000_fails(message, context, call_next):
    """H000 trains (drawing what an honest client draws: local DP noise...), then its reply is lost."""
    reply = call_next(message, context)
    if message.metadata.message_type == "train" and context.node_config["partition-id"] == 0:
        raise RuntimeError("H000 offline")
    return reply


def run(fed, mod, path, recorder=None, **extra):
    """One run of ``path``; every run shares one noise secret, so runs differ only by what H000 does."""
    return fs.Experiment(federation=fed, model="logreg", rounds=ROUNDS, learning_rate=0.2, client_mods=[mod],
                         observers=[recorder] if recorder else [], noise_seed=11, **PATHS.get(path, {}),
                         **extra).run()


@pytest.fixture(scope="module")
def without_h000(fed):
    return {path: run(fed, h000_fails, path) for path in PATHS}


def released_epsilon(res, recorder, fed, path, hospital):
    """What ``hospital`` really spent, recomputed from what the server received and released."""
    technique = PATHS[path]["privacy"]
    row = res.privacy.set_index("hospital").loc[hospital]
    if isinstance(technique, DPSGD):  # each reply received: the steps asked, at batch / rows
        n = len(fed.train_rows(fed.hospitals.index(hospital))[1])
        received = sum(e.replies[hospital].has_content() for e in recorder.exchanges if hospital in e.replies)
        return poisson_epsilon(technique.noise_multiplier, [(min(1, 32 / n), received * math.ceil(n / 32))],
                                   row.delta)
    if isinstance(technique, LocalDP):  # each reply received: one Gaussian release
        z = math.sqrt(2 * math.log(1.25 / technique.delta)) / technique.epsilon
        received = sum(e.replies[hospital].has_content() for e in recorder.exchanges if hospital in e.replies)
        return poisson_epsilon(z, [(1.0, received)], row.delta)
    # central DP: each round with an aggregate, every eligible hospital at sampled / eligible
    released = [e for e in recorder.exchanges if any(h not in e.rejected for h in e.updates())]
    return poisson_epsilon(technique.noise_multiplier,
                               [(len(e.sent) / fed.n_hospitals, 1) for e in released], row.delta)


@pytest.mark.parametrize("probe", sorted(REJECTED))
@pytest.mark.parametrize("path", list(PATHS))
def test_a_hostile_reply_is_rejected_and_changes_nothing_else(fed, without_h000, path, probe):
    rewrite, reason = REJECTED[probe]
    recorder = Recorder("train")
    res = run(fed, hostile(rewrite), path, recorder)
    events = res.participation.set_index("round")
    assert len(events) == ROUNDS and (events.hospital == "H000").all() and (events.event == "rejected").all()
    assert events.reason.str.contains(reason, regex=False).all(), events.reason.tolist()
    # The model is exactly the honest hospitals' one.
    honest = without_h000[path]
    assert all(np.array_equal(a, b) for a, b in zip(res.weights, honest.weights))
    np.testing.assert_array_equal(res.metrics.value, honest.metrics.value)
    if "privacy" in PATHS[path]:
        for hospital in fed.hospitals:
            ledger = res.privacy.set_index("hospital").epsilon[hospital]
            assert ledger == pytest.approx(released_epsilon(res, recorder, fed, path, hospital), rel=1e-9)


@pytest.mark.parametrize("probe", sorted(IGNORED))
@pytest.mark.parametrize("path", ["plain", "DP-SGD"])
def test_claims_the_server_never_trusts_change_nothing(fed, path, probe):
    honest = run(fed, lambda m, c, call_next: call_next(m, c), path)
    res = run(fed, hostile(IGNORED[probe]), path)
    assert res.participation.empty
    assert all(np.array_equal(a, b) for a, b in zip(res.weights, honest.weights))
    if path == "DP-SGD":  # the steps the server asked for, never the reply's claim
        assert res.privacy.epsilon.tolist() == honest.privacy.epsilon.tolist()
        assert (res.privacy.epsilon > 0).all()


# --- SecAgg+: the hostile mod rewrites the plaintext FitRes inside the protocol ----------------------

def _fitres_weights(change):
    def rewrite(message, reply):
        record = reply.content["fitres.parameters"]
        arrays = [a.numpy() for a in record.values()]
        reply.content["fitres.parameters"] = ArrayRecord(change(arrays))
        return reply
    return rewrite


def _fitres_claim(value):
    def rewrite(message, reply):
        reply.content.metric_records["fitres.num_examples"]["num_examples"] = value
        return reply
    return rewrite


SECAGG = {
    "wrong shape": _fitres_weights(lambda w: [w[0][:-1], *w[1:]]),
    "missing array": _fitres_weights(lambda w: w[:-1]),
    "extra array": _fitres_weights(lambda w: [*w, np.zeros(3, np.float32)]),
    "NaN weight": _fitres_weights(lambda w: [np.full_like(w[0], np.nan), *w[1:]]),
    "Inf weight": _fitres_weights(lambda w: [np.full_like(w[0], np.inf), *w[1:]]),
    "num-examples -1000": _fitres_claim(-1000),
    "num-examples NaN": _fitres_claim(float("nan")),
    "num-examples 1e15": _fitres_claim(10**15),
}


@pytest.fixture(scope="module")
def secagg_without_h000(fed):
    return run(fed, h000_fails, "secagg", privacy=SecAgg())


@pytest.mark.parametrize("probe", sorted(SECAGG))
def test_secagg_refuses_an_input_its_encoding_cannot_represent(fed, secagg_without_h000, probe):
    res = run(fed, hostile(SECAGG[probe]), "secagg", privacy=SecAgg())
    events = res.participation
    assert (events.hospital == "H000").all() and (events.event == "failed").all() and len(events) == ROUNDS
    assert events.reason.str.contains("SecAgg+ input check", regex=False).all()
    assert all(np.array_equal(a, b) for a, b in zip(res.weights, secagg_without_h000.weights))


def test_masked_vectors_the_workflow_cannot_sum_are_rejected_as_a_dropout(fed):
    """Checked on a real round's masked vectors, then on the same vectors corrupted."""
    recorder = Recorder("train")
    run(fed, lambda m, c, call_next: call_next(m, c), "secagg", recorder, privacy=SecAgg())
    masked = next(e for e in recorder.exchanges if e.secagg_stage == "collect_masked_vectors")
    check = fs.engine.replies.ReplyCheck(modulus=SecAgg().modulus_range)
    assert check.screen(masked) == {}
    config = masked.replies["H000"].content.config_records[RECORD_KEY_CONFIGS]
    vectors = list(config[Key.MASKED_PARAMETERS])
    for corrupt, reason in [(vectors[:-1], "masked vectors, expected"), (vectors + vectors[-1:], "expected"),
                            ([vectors[0], b"garbage", *vectors[2:]], "cannot be read")]:
        config[Key.MASKED_PARAMETERS] = corrupt
        assert reason in check.screen(masked)["H000"]
