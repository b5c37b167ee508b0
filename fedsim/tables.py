"""Result tables with declared schemas: every tidy table's columns, named next to its producer.

A producer declares ``SCHEMA = Schema("name", (columns...))`` and builds its
frames with ``SCHEMA.frame(rows)``; ``Plan.add_report`` checks that what a
report returns has exactly the declared columns, so tables of many runs
concatenate and plots can rely on them.
"""

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Schema:
    """A result table: its name in ``Result.tables`` and its columns, in order."""

    name: str
    columns: tuple[str, ...]

    def frame(self, rows=()) -> pd.DataFrame:
        """``rows`` (dicts or a mapping of columns) as a DataFrame with exactly these columns."""
        return pd.DataFrame(rows, columns=list(self.columns))

    def check(self, frame, producer: str) -> pd.DataFrame:
        """``frame`` if it has exactly these columns, else a clear error naming ``producer``."""
        if not isinstance(frame, pd.DataFrame) or tuple(frame.columns) != self.columns:
            got = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
            raise RuntimeError(f"table {self.name!r}: {producer} returned columns {got}, "
                               f"declared {list(self.columns)}")
        return frame


PARTICIPATION = Schema("participation", ("round", "hospital", "event", "reason"))
DECISIONS = Schema("decisions", ("round", "hospital", "decision", "by", "reason", "value"))
METRICS = Schema("metrics", ("round", "scope", "metric", "value"))
