"""Your own defense: any strategy wrapper, e.g. a ``StrategyWrapper`` subclass written in a notebook cell."""

from collections.abc import Callable
from dataclasses import dataclass

from flwr.serverapp.strategy import Strategy

from fedsim.components import Component, Importable
from fedsim.engine import Plan
from fedsim.validation import NoneValue, Text, param


@dataclass(frozen=True)
class Wrap(Component):
    """Your own defense: ``factory(strategy) -> Strategy`` wraps the experiment's strategy.

    ``factory`` is typically a ``StrategyWrapper`` subclass (or any Flower
    strategy wrapper class taking the strategy first), or its import path
    ``"package.module:ClassName"`` (what a YAML config gives). ``label``
    names it in tables and reports.
    """

    family = "defense"
    name = "wrap"
    title = "custom strategy wrapper"
    threats = ("poisoning", "backdoor")

    factory: Callable[[Strategy], Strategy] = param(
        None, Importable("a callable strategy -> Strategy, or its import path 'module:Name'"))
    label: str | None = param(None, Text(), NoneValue())

    def install(self, plan: Plan) -> None:
        plan.wrap("defense", self.factory)
