"""Components: the pluggable pieces an Experiment is assembled from.

A privacy technique, an adversary or a defense is a Component: a small,
reusable settings object whose ``install(plan)`` extends one run's Plan (see
``fedsim.engine.Plan``): wrap the Flower strategy, add ClientApp mods,
observers, reply screens, eligibility checks, training settings, and reports
that become tables of the Result. Per-run state lives in what ``install``
creates, so a component can be used in many runs.
"""

from collections.abc import Sequence

from fedsim.engine import Plan


class Component:
    """Base class: override ``install``."""

    def install(self, plan: Plan) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement install(plan)")


def as_components(field: str, value) -> tuple[Component, ...]:
    """``None``, one component or a sequence of them, checked."""
    if value is None:
        return ()
    items = tuple(value) if isinstance(value, Sequence) else (value,)
    for item in items:
        if not isinstance(item, Component):
            raise ValueError(f"{field}: expected fedsim components, got {type(item).__name__}")
    return items
