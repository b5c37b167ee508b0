"""Components: the pluggable pieces an Experiment is assembled from, and the registry that finds them.

A component is a small frozen dataclass that describes itself:

- ``family``: ``privacy``, ``adversary``, ``defense``, ``availability``, ``attack`` or ``audit``;
- ``name``: its registry name (``dpsgd``, ``sign_flip``, ``norm_bound``...),
  what the CLI's YAML, the audit log and the report call it; ``title`` is
  the name shown to people ("DP-SGD");
- ``threats``: the threats it poses or addresses, from ``THREATS``; ``role``
  says which (``"threat"`` for adversaries, attacks and availability faults,
  ``"mitigation"`` for privacy techniques and defenses, unless a class says
  otherwise; an audit's is ``"audit"``: it measures a privacy claim, it
  neither poses a threat nor mitigates one);
- for privacy techniques: ``unit`` (of privacy, from ``UNITS``),
  ``trust_model`` (who must be trusted for the guarantee) and
  ``spends_epsilon``;
- ``settings()``: its fields as plain data; ``from_settings`` rebuilds an
  equal component. That one form is what the CLI's YAML gives, the audit
  log records, the study cache keys on and a spec shipped to other
  processes carries.

``install(plan)`` extends one run's ``fedsim.engine.Plan`` at the component's
stage (wrap the strategy, add ClientApp mods, screens, observers, tables...).
Per-run state lives in what ``install`` creates, so a component can serve
many runs.

Adding a technique is one file: a subclass that sets ``family`` and
``name`` registers itself when its module is imported (add the import to the
family's ``__init__`` to ship it with fedsim)::

    @dataclass(frozen=True)
    class ClipUpdates(Component):
        '''Each hospital clips its update to ``max_norm`` before sending it.'''
        family = "privacy"
        name = "clip_updates"
        threats = ("update leakage",)
        max_norm: float = param(1.0, Positive())

        def install(self, plan):
            plan.add_mod("privacy", make_clipping_mod(self.max_norm))
"""

import dataclasses
import importlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from fedsim.engine import Plan
from fedsim.plain import plain
from fedsim.validation import Constraint, Fraction, Ids, Options, check, check_fields, check_unknown

FAMILIES = ("privacy", "adversary", "defense", "availability", "attack", "audit")
ROLES = ("threat", "mitigation", "audit")
# Each threat and the property of the collaboration it endangers.
THREATS = {
    "update leakage": "confidentiality",
    "membership inference": "confidentiality",
    "poisoning": "integrity",
    "backdoor": "integrity",
    "free-riding": "integrity",
    "dropout": "availability",
    "stragglers": "availability",
}
# Units of privacy, in words.
UNITS = {
    "record": "one patient record of one hospital",
    "hospital": "one hospital's whole contribution (all its records, every round)",
    "update": "one update a hospital sends (its contribution to one round)",
}

REGISTRY: dict[str, dict[str, type["Component"]]] = {family: {} for family in FAMILIES}
# The ``fedsim.Experiment`` field that takes each family's components.
FIELDS = {"privacy": "privacy", "adversary": "adversaries", "defense": "defenses", "availability": "availability",
          "attack": "observers", "audit": "audit"}


class Component:
    """Base class of every component: set the class facts, declare fields with ``param``, override ``install``."""

    family: ClassVar[str] = ""
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    threats: ClassVar[tuple[str, ...]] = ()
    role: ClassVar[str | None] = None
    unit: ClassVar[str | None] = None
    trust_model: ClassVar[str | None] = None
    spends_epsilon: ClassVar[bool] = False
    # Why it needs hospitals' rows where the server runs (None: it does not). A deployment's server holds no
    # hospital's rows, so such a component runs in a simulation only (the spec refuses it, saying this).
    server_reads_rows: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(cls)

    def __post_init__(self):
        if dataclasses.is_dataclass(self):
            check_fields(self)

    def install(self, plan: Plan) -> None:
        """Extend ``plan`` (see ``fedsim.engine.Plan`` for what a component may add)."""
        raise NotImplementedError(f"{type(self).__name__} must implement install(plan)")

    def settings(self) -> dict:
        """The component's fields as plain data (``from_settings`` rebuilds an equal component)."""
        if not dataclasses.is_dataclass(self):
            return {}
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def describe(self) -> dict:
        """What the component is, in plain data: what the audit log records and the report reads."""
        role = self.role or ("mitigation" if self.family in ("privacy", "defense") else "threat")
        facts = {"family": self.family, "name": self.name, "title": self.title or self.name.replace("_", " "),
                 "role": role, "threats": list(self.threats), "settings": self.settings()}
        if self.family == "privacy":
            facts.update(unit=self.unit, trust_model=self.trust_model, spends_epsilon=self.spends_epsilon)
        return facts


def register(cls: type[Component]) -> type[Component]:
    """Add a component class to the registry of its family (done for every subclass that sets ``name``)."""
    check("family", cls.family, Options(*FAMILIES))
    if isinstance(cls.role, str):
        check("role", cls.role, Options(*ROLES))
    unknown = [t for t in cls.threats if t not in THREATS] if isinstance(cls.threats, tuple) else []
    if unknown:
        raise ValueError(f"threats: unknown {unknown} in {cls.__name__}; allowed: {sorted(THREATS)}")
    if cls.family == "privacy" and cls.unit is not None and cls.unit not in UNITS:
        raise ValueError(f"unit: unknown {cls.unit!r} in {cls.__name__}; allowed: {sorted(UNITS)}")
    known = REGISTRY[cls.family].get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"name: {cls.family} {cls.name!r} is already {known.__module__}.{known.__qualname__}")
    REGISTRY[cls.family][cls.name] = cls
    return cls


def names(family: str) -> list[str]:
    """The registry names of one family, sorted."""
    return sorted(REGISTRY[check("family", family, Options(*FAMILIES))])


def from_settings(spec, family: str | None = None, field: str | None = None) -> Component:
    """A component from ``{"name": ..., <settings>}`` or its bare name (``"technique"`` works as the name key).

    ``family`` limits the lookup to one family; unknown names list the allowed
    ones and unknown or bad settings name the field (errors start with
    ``field``, by default the family).
    """
    where = field or family or "component"
    if isinstance(spec, Component):
        if family is not None and spec.family and spec.family != family:
            raise ValueError(f"{where}: {type(spec).__name__} is {_a(spec.family)} component, not {_a(family)} one")
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping with 'name:' (and its settings), got {spec!r}")
    spec = dict(spec)
    key = spec.pop("name", None)
    if key is None:
        key = spec.pop("technique", None)
    elif "technique" in spec:
        raise ValueError(f"{where}: give 'name:' or 'technique:', not both")
    families = [family] if family is not None else list(FAMILIES)
    matches = [REGISTRY[f][key] for f in families if isinstance(key, str) and key in REGISTRY[f]]
    if not matches:
        allowed = sorted({n for f in families for n in REGISTRY[f]})
        raise ValueError(f"{where}: unknown name {key!r}; allowed: {', '.join(allowed)}")
    cls = matches[0]
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    check_unknown(f"{where}: {key}", spec, fields)
    try:
        return cls(**spec)
    except ValueError as error:
        raise ValueError(f"{where}: {key}: {error}") from None


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def as_components(field: str, value, family: str | None = None) -> tuple[Component, ...]:
    """``None``, one component or a sequence of them (instances or ``{"name": ...}`` specs), checked."""
    if value is None:
        return ()
    items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, (str, dict)) else (value,)
    return tuple(from_settings(item, family, field) if isinstance(item, (dict, str, Component))
                 else _not_one(field, item) for item in items)


def _not_one(field: str, item):
    raise ValueError(f"{field}: expected fedsim components (or {{name: ..., <settings>}}), got {type(item).__name__}")


class Importable(Constraint):
    """A class or function, or its import path ``"module:qualname"`` (resolved)."""

    def __init__(self, what: str = "a callable or its import path 'module:name'"):
        self.what = what

    def accepts(self, value):
        if isinstance(value, str) and ":" in value:
            module, _, qualname = value.partition(":")
            try:
                target = importlib.import_module(module)
                for part in qualname.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError):
                return False, value
            value = target
        return callable(value), value

    def describe(self) -> str:
        return self.what


# --- which hospitals a component concerns ---------------------------------------------------------

HOSPITALS = (Fraction(), Ids())  # the constraints of a ``hospitals`` field: a fraction or ids


def pick_hospitals(plan: Plan, hospitals, field: str = "hospitals", salt: int = 0) -> list[int]:
    """Indices of ``hospitals``: ids (checked against the federation) or a fraction drawn from the plan's seed."""
    fed = plan.federation
    if isinstance(hospitals, (int, float)):
        k = max(1, round(hospitals * fed.n_hospitals))
        rng = np.random.default_rng([plan.seed, 0xAD, salt])
        return sorted(int(i) for i in rng.choice(fed.n_hospitals, k, replace=False))
    unknown = [h for h in hospitals if h not in fed.hospitals]
    if unknown:
        raise ValueError(f"{field}: unknown hospitals {unknown}; allowed: ids of the federation "
                         f"({fed.hospitals[0]!r}...) or a fraction in (0, 1]")
    return sorted(fed.index_of(h, field, ids_only=True) for h in hospitals)


__all__ = ["FAMILIES", "FIELDS", "HOSPITALS", "REGISTRY", "ROLES", "THREATS", "UNITS", "Component", "Importable",
           "as_components", "from_settings", "names", "pick_hospitals", "plain", "register"]
