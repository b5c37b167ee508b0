"""Constraints declared once, messages generated from them (in the spirit of scikit-learn's
``utils/_param_validation``).

A constraint checks one value and, when it holds, returns it normalised (an
``np.int64`` becomes an ``int``, a list of ids a tuple). ``check(field, value,
*constraints)`` accepts the value if any constraint holds, else raises
``ValueError("field: must be <what the constraints say>, got <value>")``.

Dataclass components declare theirs next to each field::

    noise_multiplier: float = param(1.0, Real(min=0))

and ``Component.__post_init__`` checks them all (``check_fields``).
"""

import dataclasses
import math
import numbers
from collections.abc import Sequence

import numpy as np


class Constraint:
    """One condition on a value: ``accepts`` it (normalised) or not, and says what it wants."""

    def accepts(self, value) -> tuple[bool, object]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _bounds(minimum, maximum, min_open, max_open) -> str:
    def shown(bound):
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {shown(minimum)}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {shown(maximum)}")
    return " and ".join(parts)


def _within(value, minimum, maximum, min_open, max_open) -> bool:
    if minimum is not None and (value <= minimum if min_open else value < minimum):
        return False
    return maximum is None or (value < maximum if max_open else value <= maximum)


class Integer(Constraint):
    """An integer (numpy's too, never a bool) within optional bounds."""

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def accepts(self, value):
        if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
            return False, value
        value = int(value)
        return _within(value, self.min, self.max, False, False), value

    def describe(self) -> str:
        bounds = _bounds(self.min, self.max, False, False)
        return f"an integer {bounds}".strip()


class Real(Constraint):
    """A finite real number (not a bool) within optional bounds, open (strict) or closed.

    ``integers=False`` refuses integers (a share given beside an integer count: 1 is one, 1.0 is all).
    """

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, integers: bool = True):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open
        self.integers = integers

    def accepts(self, value):
        if not _is_real(value) or not math.isfinite(value):
            return False, value
        if not self.integers and isinstance(value, numbers.Integral):
            return False, value
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
        return _within(value, self.min, self.max, self.min_open, self.max_open), value

    def describe(self) -> str:
        if not self.integers and (self.min, self.max, self.min_open, self.max_open) == (0, 1, True, False):
            return "a fraction in (0, 1]"
        bounds = _bounds(self.min, self.max, self.min_open, self.max_open)
        return f"a finite {'number' if self.integers else 'float'} {bounds}".strip()


def Positive() -> Real:  # noqa: N802  (reads as a constraint, like Real and Integer)
    """A finite number > 0."""
    return Real(min=0, min_open=True)


def Share() -> Real:  # noqa: N802
    """A share in (0, 1] (1 meaning all)."""
    return Real(min=0, max=1, min_open=True)


def Fraction() -> Real:  # noqa: N802
    """A share in (0, 1] given as a float, beside an integer count (``hospitals=1`` is one, ``1.0`` all)."""
    return Real(min=0, max=1, min_open=True, integers=False)


class Options(Constraint):
    """One of a fixed set of values (strings, booleans...)."""

    def __init__(self, *options):
        self.options = options

    def accepts(self, value):
        try:
            return any(value == o and type(value) is type(o) for o in self.options), value
        except Exception:  # noqa: BLE001  (an exotic value that cannot be compared is not an option)
            return False, value

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


class NoneValue(Constraint):
    """``None``, meaning "not set" or "the default"."""

    def accepts(self, value):
        return value is None, value

    def describe(self) -> str:
        return "None"


class Boolean(Options):
    """True or False (not 0/1)."""

    def __init__(self):
        super().__init__(True, False)

    def describe(self) -> str:
        return "True or False"


class Text(Constraint):
    """A non-empty string without line breaks (names that end up in tables, logs and reports)."""

    def accepts(self, value):
        return isinstance(value, str) and bool(value.strip()) and not any(c in value for c in "\r\n"), value

    def describe(self) -> str:
        return "a non-empty one-line string"


class Instance(Constraint):
    """An instance of one of ``types``."""

    def __init__(self, *types: type, what: str | None = None):
        self.types, self.what = types, what

    def accepts(self, value):
        return isinstance(value, self.types), value

    def describe(self) -> str:
        return self.what or "a " + " or ".join(t.__name__ for t in self.types)


class IsCallable(Constraint):
    """Anything callable."""

    def __init__(self, what: str = "a callable"):
        self.what = what

    def accepts(self, value):
        return callable(value), value

    def describe(self) -> str:
        return self.what


class Ids(Constraint):
    """A non-empty list of distinct strings (hospital ids), kept as a tuple; one string counts as a list of one."""

    def accepts(self, value):
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, Sequence) or not value or not all(isinstance(v, str) for v in value):
            return False, value
        value = tuple(value)
        return len(set(value)) == len(value), value

    def describe(self) -> str:
        return "a list of distinct hospital ids"


class Mapping(Constraint):
    """A dict (left as it is; the owner checks its entries)."""

    def accepts(self, value):
        return isinstance(value, dict), value

    def describe(self) -> str:
        return "a mapping"


class Seq(Constraint):
    """A list or tuple whose every item meets ``item`` (kept as a tuple of normalised items)."""

    def __init__(self, item: Constraint, what: str | None = None, non_empty: bool = False):
        self.item, self.what, self.non_empty = item, what, non_empty

    def accepts(self, value):
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (Sequence, np.ndarray)):
            return False, value
        if self.non_empty and len(value) == 0:
            return False, value
        out = []
        for item in value:
            ok, item = self.item.accepts(item)
            if not ok:
                return False, value
            out.append(item)
        return True, tuple(out)

    def describe(self) -> str:
        return self.what or f"a {'non-empty ' if self.non_empty else ''}list of {self.item.describe()}s"


def describe(constraints: Sequence[Constraint]) -> str:
    return " or ".join(c.describe() for c in constraints)


def check(field: str, value, *constraints: Constraint):
    """``value`` normalised by the first constraint that holds; else a ValueError naming ``field``."""
    for constraint in constraints:
        ok, normalised = constraint.accepts(value)
        if ok:
            return normalised
    raise ValueError(f"{field}: must be {describe(constraints)}, got {_shown(value)}")


def _shown(value) -> str:
    """The value as it appears in a message: its repr, on one line, at most 80 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def param(default=dataclasses.MISSING, *constraints: Constraint, default_factory=dataclasses.MISSING):
    """A dataclass field with the constraints its value must meet (checked by ``check_fields``)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"constraints": constraints})


def check_fields(instance) -> None:
    """Check (and normalise, also on frozen dataclasses) every field that declares constraints."""
    for f in dataclasses.fields(instance):
        constraints = f.metadata.get("constraints")
        if constraints:
            value = check(f.name, getattr(instance, f.name), *constraints)
            object.__setattr__(instance, f.name, value)


def check_unknown(field: str, given, allowed) -> None:
    """Refuse keys of ``given`` that are not in ``allowed``, listing the allowed ones."""
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{field}: unknown {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(sorted(map(str, allowed)))}")


__all__ = ["Boolean", "IsCallable", "Constraint", "Fraction", "Ids", "Instance", "Integer", "Mapping", "NoneValue",
           "Options", "Positive", "Real", "Seq", "Share", "Text", "check", "check_fields", "check_unknown", "describe",
           "param"]
