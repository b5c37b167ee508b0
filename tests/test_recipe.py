"""The TrainingRecipe: what the server asks of a hospital, encoded once and decoded once."""

import dataclasses

import pytest

import fedsim as fs
from fedsim.recipe import TrainingRecipe, round_and_seed
from fedsim.training import DPTraining


def test_a_recipe_survives_the_message():
    recipe = TrainingRecipe(epochs=2, batch_size=16, learning_rate=0.3, dp=(0.7, 1.3, "shuffle"), max_steps=5,
                            proximal_mu=0.01)
    config = {**recipe.encode(seed=7), "server-round": 3}
    assert TrainingRecipe.decode(config) == recipe
    assert recipe.dp == DPTraining(0.7, 1.3, "shuffle")
    assert round_and_seed(config) == (3, 7)
    assert TrainingRecipe.decode(TrainingRecipe().encode()) == TrainingRecipe()


@pytest.mark.parametrize("change, named", [
    (lambda c: c.pop("lr"), "'lr'"),
    (lambda c: c.update({"batch-size": "many"}), "'batch-size'"),
    (lambda c: c.update({"dpsgd-noise": None}), "'dpsgd-noise'"),
    (lambda c: c.update({"dpsgd-sampling": "sorted"}), "sampling"),
    (lambda c: c.update({"local-epochs": 0}), "epochs"),
])
def test_a_malformed_train_config_is_an_error_naming_its_entry(change, named):
    config = TrainingRecipe(dp=(1.0, 1.0)).encode(seed=0)
    change(config)
    with pytest.raises(ValueError, match=named):
        TrainingRecipe.decode(config)


def test_the_plan_sends_the_experiments_recipe_with_dpsgd_added():
    fed = fs.synthetic_federation("icu_mortality", n_hospitals=3, n_patients=300, seed=0)
    exp = fs.Experiment(federation=fed, rounds=2, local_epochs=2, batch_size=16, learning_rate=0.2, local_steps=9)
    plain = exp.build_plan().recipe
    assert plain == TrainingRecipe(epochs=2, batch_size=16, learning_rate=0.2, max_steps=9)
    private = exp.replace(privacy=fs.privacy.DPSGD(noise_multiplier=1.5, l2_norm_clip=0.5)).build_plan()
    assert private.recipe == dataclasses.replace(plain, dp=(0.5, 1.5))
    assert TrainingRecipe.decode(private.train_config()) == private.recipe
    assert private.recipe.steps(100) == min(2 * 7, 9)
