"""Membership inference (loss threshold, LiRA) against fedsim's models, central and federated."""

import dataclasses
import functools
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

import fedsim as fs
from fedsim.attacks.membership import (
    METRICS,
    MembershipAttack,
    TrainingRecipe,
    attack_result,
    attack_update,
    lira_scores,
    membership_inference,
    plot_attacks,
)
from fedsim.results import Result
from fedsim.training import trainer_for

# One object for the whole module: the process-wide Trainer is cached per model function.
WIDE = functools.partial(fs.models.mlp, hidden=(256, 256))
OVERFIT = TrainingRecipe(epochs=100, batch_size=32, learning_rate=0.1)  # 200 rows, 100 epochs: memorised


@pytest.fixture(scope="module")
def fed():
    fed = fs.synthetic_federation("readmission_30d", n_hospitals=2, n_patients=400, seed=0, test_size=0.5)
    assert len(fed.y_train) == len(fed.y_test) == 200  # balanced already: candidates keep their order
    return fed


@pytest.fixture(scope="module")
def overfit(fed):
    trainer = trainer_for(WIDE, fed.n_features)
    return OVERFIT.fit(trainer, trainer.initial_weights(100), fed.x_train, fed.y_train, np.random.default_rng(100))


@pytest.fixture(scope="module")
def plain(fed, overfit):
    """Loss and online-LiRA attacks on the overfit central model."""
    members, non_members = (fed.x_train, fed.y_train), (fed.x_test, fed.y_test)
    return {method: membership_inference(WIDE, overfit, members, non_members, method=method, recipe=OVERFIT,
                                         n_shadows=16, progress=False)
            for method in ("loss", "lira")}


class Updates(fs.RoundObserver):
    """Keeps what each hospital received and sent back in every training round."""

    def __init__(self):
        self.seen = {}

    def on_exchange(self, exchange):
        if exchange.message_type.endswith("train"):
            for hospital, reply in exchange.replies.items():
                self.seen[exchange.server_round, hospital] = (
                    exchange.sent[hospital].content["arrays"].to_numpy_ndarrays(),
                    reply.content["arrays"].to_numpy_ndarrays(),
                )


@pytest.fixture(scope="module")
def run(fed):
    """A FedAvg run whose hospitals overfit their local data (50 local epochs), with its updates."""
    updates = Updates()
    exp = fs.Experiment(federation=fed, model=WIDE, rounds=2, local_epochs=50, batch_size=32, learning_rate=0.1,
                        evaluate_every=2, observers=[updates])
    return exp, exp.run(), updates.seen


def test_lira_finds_the_members_of_an_overfit_model_better_than_the_loss(plain):
    lira, loss = plain["lira"].metrics().set_index("metric").value, plain["loss"].metrics().set_index("metric").value
    assert lira["auc"] > 0.6  # measured 0.614 (0.631-0.679 for data seeds 1-7)
    assert 0.54 < loss["auc"] <= lira["auc"]  # measured 0.553 (0.515-0.651 for data seeds 1-7)
    assert lira["tpr@1%fpr"] > loss["tpr@1%fpr"]  # LiRA's edge is at low false-positive rates
    # The offline variant (OUT Gaussians only) from the same shadows, without training them again.
    offline = lira_scores(**plain["lira"].info["statistics"], online=False)
    offline_auc = roc_auc_score(plain["lira"].is_member, offline)
    assert 0.58 < offline_auc and offline_auc > loss["auc"]  # measured 0.676: with 16 shadows above online here


def test_dp_sgd_pulls_lira_toward_chance(fed, plain):
    # clip 1, noise 2: epsilon about 12.7 at delta 1e-5 (RDP); with noise 1 (epsilon about 40) LiRA still
    # reaches AUC 0.53-0.57 over four seeds. DP-SGD samples Poisson batches (as accounted).
    recipe = dataclasses.replace(OVERFIT, dp=(1.0, 2.0))
    trainer = trainer_for(WIDE, fed.n_features)
    private = recipe.fit(trainer, trainer.initial_weights(100), fed.x_train, fed.y_train, np.random.default_rng(100))
    attack = membership_inference(WIDE, private, (fed.x_train, fed.y_train), (fed.x_test, fed.y_test),
                                  recipe=recipe, n_shadows=8, progress=False)
    auc = attack.metrics().set_index("metric").value["auc"]
    assert auc < 0.58  # measured 0.554 (0.499-0.532 for three other seeds)
    assert plain["lira"].metrics().set_index("metric").value["auc"] - auc > 0.05  # plain: 0.614
    # Every shadow, plain or DP, reused the one model and its traces.
    assert trainer.train_function.experimental_get_tracing_count() == 1
    assert trainer.dp_train_function.experimental_get_tracing_count() == 1


def test_loss_attack_equals_an_independent_computation(fed, overfit, plain):
    model = WIDE(fed.n_features)  # a separate Keras model: numpy does the rest
    model.build((None, fed.n_features))
    model.set_weights(overfit)
    x, y = np.concatenate([fed.x_train, fed.x_test]), np.concatenate([fed.y_train, fed.y_test])
    p = 1 / (1 + np.exp(-model(x, training=False).numpy()[:, 0].astype(np.float64)))
    p = np.clip(p, 1e-15, 1 - 1e-15)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    attack = plain["loss"]
    assert attack.is_member.tolist() == [True] * 200 + [False] * 200
    np.testing.assert_allclose(attack.scores, -loss, rtol=1e-4, atol=1e-6)
    auc = attack.metrics().set_index("metric").value["auc"]
    assert auc == pytest.approx(roc_auc_score(attack.is_member, -loss), abs=1e-3)


def test_lira_scores_are_gaussian_likelihood_ratios():
    rng = np.random.default_rng(0)
    is_in = rng.random((12, 30)) < 0.5
    is_in[0], is_in[1] = True, False  # every candidate has both IN and OUT shadows
    shadow = rng.normal(size=(12, 30)) + is_in * rng.uniform(0.5, 2, 30)
    target = rng.normal(size=30)

    def gaussian(mask):
        values = [shadow[mask[:, j], j] for j in range(30)]
        return np.array([v.mean() for v in values]), np.array([v.std(ddof=1) for v in values])

    (mean_in, std_in), (mean_out, std_out) = gaussian(is_in), gaussian(~is_in)
    expected = norm.logpdf(target, mean_in, std_in) - norm.logpdf(target, mean_out, std_out)
    got = lira_scores(target, shadow, is_in, online=True, global_variance=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    offline = lira_scores(target, shadow, is_in, online=False, global_variance=False)
    assert np.array_equal(np.argsort(offline), np.argsort(norm.cdf(target, mean_out, std_out)))
    pooled = lira_scores(target, shadow, is_in, online=True, global_variance=True)
    expected = (norm.logpdf(target, mean_in, np.sqrt(np.mean(std_in**2)))
                - norm.logpdf(target, mean_out, np.sqrt(np.mean(std_out**2))))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)


def test_one_hospitals_update_leaks_its_members(fed, run):
    _, res, updates = run
    start, update = updates[2, "H001"]
    recipe = TrainingRecipe.from_config(res.config, local=True)
    assert recipe == TrainingRecipe(epochs=50, batch_size=32, learning_rate=0.1)
    attacks = {method: attack_update(fed, "H001", WIDE, start, update, recipe=recipe, method=method, n_shadows=8,
                                     round=2, progress=False)
               for method in ("loss", "lira")}
    lira = attacks["lira"].metrics()
    assert set(lira.hospital) == {"H001"} and set(lira["round"]) == {2}
    auc = lira.set_index("metric").value["auc"]
    assert auc > 0.64  # measured 0.728; the loss attack: 0.508
    assert auc > attacks["loss"].metrics().set_index("metric").value["auc"]
    assert len(attacks["lira"].scores) == 2 * len(fed.test_rows(1)[1])
    assert attacks["lira"].info["shadow_rows"] == len(fed.train_rows(1)[1])  # as many rows as the hospital


def test_offline_lira_uses_the_same_shadows_as_online(fed, run):
    _, res, updates = run
    start, update = updates[2, "H000"]
    recipe = dataclasses.replace(TrainingRecipe.from_config(res.config, local=True), epochs=5)
    online, offline = (attack_update(fed, "H000", WIDE, start, update, recipe=recipe, method=method, n_shadows=4,
                                     progress=False) for method in ("lira", "lira-offline"))
    np.testing.assert_allclose(offline.scores, lira_scores(**online.info["statistics"], online=False))


def test_the_final_global_model_of_a_run(fed, run):
    exp, res, _ = run
    loss = attack_result(res, method="loss")
    table = loss.metrics(per_hospital=True)
    assert set(table.hospital) == {"all", *fed.hospitals} and set(table["round"]) == {2}
    assert sorted(set(loss.groups)) == list(fed.hospitals)
    central = attack_result(res, n_shadows=4, progress=False)
    assert central.info["recipe"] == TrainingRecipe(epochs=100, batch_size=32, learning_rate=0.1)
    assert central.info["shadow_rows"] == len(fed.y_train)  # as many rows as the federation trained on
    federated = attack_result(res, n_shadows=4, experiment=exp, progress=False)
    # The final model of FedAvg over two hospitals leaks less than one hospital's update (next test):
    # measured 0.542 / 0.631 (data seeds 1-3: 0.549-0.578 / 0.526-0.575).
    for attack in (central, federated):
        assert attack.metrics().set_index("metric").value["auc"] > 0.52
    one = attack_result(res, hospital="H000", method="loss")
    assert set(one.metrics().hospital) == {"H000"} and len(one.scores) == 2 * len(fed.test_rows(0)[1])


def test_metrics_roc_and_plot(plain):
    attack = plain["lira"]
    table = attack.metrics()
    assert list(table.columns) == ["attack", "hospital", "round", "metric", "value"]
    assert table.metric.tolist() == list(METRICS) and set(table.attack) == {"lira"}
    assert set(table.hospital) == {"all"} and table["round"].isna().all()
    assert table.value.between(0, 1).all()
    roc = attack.roc()
    assert (roc.fpr.diff().dropna() >= 0).all() and (roc.tpr.diff().dropna() >= 0).all()
    assert (roc.fpr.iloc[0], roc.tpr.iloc[0], roc.fpr.iloc[-1], roc.tpr.iloc[-1]) == (0, 0, 1, 1)
    values = table.set_index("metric").value
    assert values["advantage"] == pytest.approx((roc.tpr - roc.fpr).max())
    assert values["tpr@1%fpr"] == pytest.approx(roc.tpr[roc.fpr <= 0.01].max())
    assert values["auc"] == pytest.approx(np.trapezoid(roc.tpr, roc.fpr))
    open_figures = plt.get_fignums()
    fig = attack.plot()
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    assert plt.get_fignums() == open_figures  # closed before it is returned
    fig = plot_attacks(plain.values())
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # two attacks and chance
    fig, ax = plt.subplots()
    assert attack.plot(ax=ax) is fig
    plt.close(fig)
    assert "lira" in repr(attack)


def test_larger_side_is_subsampled_with_the_seed(fed, overfit):
    members, non_members = (fed.x_train, fed.y_train), (fed.x_test[:50], fed.y_test[:50])
    a, b, c = (membership_inference(WIDE, overfit, members, non_members, method="loss", seed=s) for s in (0, 0, 1))
    assert a.is_member.sum() == (~a.is_member).sum() == 50
    assert np.array_equal(a.scores, b.scores) and not np.array_equal(a.scores, c.scores)
    assert np.array_equal(a.scores[50:], c.scores[50:])  # all 50 non-members, in order


def test_same_seed_same_lira_scores(fed, run):
    _, _, updates = run
    start, update = updates[1, "H000"]
    recipe = TrainingRecipe(epochs=3, batch_size=32, learning_rate=0.1)
    a, b, c = (attack_update(fed, "H000", WIDE, start, update, recipe=recipe, n_shadows=4, seed=s, progress=False)
               for s in (0, 0, 1))
    assert np.array_equal(a.scores, b.scores) and not np.array_equal(a.scores, c.scores)
    dp = dataclasses.replace(recipe, dp=(1.0, 1.0))
    d, e = (attack_update(fed, "H000", WIDE, start, update, recipe=dp, n_shadows=2, progress=False) for _ in range(2))
    assert np.array_equal(d.scores, e.scores)


def test_recipe_of_a_run_with_dp_sgd(fed):
    exp = fs.Experiment(federation=fed, model=WIDE, rounds=3, local_epochs=2, batch_size=16, learning_rate=0.2,
                        privacy=fs.privacy.DPSGD(noise_multiplier=1.3, l2_norm_clip=0.7))
    expected = TrainingRecipe(epochs=6, batch_size=16, learning_rate=0.2, dp=(0.7, 1.3))
    assert TrainingRecipe.from_config(exp.config()) == expected == TrainingRecipe.from_experiment(exp)
    assert TrainingRecipe.from_config(exp.config(), local=True) == dataclasses.replace(expected, epochs=2)


def test_central_shadows_warn_about_what_they_cannot_mimic(fed, overfit):
    config = {"rounds": 1, "local_epochs": 1, "batch_size": 64, "learning_rate": 0.1, "strategy": "fedprox",
              "components": [fs.privacy.CentralDP(noise_multiplier=1.0).describe()]}
    res = Result("fedprox", pd.DataFrame({"round": [1]}), overfit, fed, WIDE, config)
    with pytest.warns(UserWarning, match="experiment="):
        attack_result(res, n_shadows=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attack_result(res, n_shadows=2, recipe=TrainingRecipe(batch_size=64), progress=False)


def test_arguments_are_checked(fed, overfit, run):
    members, non_members = (fed.x_train, fed.y_train), (fed.x_test, fed.y_test)

    def attack(**changes):
        kwargs = {"model_fn": WIDE, "weights": overfit, "members": members, "non_members": non_members,
                  "recipe": OVERFIT, "n_shadows": 2, "progress": False} | changes
        return membership_inference(**kwargs)

    cases = [
        ({"method": "shadow"},
         r"method: must be one of 'lira', 'lira-offline', 'rmia', 'rmia-offline', 'loss', got 'shadow'"),
        ({"n_shadows": 1}, "n_shadows: must be an even integer >= 2"),
        ({"n_shadows": 5}, "n_shadows: must be an even integer >= 2"),
        ({"recipe": None}, "recipe: LiRA needs the target's TrainingRecipe"),
        ({"model_fn": "mlp"}, "model_fn: must be a callable"),
        ({"weights": overfit[:-1]}, "weights: expected a list of 6 arrays"),
        ({"start_weights": [w.T for w in overfit]}, "start_weights: array 0 has shape"),
        ({"members": fed.x_train}, r"members: expected a pair \(x, y\)"),
        ({"non_members": (fed.x_test[:, :3], fed.y_test)}, "non_members: x has 3 features, expected"),
        ({"members": (fed.x_train, fed.y_train * 2)}, "members: labels must be 0 or 1"),
        ({"members": (fed.x_train[:0], fed.y_train[:0])}, "members, non_members: need at least one row each"),
        ({"global_variance": False}, "global_variance: per-candidate variances need n_shadows >= 4"),
        ({"method": "loss", "population": members}, "start_weights, population: only used by"),
        ({"seed": -1}, "seed: must be an integer >= 0"),
    ]
    for changes, message in cases:
        with pytest.raises(ValueError, match=message):
            attack(**changes)
    for changes, message in [
        ({"epochs": 0}, "epochs: must be an integer >= 1"),
        ({"learning_rate": 0}, "learning_rate: must be a finite number > 0"),
        ({"dp": (1.0,)}, r"dp: must be None or \(l2_norm_clip > 0, noise_multiplier >= 0\[, sampling in "),
        ({"dp": (1.0, 1.0, "sorted")}, r"dp: must be None or"),
        ({"dp": (0.0, 1.0)}, "dp: must be None"),
        ({"max_steps": 0}, "max_steps: must be an integer >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainingRecipe(**changes)
    _, res, _ = run
    with pytest.raises(ValueError, match=r"hospital: unknown 'H9'; allowed: None \(all\) or a hospital id"):
        attack_result(res, hospital="H9", method="loss")
    with pytest.raises(ValueError, match="res: expected a fedsim Result"):
        attack_result(fed, method="loss")
    with pytest.raises(ValueError, match="experiment: expected the fedsim Experiment"):
        attack_result(res, experiment=res, n_shadows=2)
    with pytest.raises(ValueError, match="federation: expected a fedsim Federation"):
        attack_update(res, "H000", WIDE, overfit, overfit, recipe=OVERFIT)
    with pytest.raises(ValueError, match="is_member: needs both members and non-members"):
        MembershipAttack("loss", [0.1, 0.2], [True, True])


def test_the_curious_server_runs_membership_inference_on_an_update():
    fed = fs.synthetic_federation("readmission_30d", n_hospitals=2, n_patients=400, seed=0, test_size=0.5)
    spy = fs.attacks.MembershipInference(hospital=1, round=2, n_shadows=4)
    res = fs.Experiment(federation=fed, model="mlp", rounds=2, local_epochs=20, learning_rate=0.1,
                        observers=[spy]).run()
    rows = res.attacks.set_index("metric")
    assert set(rows.index) == {"auc", "advantage", "tpr@0.1%fpr", "tpr@1%fpr"}
    assert rows["attack"].eq("membership inference (lira)").all() and rows["hospital"].eq(fed.hospitals[1]).all()
    assert rows.loc["auc", "value"] > 0.55  # twenty local epochs on 100 records overfit
    with pytest.raises(ValueError, match="^target: under SecAgg"):
        fs.Experiment(federation=fed, privacy=fs.privacy.SecAgg(), observers=[spy]).run()
