"""Dropout, stragglers, crashing hospitals and participation policies: the run goes on and says who was missing."""

import numpy as np
import pytest

import fedsim as fs

V = fs.availability


def _experiment(fed, **kw):
    return fs.Experiment(federation=fed, **{"learning_rate": 0.1, "seed": 0, "rounds": 4, **kw})


def test_dropout_is_seeded_and_recorded(iid_fed):
    runs = [_experiment(iid_fed, availability=V.Dropout(rate=0.3)).run() for _ in range(2)]
    p = runs[0].participation
    assert runs[0].participation.equals(runs[1].participation) and runs[0].metrics.equals(runs[1].metrics)
    assert 4 <= len(p) <= 20 and set(p.event) == {"failed"}
    assert p.reason.str.contains("dropped out").all()
    assert runs[0].final("auroc") > 0.8  # the others carried on
    other = _experiment(iid_fed, seed=1, availability=V.Dropout(rate=0.3)).run().participation
    assert not other[["round", "hospital"]].equals(p[["round", "hospital"]])


def test_stragglers_miss_the_deadline_and_rounds_have_a_simulated_time(iid_fed):
    slow = {"H002": {"examples_per_s": 10.0}}  # 480 examples at 10 per second: about 48 s
    free = _experiment(iid_fed, availability=V.Stragglers(profiles=slow)).run()
    timed = _experiment(iid_fed, availability=V.Stragglers(deadline_s=5.0, profiles=slow)).run()
    assert free.participation.empty
    assert (free.tables["rounds"].simulated_s > 30).all()  # everyone waits for the slow hospital
    rounds = timed.tables["rounds"]
    assert list(rounds["round"]) == [1, 2, 3, 4] and (rounds.simulated_s <= 5.0).all()
    late = timed.participation
    assert "H002" in set(late.hospital) and late.reason.str.contains("missed the deadline").all()
    timing = timed.tables["timing"]
    assert set(timing.columns) == {"round", "hospital", "simulated_s", "late"}
    assert timing[timing.hospital == "H002"].late.all()
    assert set(late[["round", "hospital"]].itertuples(index=False)) == set(
        timing[timing.late][["round", "hospital"]].itertuples(index=False))


def test_a_hospital_crashing_mid_round_is_recorded(small_fed):
    res = _experiment(small_fed, availability=V.Crash(hospitals=["H001"], rounds=[2, 3])).run()
    p = res.participation
    assert list(zip(p["round"], p.hospital, p.event)) == [(2, "H001", "failed"), (3, "H001", "failed")]
    assert p.reason.str.contains("crashed mid-round").all()
    assert np.isfinite(res.final("auroc"))


def test_min_participation_skips_rounds_with_too_few_replies(iid_fed):
    res = _experiment(iid_fed, availability=[V.Dropout(rate=0.5), V.MinParticipation(min_hospitals=6)]).run()
    p = res.participation
    skipped = p[p.event == "rejected"]
    assert not skipped.empty and skipped.reason.str.contains("MinParticipation").all()
    for _, rows in p.groupby("round"):
        failed = (rows.event == "failed").sum()
        assert ((rows.event == "rejected").sum() == 10 - failed) == (10 - failed < 6)
    # a skipped round leaves the global model as it was
    auroc = res.metrics.query("scope == 'global' and metric == 'auroc'").set_index("round").value
    for round_ in skipped["round"].unique():
        assert auroc[round_] == auroc[round_ - 1]


def test_bad_availability_settings_name_the_field(small_fed):
    with pytest.raises(ValueError, match="rate"):
        V.Dropout(rate=1.0)
    with pytest.raises(ValueError, match="deadline_s"):
        V.Stragglers(deadline_s=0)
    with pytest.raises(ValueError, match="profiles"):
        V.Stragglers(profiles={"H000": {"flops": 1.0}})
    with pytest.raises(ValueError, match="min_hospitals"):
        V.MinParticipation(min_hospitals=0)
    with pytest.raises(ValueError, match="rounds"):
        V.Crash(rounds=[0])
    with pytest.raises(ValueError, match="^availability: unknown name 'outage'; allowed: crash, dropout"):
        fs.Experiment(federation=small_fed, availability="outage")
    assert fs.Experiment(federation=small_fed, availability="dropout").availability == (V.Dropout(),)
