"""CONTRIBUTING.md's worked examples run as written: a technique, an adversary and a defense, one class each."""

import re
from pathlib import Path

import pytest

from fedsim.components import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def registry_restored():
    before = {family: dict(entries) for family, entries in REGISTRY.items()}
    yield
    for family, entries in before.items():
        REGISTRY[family].clear()
        REGISTRY[family].update(entries)


def test_the_worked_examples_run_and_register_themselves(registry_restored):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "CONTRIBUTING.md").read_text(), re.DOTALL)
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
