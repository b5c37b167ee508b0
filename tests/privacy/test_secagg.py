"""SecAgg+ (Flower's SecAggPlusWorkflow + secaggplus_mod) on the in-process Grid."""

import numpy as np
import pytest
from flwr.common.secure_aggregation.quantization import quantize

import fedsim as fs
from fedsim.components import Component
from fedsim.privacy.secagg import STAGES, SecAgg, masked_updates
from tests.recording import Recorder

ROUNDS = 2


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=5, n_patients=1000, seed=0)


def run(fed, privacy=None, **kwargs):
    return fs.Experiment(federation=fed, model="logreg", rounds=ROUNDS, privacy=privacy, **kwargs).run()


def quantization_tolerance(fed, hospitals=None, secagg=None):
    """Bound on the error SecAgg+ adds to FedAvg's weighted mean, over ROUNDS rounds.

    Each hospital scales its weights by r_i = n_i / max_weight and rounds them
    stochastically to a grid of step 2 * clipping_range / quantization_range:
    an error below one step each. The server divides the sum by sum(r_i), so a
    round's error is below step * k * max_weight / sum(n_i) = step * max(n) /
    mean(n). A factor 2 covers float32 rounding and local training carrying
    the previous round's error over.
    """
    secagg = secagg or SecAgg()
    n = np.diff(fed.train_offsets)
    used = n if hospitals is None else n[hospitals]
    step = 2 * secagg.clipping_range / secagg.quantization_range
    return 2 * ROUNDS * step * n.max() / used.mean()


def test_observers_see_only_masked_replies_and_the_sum_matches_fedavg(fed):
    plain_recorder, secagg_recorder = Recorder(), Recorder()
    plain = run(fed, observers=[plain_recorder])
    secure = run(fed, SecAgg(), observers=[secagg_recorder])

    # Four round trips per round, every hospital in each.
    stages = [(e.server_round, e.secagg_stage) for e in secagg_recorder.exchanges]
    assert stages == [(r, s) for r in range(1, ROUNDS + 1) for s in STAGES]
    assert all(set(e.replies) == set(fed.hospitals) for e in secagg_recorder.exchanges)
    # No reply carries a model array in the clear.
    for exchange in secagg_recorder.exchanges:
        for content in exchange.updates().values():
            assert all(len(record) == 0 for record in content.array_records.values())

    # The masked vectors are unrelated to the plaintext update, even once quantized the same way.
    max_weight = float(np.diff(fed.train_offsets).max())
    masked = next(m for e in secagg_recorder.exchanges if (m := masked_updates(e)))
    plaintext = {h: c["arrays"].to_numpy_ndarrays() for h, c in plain_recorder.exchanges[0].updates().items()}
    modulus = SecAgg().modulus_range
    quantized = {}
    for i, hospital in enumerate(fed.hospitals):
        ratio = len(fed.train_rows(i)[1]) / max_weight
        quantized[hospital] = quantize([w * ratio for w in plaintext[hospital]], 8.0, 2**22)
        assert len(masked[hospital]) == len(quantized[hospital]) + 1  # the weight factor comes first
        for m, q in zip(masked[hospital][1:], quantized[hospital]):
            assert m.shape == q.shape
            assert np.mean(np.abs(m.astype(np.int64) - q) <= 1) < 0.01
    # Even their sum hides the aggregate: the private masks come off only in the unmask stage.
    for j in range(len(plaintext[fed.hospitals[0]])):
        gap = (sum(masked[h][j + 1].astype(np.int64) - quantized[h][j] for h in fed.hospitals)) % modulus
        assert np.mean(np.minimum(gap, modulus - gap) <= len(fed.hospitals)) < 0.01

    # The unmasked sum is FedAvg's weighted mean up to quantization error.
    tolerance = quantization_tolerance(fed)
    for a, b in zip(plain.model.get_weights(), secure.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=tolerance)
    assert secure.final("auroc") == pytest.approx(plain.final("auroc"), abs=1e-3)
    assert secure.participation.empty


def test_same_seed_same_numbers(fed):
    a, b = run(fed, SecAgg()), run(fed, SecAgg())
    for x, y in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(x, y)


def offline_after_sharing_keys(*partitions):
    """A mod inside secaggplus_mod: it only runs in the collect-masked-vectors stage,
    so these hospitals have sent their keys and shares, then fail to train."""
    def mod(message, context, call_next):
        if context.node_config["partition-id"] in partitions:
            raise RuntimeError("hospital went offline mid-protocol")
        return call_next(message, context)

    return mod


class OutermostMod(Component):
    """A component installed after SecAgg whose mod sits at the outermost stage below the protocol."""

    def __init__(self, mod):
        self.mod = mod

    def install(self, plan):
        plan.add_mod("availability", self.mod)


def test_a_hospital_dropping_out_mid_protocol_is_unmasked_from_its_neighbours_shares(fed):
    dropout = offline_after_sharing_keys(2)
    recorder = Recorder()
    # secaggplus_mod stays outermost, so the dropout mod runs inside the protocol.
    secure = run(fed, [SecAgg(num_shares=3, reconstruction_threshold=2), OutermostMod(dropout)],
                 observers=[recorder])
    plain = run(fed, client_mods=[dropout])  # FedAvg of the four others

    events = secure.participation
    assert set(events["hospital"]) == {"H002"} and set(events["event"]) == {"failed"}
    assert list(events["round"]) == list(range(1, ROUNDS + 1))
    assert events["reason"].str.contains("offline mid-protocol").all()
    # It took part in the first two stages, then vanished.
    by_stage = {(e.server_round, e.secagg_stage): e for e in recorder.exchanges}
    assert "H002" in by_stage[(1, "share_keys")].updates()
    assert "H002" in by_stage[(1, "collect_masked_vectors")].failures()
    assert "H002" not in by_stage[(1, "unmask")].sent
    # The sum of the survivors is still recovered exactly (up to quantization).
    tolerance = quantization_tolerance(fed, hospitals=[0, 1, 3, 4])
    for a, b in zip(plain.model.get_weights(), secure.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=tolerance)


class Exclude(Component):
    """An eligibility check (a spent budget, a policy) that keeps one hospital out."""

    def __init__(self, hospital):
        self.hospital = hospital

    def install(self, plan):
        plan.eligibility.append(lambda h: "policy" if h == self.hospital else None)


def test_eligibility_applies_to_the_secagg_rounds(fed):
    recorder = Recorder()
    secure = run(fed, [SecAgg(), Exclude("H001")], observers=[recorder])
    plain = run(fed, Exclude("H001"))
    assert all("H001" not in e.sent and len(e.sent) == 4 for e in recorder.exchanges)
    events = secure.participation
    assert list(events["round"]) == list(range(1, ROUNDS + 1)) and set(events["event"]) == {"excluded"}
    for a, b in zip(plain.model.get_weights(), secure.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=quantization_tolerance(fed, hospitals=[0, 2, 3, 4]))


def test_too_many_dropouts_abort_the_round_and_keep_the_model(fed):
    secure = run(fed, SecAgg(), client_mods=[offline_after_sharing_keys(0, 1, 2, 3)])
    events = secure.participation
    aborted = events[events["event"] == "aborted"]
    assert list(aborted["round"]) == list(range(1, ROUNDS + 1))
    assert aborted["reason"].str.contains("reconstruction threshold").all()
    assert len(events[events["event"] == "failed"]) == 4 * ROUNDS
    initial = fs.Experiment(federation=fed, model="logreg", rounds=1).run().metrics
    first = initial[(initial["round"] == 0) & (initial["scope"] == "global")]
    last = secure.metrics[(secure.metrics["round"] == ROUNDS) & (secure.metrics["scope"] == "global")]
    np.testing.assert_allclose(last["value"].to_numpy(), first["value"].to_numpy())


@pytest.mark.parametrize("kwargs, field", [
    ({"num_shares": 2}, "num_shares"),
    ({"num_shares": 1.5}, "num_shares"),
    ({"num_shares": "3"}, "num_shares"),
    ({"reconstruction_threshold": 1}, "reconstruction_threshold"),
    ({"num_shares": 5, "reconstruction_threshold": 5}, "reconstruction_threshold"),
    ({"reconstruction_threshold": 0.0}, "reconstruction_threshold"),
    ({"clipping_range": 0}, "clipping_range"),
    ({"quantization_range": 2.5}, "quantization_range"),
    ({"modulus_range": 3 * 2**30}, "modulus_range"),
    ({"modulus_range": 2**33}, "modulus_range"),
    ({"quantization_range": 2**20, "modulus_range": 2**20}, "modulus_range"),
    ({"max_weight": -1}, "max_weight"),
    ({"timeout": 0}, "timeout"),
])
def test_bad_arguments_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SecAgg(**kwargs)


@pytest.mark.parametrize("changes, field", [
    ({"strategy": "fedprox"}, "privacy"),
    ({"privacy": [SecAgg(), SecAgg()]}, "privacy"),
    ({"privacy": SecAgg(num_shares=7)}, "num_shares"),
    ({"privacy": SecAgg(quantization_range=2**30)}, "quantization_range"),
    ({"privacy": SecAgg(num_shares=7), "engine": "deployment"}, "num_shares"),  # checked before processes start
])
def test_settings_secagg_cannot_run_raise_naming_the_field(fed, changes, field):
    """Checked when the Experiment is made, before anything runs."""
    exp = fs.Experiment(federation=fed, model="logreg", rounds=1, privacy=SecAgg())
    with pytest.raises(ValueError, match=f"^{field}:"):
        exp.replace(**changes)
