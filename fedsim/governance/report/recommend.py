"""Constraints a data team states (``"epsilon_record<=8, auroc>=0.80"``) and which candidates of a decision table
meet them.

A constraint is ``column op number`` with ``op`` one of ``<= >= < > ==``;
columns are those of the decision table (``fedsim.studies.assess``). Three
rules keep a recommendation honest:

- **units are never mixed**: an epsilon is record-level (``epsilon_record``)
  or hospital-level (``epsilon_hospital``); a bare ``epsilon`` is read as the
  one unit every DP candidate shares, and refused, naming the choice, when
  the candidates differ in unit. Without differential privacy a candidate's
  epsilon is infinite at both units, so it meets no epsilon constraint;
- **uncertainty counts against the candidate**: a column measured with an
  interval (``auroc`` with ``auroc_low`` / ``auroc_high``) is tested on the
  interval's conservative end (``auroc >= 0.8`` on ``auroc_low``);
- **"not measured" is never "safe"**: a value that was not measured (NaN)
  meets no constraint, and a candidate whose threats were not all measured
  says which (``not_measured``), also when it meets every constraint.
"""

import math
import operator
import re
from dataclasses import dataclass

import pandas as pd

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf"
CONSTRAINT = re.compile(rf"^\s*([A-Za-z_][\w@%.]*)\s*(<=|>=|==|<|>)\s*({NUMBER})\s*$")
EPSILON = "epsilon"  # a bare epsilon: the unit every DP candidate shares (``resolve_units``)
UNITS = {"record": "epsilon_record", "hospital": "epsilon_hospital"}
# The threat each measured column answers (a NaN there: that threat was not measured for the candidate).
THREAT_COLUMNS = {"leakage_record_error": "update leakage", "mia_auc": "membership inference",
                  "auroc_poisoned": "poisoning", "backdoor_success": "backdoor", "auroc_dropout": "dropout"}


@dataclass(frozen=True)
class Constraint:
    """``column op value``, e.g. epsilon_record <= 8."""

    column: str
    op: str
    value: float

    def tested(self, row: dict) -> tuple[float, str]:
        """The value the constraint is tested on, and which: the interval's conservative end where there is one."""
        end = {"<=": "high", "<": "high", ">=": "low", ">": "low"}.get(self.op)
        if end is not None and f"{self.column}_{end}" in row and _number(row[f"{self.column}_{end}"]) is not None:
            return _number(row[f"{self.column}_{end}"]), f"the {end} end of its 95% interval"
        return _number(row.get(self.column)), ""

    def met(self, row: dict) -> bool:
        """Whether ``row`` meets it (a missing or NaN value never does)."""
        value, _ = self.tested(row)
        return value is not None and not math.isnan(value) and OPERATORS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


def parse(text: str | None, columns) -> list[Constraint]:
    """``"epsilon_record<=8, auroc>=0.80"`` as constraints on ``columns`` (``epsilon`` also allowed, see
    ``resolve_units``); one-line ValueError naming ``require``."""
    if text is None or not str(text).strip():
        return []
    if not isinstance(text, str):
        raise ValueError(f"require: expected text such as 'epsilon_record<=8, auroc>=0.80', got "
                         f"{type(text).__name__}")
    found = []
    for part in text.split(","):
        match = CONSTRAINT.match(part)
        if match is None:
            raise ValueError(f"require: cannot read {part.strip()!r}; expected COLUMN OP NUMBER with OP one of "
                             f"{', '.join(OPERATORS)}, e.g. 'epsilon_record<=8, auroc>=0.80'")
        column, op, value = match.groups()
        allowed = [*columns, EPSILON] if UNITS["record"] in columns else list(columns)
        if column not in allowed:
            raise ValueError(f"require: unknown column {column!r}; allowed: {', '.join(allowed)}")
        found.append(Constraint(column, op, float(value)))
    return found


def natural_units(table: pd.DataFrame) -> dict[str, str]:
    """{candidate: the unit its DP protects}: hospital where a hospital-level epsilon is finite, else record."""
    units = {}
    for row in table.to_dict(orient="records"):
        for unit in ("hospital", "record"):
            value = _number(row.get(UNITS[unit]))
            if value is not None and math.isfinite(value):
                units[row["candidate"]] = unit
                break
    return units


def resolve_units(table: pd.DataFrame, constraints: list[Constraint]) -> list[Constraint]:
    """A bare ``epsilon`` read as the one unit every DP candidate protects; refused when they differ."""
    if not any(c.column == EPSILON for c in constraints):
        return constraints
    units = natural_units(table)
    if len(set(units.values())) > 1:
        named = "; ".join(f"{unit}: {', '.join(c for c, u in units.items() if u == unit)}"
                          for unit in ("record", "hospital"))
        raise ValueError(f"require: 'epsilon' mixes units here ({named}): a record-level and a hospital-level "
                         f"epsilon do not compare; write epsilon_record<=... and/or epsilon_hospital<=...")
    column = UNITS[next(iter(units.values()), "record")]
    return [Constraint(column, c.op, c.value) if c.column == EPSILON else c for c in constraints]


def recommend(table: pd.DataFrame, constraints: list[Constraint]) -> pd.DataFrame:
    """Per candidate: whether it meets every constraint, which it misses, what each was tested on and which of
    its threats were not measured; the best first.

    Columns: candidate, meets, missed, tested, not_measured, auroc (the
    conservative end where constraints used it). Candidates that meet all
    constraints come first, by AUROC.
    """
    constraints = resolve_units(table, constraints)
    rows = []
    for row in table.to_dict(orient="records"):
        missed, tested = [], []
        for c in constraints:
            value, how = c.tested(row)
            if how:
                tested.append(f"{c.column} {_shown(value)} ({how})")
            if not c.met(row):
                missed.append(f"{c} (is {_shown(value)}{', ' + how if how else ''})")
        gaps = [threat for column, threat in THREAT_COLUMNS.items() if column in row
                and (_number(row[column]) is None or math.isnan(_number(row[column])))]
        rows.append({"candidate": row["candidate"], "meets": not missed, "missed": "; ".join(missed),
                     "tested": "; ".join(tested), "not_measured": ", ".join(gaps), "auroc": row.get("auroc", math.nan)})
    frame = pd.DataFrame(rows, columns=["candidate", "meets", "missed", "tested", "not_measured", "auroc"])
    return frame.sort_values(["meets", "auroc"], ascending=[False, False], kind="stable").reset_index(drop=True)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _shown(value) -> str:
    value = _number(value)
    return "not measured" if value is None or math.isnan(value) else "∞" if math.isinf(value) else f"{value:.3g}"
