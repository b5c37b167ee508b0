"""DP noise no one else can reproduce: a curious server that regenerates it from what it knows strips nothing.

The attack: the server knows the public seed (it sends it in every train
config; it is in ``config.yaml`` and the audit log) and fedsim's code. If a
hospital's DP-SGD noise came from those, the server could regenerate it and
subtract it from the update, leaving the bare clipped gradient. Its positive
control is the same attack given the hospital's secret: it recovers the
noise to float precision, so a residual of the noise's size means the
secret, not a weak attack, protects the update.
"""

import json

import numpy as np
import pytest

import fedsim as fs
from fedsim.deploy.flower_app import client_app as exported
from fedsim.deploy.roster import first_round
from fedsim.deploy.spec import experiment_fields, to_spec
from fedsim.engine.grid import InProcessGrid
from fedsim.engine.messages import flat, weights_of
from fedsim.models import resolve_model
from fedsim.privacy import DPSGD, CentralDP
from fedsim.randomness import hospital_rng
from fedsim.training import trainer_for
from tests.recording import Recorder

SECRET = 2**61 + 987_654_321  # the experimenter's noise_seed: known to the test, never to the server
CLIP, Z, LR, BATCH = 1.0, 1.0, 0.1, 16


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=3, seed=0)


def dp_experiment(fed, **changes):
    settings = {"model": "logreg", "rounds": 1, "local_steps": 1, "batch_size": BATCH, "learning_rate": LR,
                "privacy": DPSGD(Z, CLIP), **changes}
    return fs.Experiment(federation=fed, **settings)


def noise_of(fed, hospital: int, start, make_rng) -> np.ndarray:
    """The noise a hospital whose generator is ``make_rng()`` adds to its one-step update (data cancel out)."""
    trainer = trainer_for(resolve_model("logreg"), fed.n_features)
    x, y = fed.train_rows(hospital)
    schedule = {"epochs": 1, "batch_size": BATCH, "learning_rate": LR, "max_steps": 1}
    noisy, _, _ = trainer.fit(start, x, y, rng=make_rng(), dp=(CLIP, Z), **schedule)
    bare, _, _ = trainer.fit(start, x, y, rng=make_rng(), dp=(CLIP, 0.0), **schedule)
    return flat(noisy) - flat(bare)


def released_noise(fed, hospital: int, start, update, secret) -> np.ndarray:
    """What the hospital really added: its update minus the noiseless update on the batch it really drew."""
    trainer = trainer_for(resolve_model("logreg"), fed.n_features)
    x, y = fed.train_rows(hospital)
    bare, _, _ = trainer.fit(start, x, y, rng=hospital_rng(secret, 0, 1, hospital), dp=(CLIP, 0.0), epochs=1,
                             batch_size=BATCH, learning_rate=LR, max_steps=1)
    return update - (flat(bare) - flat(start))


def public_guesses(config: dict, hospital: int) -> dict:
    """Generators the server can build from what it knows (the seed it sent, the round, the hospital)."""
    seed, server_round = int(config["seed"]), int(config["server-round"])
    return {"plain training's stream (seed, round, hospital)": lambda: np.random.default_rng(
                [seed, server_round, hospital]),
            "fedsim's private stream keyed by the seed": lambda: hospital_rng(seed, seed, server_round, hospital)}


def assert_noise_survives(fed, exchange, secret):
    for name, reply in exchange.replies.items():
        i = fed.hospitals.index(name)
        start = weights_of(exchange.sent[name].content)
        config = dict(exchange.sent[name].content["config"])
        noise = released_noise(fed, i, start, flat(weights_of(reply.content)) - flat(start), secret)
        size = np.linalg.norm(noise)
        assert size > 0.1 * LR  # the update is noised: sigma * ||n|| with ||n|| ~ sqrt(parameters)
        control = noise - noise_of(fed, i, start, lambda i=i: hospital_rng(secret, 0, 1, i))
        assert np.linalg.norm(control) < 1e-5 * size  # the attack given the secret strips the noise exactly
        for guess, make_rng in public_guesses(config, i).items():
            residual = np.linalg.norm(noise - noise_of(fed, i, start, make_rng))
            assert residual > 0.8 * size, f"{name}: the server stripped the noise with {guess!r}"


def test_a_curious_server_cannot_strip_dpsgd_noise_in_process(fed, tmp_path):
    recorder = Recorder("train")
    res = dp_experiment(fed, noise_seed=SECRET, observers=[recorder], out=tmp_path).run()
    (exchange,) = recorder.exchanges
    assert_noise_survives(fed, exchange, SECRET)
    # The secret is nowhere the server or a log reader looks.
    written = [json.dumps(res.config, default=str), (tmp_path / "audit.jsonl").read_text()]
    written += [json.dumps(dict(m.content["config"]), default=str) for m in exchange.sent.values()]
    assert not any(str(SECRET) in text for text in written)


def test_a_curious_server_cannot_strip_dpsgd_noise_in_the_exported_app(fed):
    """Each node's secret is its operator's (node config), the ServerApp sees only what the nodes send."""
    spec = to_spec(dp_experiment(fed, engine="deployment"))
    exported._HOSPITALS.clear()
    grid = InProcessGrid(exported.app, 3)
    for node in grid.get_node_ids():
        context = grid.context(node)
        context.run_config = {"spec": json.dumps(spec)}
        context.node_config["noise-seed"] = SECRET
    federation, hospital_of = first_round(grid, spec)
    recorder = Recorder("train")
    fs.Experiment(**{**experiment_fields(spec, federation=federation), "engine": "inprocess",
                      "observers": [recorder]}).run_on(
        grid, hospital_of)
    (exchange,) = recorder.exchanges
    assert_noise_survives(fed, exchange, SECRET)


def test_the_same_experiment_releases_fresh_dp_models_and_the_same_plain_model(fed):
    def weights(experiment):
        return flat(experiment.run().weights)

    plain = dp_experiment(fed, privacy=None, rounds=2, local_steps=None)
    np.testing.assert_array_equal(weights(plain), weights(plain))  # a plain run repeats from its public seed
    for privacy in (DPSGD(Z, CLIP), CentralDP(1.0)):
        experiment = plain.replace(privacy=privacy)
        assert not np.array_equal(weights(experiment), weights(experiment)), privacy.name
        repeated = experiment.replace(noise_seed=SECRET)
        np.testing.assert_array_equal(weights(repeated), weights(repeated))  # the experimenter's secret repeats it


def test_a_run_leaves_the_callers_random_generators_alone(fed):
    import random

    np.random.seed(5)
    random.seed(5)
    expected = (np.random.rand(), random.random())
    np.random.seed(5)
    random.seed(5)
    dp_experiment(fed, privacy=CentralDP(1.0), fraction_train=0.7).run()
    assert (np.random.rand(), random.random()) == expected
