"""The canary audit in a real run: it catches a mechanism that claims noise it does not add, stays below a true
claim, and is large without any privacy; its verdict reaches the Result, the audit log and the report."""

import dataclasses
import math
import warnings
from dataclasses import dataclass

import pytest

import fedsim as fs
from fedsim.audit import Canaries, PrivacyClaimWarning
from fedsim.components import Component
from fedsim.governance import read, report


@dataclass(frozen=True)
class SilentCentralDP(Component):
    """A broken mechanism: charges the ledger for central DP at noise multiplier 1, releases with no noise."""

    family = "privacy"
    name = "silent_central_dp"
    title = "central DP (broken: no noise)"
    threats = ("update leakage", "membership inference")
    unit = "hospital"
    trust_model = "central: the server is trusted to add noise (it does not)"
    spends_epsilon = True

    def install(self, plan):
        fs.privacy.CentralDP(noise_multiplier=0.0).install(plan)
        ledger = fs.privacy.ledger_of(plan)
        ledger.charges[-1] = dataclasses.replace(ledger.charges[-1], noise_multiplier=1.0)  # the false claim


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1600, seed=0)


def audited(fed, privacy, tmp_path=None, **audit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fs.Experiment(federation=fed, model="mlp", rounds=1, learning_rate=0.1, privacy=privacy,
                            audit=Canaries(**{"n": 256, **audit}), out=tmp_path).run()
    return res, res.tables["privacy_audit"].iloc[0], [w for w in caught if w.category is PrivacyClaimWarning]


@pytest.mark.parametrize("view", ["white-box", "black-box"])
def test_a_mechanism_that_claims_noise_it_does_not_add_is_caught(fed, view, tmp_path):
    res, row, warned = audited(fed, SilentCentralDP(), tmp_path, view=view)
    assert row.level == "hospital" and row.epsilon_claimed == pytest.approx(4.73, abs=0.01)  # z = 1, one release
    assert row.correct == row.guesses == 128  # every guess right: nothing hides a canary hospital
    assert row.epsilon_audited == row.epsilon_fdp > row.epsilon_claimed  # measured 5.74 (one-run bound 3.25)
    assert row.exceeded and len(warned) == 1 and "the privacy claim is false" in str(warned[0].message)
    privacy = res.privacy
    assert privacy.audit_exceeded.all() and (privacy.epsilon_audited == row.epsilon_audited).all()
    assert set(privacy.audit_level) == {"hospital"} and (privacy.audit_confidence == 0.95).all()
    entry = next(e["data"] for e in read(res.audit_path) if e["kind"] == "audit")
    assert entry["claim_refuted"] and entry["statement"].startswith("ALERT: the audited lower bound on epsilon")
    text = report(res.audit_path.parent)["markdown"].read_text()
    assert "PRIVACY CLAIM REFUTED" in text


def test_real_central_dp_at_noise_one_stays_below_its_epsilon(fed):
    res, row, warned = audited(fed, fs.privacy.CentralDP(noise_multiplier=1.0))
    assert 0.5 < row.epsilon_audited < row.epsilon_claimed  # measured 2.43 < 4.73
    assert not row.exceeded and not warned and not res.privacy.audit_exceeded.any()


def test_without_privacy_the_bound_is_large_and_no_claim_is_refuted(fed):
    _, row, warned = audited(fed, None, level="hospital")
    assert row.epsilon_audited > 5 and math.isinf(row.epsilon_claimed) and not row.exceeded and not warned


def test_record_canaries_audit_dp_sgd_at_one_hospital(fed):
    res, row, warned = audited(fed, fs.privacy.DPSGD(noise_multiplier=1.0), hospital="H002", n=128)
    assert row.level == "record" and row.hospital == "H002" and not warned
    assert row.epsilon_audited < row.epsilon_claimed
    privacy = res.privacy.set_index("hospital")
    assert privacy.epsilon_audited.notna().tolist() == [False, False, True, False]  # only where canaries went
    # That hospital set 128 of its 320 rows aside: charged at the rate of batches over the 192 left.
    assert privacy.sampling_rate["H002"] == pytest.approx(32 / 192) and privacy.sampling_rate["H000"] == 0.1
    assert privacy.epsilon["H002"] > privacy.epsilon["H000"]


def test_local_dp_is_audited_update_by_update(fed):
    _, row, _ = audited(fed, fs.privacy.LocalDP(epsilon=2.0), n=64)
    assert row.level == "update" and row.canaries == 64 and row.epsilon_audited < row.epsilon_claimed


@pytest.mark.parametrize("changes, message", [
    ({"audit": Canaries(n=200)}, "n: H000 has 320 training rows: at most 160 record canaries fit there, got 200"),
    ({"audit": Canaries(level="hospital"), "privacy": fs.privacy.SecAgg()},
     r"level: hospital canaries join the aggregate, which SecAgg\+ masks"),
    ({"audit": [Canaries(), Canaries()]}, "audit: give one audit component, got 2"),
    ({"audit": {"name": "canaries", "view": "grey-box"}}, "audit: canaries: view: must be one of"),
])
def test_bad_audits_are_one_line_errors(fed, changes, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        fs.Experiment(federation=fed, model="mlp", rounds=1, **changes)
