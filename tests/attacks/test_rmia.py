"""RMIA (Zarifzadeh et al., ICML 2024) from LiRA's own shadows: the paper's pairwise test, and at few shadows at
least as strong as LiRA on the overfit set-up of test_membership."""

import functools

import numpy as np
import pytest

import fedsim as fs
from fedsim.attacks.membership import MembershipAttack, TrainingRecipe, membership_inference, rmia_scores
from fedsim.training import trainer_for

WIDE = functools.partial(fs.models.mlp, hidden=(256, 256))
OVERFIT = TrainingRecipe(epochs=100, batch_size=32, learning_rate=0.1)  # 200 rows, 100 epochs: memorised


@pytest.fixture(scope="module")
def attacks():
    """LiRA with 4 shadows for three attack seeds, and RMIA from the very same shadows."""
    fed = fs.synthetic_federation("readmission_30d", n_hospitals=2, n_patients=400, seed=0, test_size=0.5)
    trainer = trainer_for(WIDE, fed.n_features)
    target = OVERFIT.fit(trainer, trainer.initial_weights(100), fed.x_train, fed.y_train, np.random.default_rng(100))
    found = []
    for seed in range(3):
        lira = membership_inference(WIDE, target, (fed.x_train, fed.y_train), (fed.x_test, fed.y_test),
                                    method="lira", recipe=OVERFIT, n_shadows=4, seed=seed, progress=False)
        rmia = MembershipAttack("rmia", rmia_scores(**lira.info["statistics"]), lira.is_member)
        found.append((lira, rmia))
    return fed, target, found


def values(attack) -> dict[str, float]:
    return attack.metrics().set_index("metric").value.to_dict()


def test_rmia_is_at_least_as_strong_as_lira_with_the_same_four_shadows(attacks):
    _, _, found = attacks
    mean = {name: {m: np.mean([values(pair[k])[m] for pair in found]) for m in ("auc", "tpr@0.1%fpr", "tpr@1%fpr")}
            for k, name in enumerate(("lira", "rmia"))}
    # Measured: AUC 0.657 vs 0.666, TPR at 0.1% FPR 0.028 vs 0.057, at 1% FPR 0.070 vs 0.102.
    for metric in ("auc", "tpr@0.1%fpr", "tpr@1%fpr"):
        assert mean["rmia"][metric] >= mean["lira"][metric], (metric, mean)
    assert mean["rmia"]["auc"] > 0.62


def test_rmia_scores_are_the_papers_pairwise_likelihood_ratio_test():
    rng = np.random.default_rng(0)
    target, shadow = rng.normal(size=30), rng.normal(size=(6, 30))
    is_in = np.zeros((6, 30), bool)
    is_in[::2] = rng.random((3, 30)) < 0.5
    is_in[1::2] = ~is_in[::2]
    p_target, p_shadow = 1 / (1 + np.exp(-target)), 1 / (1 + np.exp(-shadow))

    def pairwise(prior, gamma):
        ratio = p_target / prior
        return np.array([np.mean([ratio[x] / ratio[z] >= gamma for z in range(30) if z != x]) for x in range(30)])

    for gamma in (1.0, 2.0):
        np.testing.assert_allclose(rmia_scores(target, shadow, is_in, gamma=gamma), pairwise(p_shadow.mean(0), gamma))
    out = np.where(~is_in, p_shadow, 0).sum(0) / (~is_in).sum(0)
    np.testing.assert_allclose(rmia_scores(target, shadow, is_in, online=False),
                               pairwise(0.5 * (1.3 * out + 0.7), 1.0))


def test_rmia_runs_through_membership_inference_and_on_an_update(attacks):
    fed, target, found = attacks
    rmia = membership_inference(WIDE, target, (fed.x_train, fed.y_train), (fed.x_test, fed.y_test), method="rmia",
                                recipe=OVERFIT, n_shadows=4, seed=0, progress=False)
    np.testing.assert_array_equal(rmia.scores, found[0][1].scores)  # same seed, same shadows, same scores
    assert rmia.attack == "rmia" and 0 <= rmia.scores.min() and rmia.scores.max() <= 1
    res = fs.Experiment(federation=fed, model="logreg", rounds=1, local_epochs=5, observers=[
        fs.attacks.MembershipInference(hospital=0, method="rmia-offline", n_shadows=2)]).run()
    rows = res.attacks.set_index("metric")
    assert rows.attack.iloc[0] == "membership inference (rmia-offline)" and 0 <= rows.value["auc"] <= 1
