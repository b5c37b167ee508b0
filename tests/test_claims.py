"""fs.claim: a ✓ or ✗ line for the reader, an error under FEDSIM_CLAIMS=strict, a – line for a claim skipped."""

import pytest

import fedsim as fs
from fedsim.claims import ClaimFailed


def test_a_true_claim_prints_a_check_mark_with_its_numbers(capsys, monkeypatch):
    monkeypatch.setenv("FEDSIM_CLAIMS", "strict")
    fs.claim("FedAvg beats local only", 0.81 > 0.74, fedavg=0.81234, local_only=0.74)
    assert capsys.readouterr().out == "✓ FedAvg beats local only (fedavg=0.812, local_only=0.74)\n"


def test_a_false_claim_prints_a_cross_for_a_reader_and_raises_under_strict(capsys, monkeypatch):
    monkeypatch.delenv("FEDSIM_CLAIMS", raising=False)
    fs.claim("DP-SGD costs nothing", False, auroc_lost=0.2)
    assert capsys.readouterr().out.startswith("✗ DP-SGD costs nothing (auroc_lost=0.2): not what these numbers")
    monkeypatch.setenv("FEDSIM_CLAIMS", "strict")
    with pytest.raises(ClaimFailed, match=r"✗ DP-SGD costs nothing \(auroc_lost=0.2\)"):
        fs.claim("DP-SGD costs nothing", False, auroc_lost=0.2)
    assert issubclass(ClaimFailed, AssertionError)


def test_a_skipped_claim_is_neither_checked_nor_counted(capsys, monkeypatch):
    monkeypatch.setenv("FEDSIM_CLAIMS", "strict")
    fs.claim("only full mode shows it", False, skip="quick mode", gap=0.01)
    assert capsys.readouterr().out == "– only full mode shows it (not checked: quick mode; gap=0.01)\n"
