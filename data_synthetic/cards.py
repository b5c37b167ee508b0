"""Scenario cards: the YAML files in scenarios/ that parameterise the outcome mechanism."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files

import yaml

from .knobs import KNOBS
from .scm import CATEGORIES, TERMS, VARIABLES

_SCENARIOS = files(__package__) / "scenarios"


@dataclass(frozen=True)
class Protocol:
    """A care protocol that multiplies some outcome coefficients at the hospitals running it."""

    name: str
    description: str
    multipliers: dict[str, float]


@dataclass(frozen=True)
class ScenarioCard:
    """One prediction task: target, features, outcome coefficients and default knob values."""

    name: str
    title: str
    description: str
    target: str
    prevalence: float  # at all knobs 0; the intercept is calibrated to it
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    intercept: float
    coefficients: dict[str, float]
    protocol: Protocol
    knobs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KNOBS, 0.0))

    def __post_init__(self):
        _check("numeric_features", self.numeric_features, VARIABLES)
        _check("categorical_features", self.categorical_features, CATEGORIES)
        _check("coefficients", self.coefficients, TERMS)
        _check("protocol.multipliers", self.protocol.multipliers, self.coefficients)
        _check("knobs", self.knobs, KNOBS)
        if self.target in VARIABLES or self.target in CATEGORIES or self.target == "hospital":
            raise ValueError(f"target {self.target!r} clashes with a generated column")


def _check(field_name, names, allowed):
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"{field_name}: unknown {unknown}; allowed: {sorted(allowed)}")


def list_scenarios() -> list[str]:
    """Names of the shipped scenario cards."""
    return sorted(p.name.removesuffix(".yaml") for p in _SCENARIOS.iterdir() if p.name.endswith(".yaml"))


def load_card(name: str) -> ScenarioCard:
    """Read scenarios/<name>.yaml into a ScenarioCard."""
    allowed = list_scenarios()
    if name not in allowed:
        raise ValueError(f"scenario: must be one of {allowed}, got {name!r}")
    raw = yaml.safe_load((_SCENARIOS / f"{name}.yaml").read_text(encoding="utf-8"))
    return ScenarioCard(
        **{
            **raw,
            "numeric_features": tuple(raw["numeric_features"]),
            "categorical_features": tuple(raw["categorical_features"]),
            "protocol": Protocol(**raw["protocol"]),
            "knobs": {**dict.fromkeys(KNOBS, 0.0), **raw.get("knobs", {})},
        }
    )
