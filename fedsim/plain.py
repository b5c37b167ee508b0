"""Plain data: what a config, a component's settings and an audit log entry are written as (one set of rules)."""

import math
from pathlib import Path

import numpy as np

LEAVES = (str, int, bool, type(None))


def plain(value):
    """``value`` as JSON-ready plain data: tuples and sets as lists, numpy scalars and arrays as numbers and lists,
    non-finite floats as strings, classes and functions by import path, anything else by its repr."""
    kind = type(value)
    if kind in LEAVES:  # the common cases first: an entry may hold a million of them
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is list and all(type(v) in LEAVES for v in value):
        return list(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [plain(v) for v in items]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if callable(value) and hasattr(value, "__qualname__"):  # a class or function: by its import path
        return f"{value.__module__}:{value.__qualname__}"
    return repr(value)
