"""Server-side defenses: the update validator, norm bounding, trust scores, your own wrapper, the bench."""

import numpy as np
import pandas as pd
import pytest
from flwr.app import Array, ArrayRecord

import fedsim as fs
from fedsim.engine.messages import replace_weights, weights_of

A, D = fs.adversaries, fs.defenses


def _experiment(fed, **kw):
    return fs.Experiment(federation=fed, **{"learning_rate": 0.1, "seed": 0, "rounds": 3, **kw})


def _hostile_mod(message, context, call_next):
    """H000 raises, H001 sends NaN, H002 a wrong shape, H003 integers; the others are honest."""
    hospital = context.node_config["partition-id"]
    if message.metadata.message_type != "train" or hospital > 3:
        return call_next(message, context)
    if hospital == 0:
        raise RuntimeError("GPU fell off the bus")
    reply = call_next(message, context)
    weights = weights_of(reply.content)
    if hospital == 1:
        weights[0][0, 0] = np.nan
    elif hospital == 2:
        weights[0] = weights[0][:-1]
    else:
        weights = [w.astype(np.int64) for w in weights]
    replace_weights(reply.content, weights)
    return reply


@pytest.mark.parametrize("strategy", ["fedavg", "fedmedian"])
def test_raising_nan_and_misshapen_hospitals_never_stop_an_experiment(iid_fed, strategy):
    """Done-when: the run finishes, FedAvg never sees NaN, each failure and rejection is in the results."""
    res = _experiment(iid_fed, strategy=strategy, client_mods=[_hostile_mod]).run()
    assert np.isfinite(res.final("auroc")) and res.final("auroc") > 0.75
    assert all(np.all(np.isfinite(w)) for w in res.weights)
    p = res.participation
    assert len(p) == 4 * 3
    for round_ in (1, 2, 3):
        rows = p[p["round"] == round_].set_index("hospital")
        assert rows.loc["H000", "event"] == "failed" and "GPU fell off the bus" in rows.loc["H000", "reason"]
        assert rows.loc["H001", "event"] == "rejected" and "NaN" in rows.loc["H001", "reason"]
        assert rows.loc["H002", "event"] == "rejected" and "shape" in rows.loc["H002", "reason"]
        assert rows.loc["H003", "event"] == "rejected" and "dtype" in rows.loc["H003", "reason"]


def test_validator_rejects_implausible_norms_and_claims(iid_fed):
    res = _experiment(iid_fed, defenses=D.UpdateValidator(),
                      adversaries=[A.GaussianNoise(hospitals=["H004"]), A.InflatedClaim(hospitals=["H005"])]).run()
    p = res.participation.set_index(["round", "hospital"])
    assert len(p) == 2 * 3
    assert "far outside the cohort's" in p.loc[(1, "H004"), "reason"]
    assert "its committed training rows are" in p.loc[(1, "H005"), "reason"]
    # the default validator is this one; with every plausibility bound off, both get through
    default = _experiment(iid_fed, adversaries=[A.GaussianNoise(hospitals=["H004"]),
                                                A.InflatedClaim(hospitals=["H005"])]).run()
    pd.testing.assert_frame_equal(default.participation, res.participation)
    off = _experiment(iid_fed, defenses=D.UpdateValidator.off(),
                      adversaries=[A.GaussianNoise(hospitals=["H004"]), A.InflatedClaim(hospitals=["H005"])]).run()
    assert off.participation.empty


def test_validator_rejects_wrong_keys_and_missing_claims(small_fed):
    def odd_mod(message, context, call_next):
        reply = call_next(message, context)
        if message.metadata.message_type == "train" and context.node_config["partition-id"] == 1:
            record = reply.content["arrays"]
            reply.content["arrays"] = ArrayRecord({f"w{i}": Array(a.numpy()) for i, a in enumerate(record.values())})
        if message.metadata.message_type == "train" and context.node_config["partition-id"] == 2:
            reply.content["metrics"]["num-examples"] = -5
        return reply

    res = _experiment(small_fed, rounds=1, client_mods=[odd_mod]).run()
    reasons = res.participation.set_index("hospital").reason
    assert "reply check: array keys" in reasons["H001"] and "num-examples -5 is not above 0" in reasons["H002"]


def test_norm_bounding_clips_every_update_to_the_bound(small_fed):
    res = _experiment(small_fed, rounds=2, defenses=[D.UpdateValidator.off(), D.NormBound(max_norm=0.1)],
                      adversaries=A.SignFlip(hospitals=["H000"], scale=10.0)).run()
    log = res.tables["defenses"]
    assert set(log.action) == {"clipped"} and (log.value > 0.1).all()
    assert len(log) == 2 * 4  # every update of these first rounds is bigger than 0.1


def test_trust_scores_reject_updates_pointing_away(iid_fed):
    clean = _experiment(iid_fed, rounds=5).run().final("auroc")
    res = _experiment(iid_fed, rounds=5, defenses=D.TrustScore(root_size=200),
                      adversaries=A.SignFlip(hospitals=0.2)).run()
    attackers = set(res.adversaries.hospital)
    rejected = res.participation[res.participation.event == "rejected"]
    assert set(rejected.hospital) == attackers and len(rejected) == 2 * 5
    trust = res.tables["defenses"]
    assert (trust[~trust.hospital.isin(attackers)].value > 0.5).all()
    assert abs(res.final("auroc") - clean) <= 0.05


def test_defenses_compose_with_central_dp(small_fed):
    res = _experiment(small_fed, rounds=2, defenses=[D.NormBound(), D.UpdateValidator()],
                      privacy=fs.privacy.CentralDP(noise_multiplier=0.1, clipping_norm=1.0),
                      adversaries=A.SignFlip(hospitals=["H000"])).run()
    assert np.isfinite(res.final("auroc"))
    assert "privacy" in res.tables and "defenses" in res.tables


class ClipToMedian(D.StrategyWrapper):
    """A defense written like in notebook 08: drop updates far bigger than the median."""

    def process_replies(self, server_round, replies):
        norms = [np.linalg.norm(np.concatenate([u.ravel() for u in self.update(r)])) for r in replies]
        limit = 3 * np.median(norms)
        kept = []
        for reply, norm in zip(replies, norms):
            if norm > limit:
                self.reject(server_round, reply, f"norm {norm:.2f} > 3 x median")
            else:
                kept.append(reply)
        return kept


def test_evaluate_defense_runs_a_wrapper_against_attacks(iid_fed):
    table = fs.evaluate_defense(ClipToMedian, attacks=[A.SignFlip(hospitals=0.2), A.ModelReplacement(hospitals=0.1)],
                                federation=iid_fed, seeds=[0], rounds=4, learning_rate=0.1)
    assert list(table.columns) == ["attack", "defense", "seed", "clean_auroc", "attacked_auroc", "auroc_drop",
                                   "backdoor_success", "rejected_updates", "honest_rejected", "time_s"]
    assert list(table.attack) == ["sign flip", "model replacement"]
    assert (table.defense == "ClipToMedian").all()
    rows = table.set_index("attack")
    assert rows.loc["sign flip", "rejected_updates"] == 2 * 4
    assert abs(rows.loc["sign flip", "auroc_drop"]) < 0.03
    assert np.isnan(rows.loc["sign flip", "backdoor_success"])
    assert rows.loc["model replacement", "backdoor_success"] < 0.2
    clean = fs.Experiment(federation=iid_fed, rounds=4, learning_rate=0.1, defenses=D.Wrap(ClipToMedian)).run()
    assert (table.honest_rejected == (clean.participation.event == "rejected").sum()).all()  # its false rejections
    named = fs.evaluate_defense("fedmedian", attacks={"flip": A.SignFlip(hospitals=0.2)}, federation=iid_fed,
                                seeds=[0], rounds=2, learning_rate=0.1)
    assert isinstance(named, pd.DataFrame) and list(named.attack) == ["flip"] and named.defense[0] == "median"


def test_bad_defense_settings_name_the_field(small_fed):
    with pytest.raises(ValueError, match="max_norm"):
        D.NormBound(max_norm=-1)
    with pytest.raises(ValueError, match="root_size"):
        D.TrustScore(root_size=3)
    with pytest.raises(ValueError, match="max_norm_ratio"):
        D.UpdateValidator(max_norm_ratio=0)
    with pytest.raises(ValueError, match="defense"):
        fs.evaluate_defense("nonsense", federation=small_fed)
    with pytest.raises(ValueError, match="federation"):
        fs.evaluate_defense("krum", federation=None)
    with pytest.raises(ValueError, match="defenses"):
        fs.Experiment(federation=small_fed, defenses=[object()])


@pytest.mark.parametrize("changes", [{}, {"local_epochs": 3, "learning_rate": 0.3},
                                     {"privacy": fs.privacy.DPSGD(noise_multiplier=1.0)},
                                     {"fraction_train": 0.5}])
def test_the_default_validator_leaves_honest_heterogeneous_hospitals_alone(changes):
    """Hospital sizes ~10x apart and strongly non-IID data: no honest reply is judged implausible."""
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=10, n_patients=6000, seed=4, quantity_skew=1.0,
                                  label_skew=1.0, covariate_shift=1.0, measurement_shift=1.0, missingness=1.0,
                                  concept_shift=1.0)
    sizes = fed.summary().n_train
    assert sizes.max() > 5 * sizes.min()
    res = _experiment(fed, rounds=4, **changes).run()
    assert res.participation.empty, res.participation.reason.tolist()
