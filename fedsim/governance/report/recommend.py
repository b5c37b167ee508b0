"""Constraints a data team states (``"epsilon<=8, auroc>=0.80"``) and which candidates of a decision table meet them.

A constraint is ``column op number`` with ``op`` one of ``<= >= < > ==``;
columns are those of the decision table (``fedsim.studies.assess``). A value
that was not measured (NaN) meets no constraint: "not measured" is never
read as "safe". Without differential privacy a candidate's epsilon is
infinite, so it meets no ``epsilon<=`` constraint.
"""

import math
import operator
import re
from dataclasses import dataclass

import pandas as pd

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf"
CONSTRAINT = re.compile(rf"^\s*([A-Za-z_][\w@%.]*)\s*(<=|>=|==|<|>)\s*({NUMBER})\s*$")


@dataclass(frozen=True)
class Constraint:
    """``column op value``, e.g. epsilon <= 8."""

    column: str
    op: str
    value: float

    def met(self, value) -> bool:
        """Whether ``value`` meets it (a missing or NaN value never does)."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
        return not math.isnan(value) and OPERATORS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


def parse(text: str | None, columns) -> list[Constraint]:
    """``"epsilon<=8, auroc>=0.80"`` as constraints on ``columns``; one-line ValueError naming ``require``."""
    if text is None or not str(text).strip():
        return []
    if not isinstance(text, str):
        raise ValueError(f"require: expected text such as 'epsilon<=8, auroc>=0.80', got {type(text).__name__}")
    found = []
    for part in text.split(","):
        match = CONSTRAINT.match(part)
        if match is None:
            raise ValueError(f"require: cannot read {part.strip()!r}; expected COLUMN OP NUMBER with OP one of "
                             f"{', '.join(OPERATORS)}, e.g. 'epsilon<=8, auroc>=0.80'")
        column, op, value = match.groups()
        if column not in columns:
            raise ValueError(f"require: unknown column {column!r}; allowed: {', '.join(columns)}")
        found.append(Constraint(column, op, float(value)))
    return found


def recommend(table: pd.DataFrame, constraints: list[Constraint]) -> pd.DataFrame:
    """Per candidate: whether it meets every constraint and which it misses; the best first.

    Columns: candidate, meets, missed (text), auroc. Candidates that meet all
    constraints come first, by AUROC.
    """
    rows = []
    for row in table.to_dict(orient="records"):
        missed = [f"{c} (is {_shown(row.get(c.column))})" for c in constraints if not c.met(row.get(c.column))]
        rows.append({"candidate": row["candidate"], "meets": not missed, "missed": "; ".join(missed),
                     "auroc": row.get("auroc", math.nan)})
    frame = pd.DataFrame(rows, columns=["candidate", "meets", "missed", "auroc"])
    return frame.sort_values(["meets", "auroc"], ascending=[False, False], kind="stable").reset_index(drop=True)


def _shown(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "not measured"
    return "not measured" if math.isnan(value) else "∞" if math.isinf(value) else f"{value:.3g}"
