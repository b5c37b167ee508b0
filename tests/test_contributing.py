"""CONTRIBUTING.md's worked examples and recipes run as written: a technique, an adversary and a defense, a
scenario, an engine, a robust rule and a privacy mechanism with its charge."""

import re
from pathlib import Path

import numpy as np
import pytest

import data_synthetic
import fedsim as fs
from data_synthetic import cards
from data_synthetic.generator import calibrated_intercept
from fedsim import strategies
from fedsim.components import REGISTRY
from fedsim.engine import engines
from tests.accounting import without_replacement_epsilon

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "CONTRIBUTING.md").read_text()


def recipe(heading: str, language: str = "python") -> str:
    """The code block(s) of ``language`` under the ``### heading`` of CONTRIBUTING.md."""
    section = re.search(rf"^### {re.escape(heading)}.*?\n(.*?)(?=^##)", TEXT, re.DOTALL | re.MULTILINE)
    assert section, f"CONTRIBUTING.md has no section {heading!r}"
    blocks = re.findall(rf"```{language}\n(.*?)```", section.group(1), re.DOTALL)
    assert blocks, f"{heading!r}: no {language} block"
    return "\n".join(blocks)


def run_recipe(heading: str) -> dict:
    namespace = {"__name__": "contributing"}
    exec(compile(recipe(heading), f"CONTRIBUTING.md: {heading}", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture()
def registries_restored():
    before = {family: dict(entries) for family, entries in REGISTRY.items()}
    saved = [dict(d) for d in (strategies.STRATEGIES, strategies.TITLES, strategies.THREATS, engines.ENGINES)]
    yield
    for family, entries in before.items():
        REGISTRY[family].clear()
        REGISTRY[family].update(entries)
    for d, old in zip((strategies.STRATEGIES, strategies.TITLES, strategies.THREATS, engines.ENGINES), saved):
        d.clear()
        d.update(old)


@pytest.fixture(scope="module")
def fed():
    return fs.synthetic_federation("icu_mortality", n_hospitals=4, n_patients=1200, seed=0)


def test_the_worked_examples_run_and_register_themselves(registries_restored):
    blocks = re.findall(r"```python\n(.*?)```", TEXT.split("## Recipes for the seams")[0], re.DOTALL)
    assert len(blocks) == 4
    namespace = {"__name__": "contributing"}
    exec(compile("\n".join(blocks), "CONTRIBUTING.md", "exec"), namespace)  # noqa: S102
    assert {"clip_updates", "reversed_update", "cosine_filter"} <= set(REGISTRY["privacy"]) | set(
        REGISTRY["adversary"]) | set(REGISTRY["defense"])
    res = namespace["res"]
    attacker = set(res.adversaries.hospital)
    rejected = res.participation[res.participation.event == "rejected"]
    assert len(attacker) == 1 and set(rejected.hospital) == attacker  # the filter caught the reversed update
    assert res.final("auroc") > 0.6


def test_every_folder_of_the_which_folder_table_exists():
    table = TEXT.split("## Who acts: which folder")[1].split("\n## ")[0]
    folders = re.findall(r"`((?:fedsim|data_synthetic)/[\w/]+/)`", table)
    assert len(folders) >= 10
    assert all((ROOT / f).is_dir() for f in folders), [f for f in folders if not (ROOT / f).is_dir()]


def test_the_scenario_recipe_is_a_calibrated_card_that_trains(monkeypatch, tmp_path):
    for shipped in cards._SCENARIOS.iterdir():
        (tmp_path / shipped.name).write_text(shipped.read_text())
    (tmp_path / "stroke_30d.yaml").write_text(recipe("A scenario", "yaml"))
    monkeypatch.setattr(cards, "_SCENARIOS", tmp_path)
    assert "stroke_30d" in data_synthetic.list_scenarios()
    card = data_synthetic.load_card("stroke_30d")
    assert abs(calibrated_intercept(card) - card.intercept) < 0.02
    fed = fs.synthetic_federation("stroke_30d", n_hospitals=4, n_patients=3000, seed=0, label_skew=1.0)
    assert abs(fed.y_train.mean() - card.prevalence) < 0.05
    res = fs.Experiment(federation=fed, model="logreg", rounds=4, learning_rate=0.5).run()
    assert res.final("auroc") > 0.7


def test_the_engine_recipe_registers_and_runs_by_name(fed, registries_restored, capsys):
    run_recipe("An engine")
    exp = fs.Experiment(federation=fed, model="logreg", rounds=2, learning_rate=0.3, engine="logged")
    res = exp.run()
    assert "2 rounds" in capsys.readouterr().out
    assert res.final("auroc") == exp.replace(engine="inprocess").run().final("auroc")
    with pytest.raises(ValueError, match="^engine: logged runs at most 100 rounds"):
        exp.replace(rounds=101)


def test_the_robust_rule_recipe_reports_what_it_left_out(fed, registries_restored):
    run_recipe("A robust rule")
    assert strategies.title("drop_farthest") == "FedAvg without the farthest reply"
    assert strategies.aggregation_facts("drop_farthest")["threats"] == ["poisoning"]
    res = fs.Experiment(federation=fed, model="logreg", rounds=3, learning_rate=0.3, strategy="drop_farthest",
                        adversaries=fs.adversaries.SignFlip(hospitals=["H002"])).run()
    decided = res.tables["decisions"]
    left_out = decided[decided.decision == "not selected"]
    assert set(left_out.hospital) == {"H002"} and sorted(left_out["round"]) == [1, 2, 3]
    assert set(left_out.by) == {"DropFarthest"} and set(left_out.reason) == {"farthest from the median reply"}
    assert res.final("auroc") > 0.7


def test_the_privacy_mechanism_recipe_charges_what_it_released(fed, registries_restored):
    namespace = run_recipe("A privacy mechanism with its charge")
    mechanism = namespace["NoisyUpdates"](clip=0.5, noise_multiplier=2.0)
    exp = fs.Experiment(federation=fed, model="logreg", rounds=3, learning_rate=0.3, privacy=mechanism, noise_seed=1)
    res = exp.run()
    expected = without_replacement_epsilon(2.0, [((1, 1), 3)], 1e-5)  # 3 replies of each hospital, replace one
    assert np.allclose(res.privacy.epsilon, expected, rtol=1e-9) and len(res.privacy) == fed.n_hospitals
    assert set(res.privacy.unit) == {"hospital"}
    plain = exp.replace(privacy=None).run()
    again, other = exp.run(), exp.replace(noise_seed=2).run()
    noise = [np.abs(a - b).max() for a, b in zip(res.weights, plain.weights)]
    assert max(noise) > 0.01  # the noise ran
    assert all(np.array_equal(a, b) for a, b in zip(res.weights, again.weights))  # from the secret, repeatably
    assert not all(np.array_equal(a, b) for a, b in zip(res.weights, other.weights))  # and only from it
