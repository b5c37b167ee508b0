"""The run's one record of what was decided about each hospital, by whom and why.

Every part of a run that decides something about a hospital or its reply
reports it here, through ``Decisions.record`` (an ``ObservingGrid`` hands it
to eligibility checks and screens; a ``StrategyWrapper`` or a robust rule
reports through ``Reporting.report``):

- ``excluded``: may not take part in the round (a spent privacy budget, a policy);
- ``failed``: its ClientApp failed or its reply never came;
- ``rejected``: its reply is left out of aggregation (the engine's reply
  check, a screen, a strategy wrapper), with the reason;
- ``not selected``: the aggregation rule left its reply out (Krum's selection);
- ``aggregated``: its reply reached the aggregation rule (``value``: what the
  rule did to it where it says, e.g. the share of coordinates trimmed);
- ``clipped`` (``value``: the update's norm before) and ``noised`` (hospital
  ``*``: the aggregate, ``value``: the noise's standard deviation): what a
  defense or privacy mechanism did to a reply it kept;
- ``not evaluated``, ``stopped``, ``aborted``: about evaluation and the run.

The participation table (``Result.participation``: every decision that kept
a hospital's reply out, and the run's own events), the decision table
(``Result.tables["decisions"]``), the audit log's round entries and the
report are all read from this one record, so they cannot disagree.
"""

import math
from collections.abc import Iterable

import pandas as pd
from flwr.app import Message

from fedsim.tables import DECISIONS, PARTICIPATION

KEPT_OUT = ("excluded", "failed", "rejected", "not selected")
RUN_EVENTS = ("not evaluated", "stopped", "aborted")
OUTCOMES = (*KEPT_OUT, "aggregated", "clipped", "noised", *RUN_EVENTS)


class Decisions:
    """Every decision of one run, in the order made (see the module docstring)."""

    def __init__(self):
        self.rows: list[dict] = []
        self._seen: set[tuple] = set()

    def record(self, server_round: int, hospital: str, decision: str, reason: str = "", by: str = "",
               value: float = math.nan) -> None:
        """Add a decision (once: strategies ask for node ids several times a round)."""
        if decision not in OUTCOMES:
            raise ValueError(f"decision: unknown {decision!r}; allowed: {list(OUTCOMES)}")
        key = (int(server_round), hospital, decision, by)
        if key in self._seen:  # said again: keep what the later report adds (a rule's reason and value)
            row = next(r for r in self.rows if (r["round"], r["hospital"], r["decision"], r["by"]) == key)
            row["reason"] = reason or row["reason"]
            row["value"] = row["value"] if math.isnan(value) else float(value)
            return
        self._seen.add(key)
        self.rows.append({"round": int(server_round), "hospital": hospital, "decision": decision, "by": by,
                          "reason": reason, "value": float(value)})

    def of_round(self, server_round: int) -> list[dict]:
        """The decisions about one round, in the order made."""
        return [r for r in self.rows if r["round"] == server_round]

    def participation(self) -> list[dict]:
        """The participation rows: who was kept out of a round and why, and the run's own events."""
        return [{"round": r["round"], "hospital": r["hospital"], "event": r["decision"], "reason": r["reason"]}
                for r in self.rows if r["decision"] in KEPT_OUT + RUN_EVENTS]

    def table(self) -> pd.DataFrame:
        """Every decision, one row each (``DECISIONS``)."""
        return DECISIONS.frame(self.rows)

    def participation_table(self) -> pd.DataFrame:
        """``participation`` as a table (``PARTICIPATION``)."""
        return PARTICIPATION.frame(self.participation())


def round_summary(rows: Iterable[dict]) -> dict:
    """One round's decisions as the audit log's round entry holds them.

    ``rejected`` / ``not_selected``: hospital -> reason; ``aggregated``: the
    hospitals whose reply the rule used (rejected or not selected ones left
    out); ``by``: who aggregated; ``values``: what the rule reported per
    hospital (e.g. the share of coordinates trimmed).
    """
    rows = list(rows)
    rejected = {r["hospital"]: r["reason"] for r in rows if r["decision"] == "rejected"}
    not_selected = {r["hospital"]: r["reason"] for r in rows if r["decision"] == "not selected"}
    reached = [r for r in rows if r["decision"] == "aggregated"]
    out = set(rejected) | set(not_selected)
    return {"rejected": rejected, "not_selected": not_selected,
            "aggregated": sorted({r["hospital"] for r in reached} - out),
            "rule": next((r["by"] for r in reached), ""),
            "values": {r["hospital"]: r["value"] for r in reached if not math.isnan(r["value"])}}


class Reporting:
    """What a strategy (a wrapper, a robust rule) needs to report its decisions about replies.

    Flower hands every strategy the run's Grid in ``configure_train``; call
    ``remember_grid(grid)`` there. ``report(server_round, reply, decision,
    reason, value)`` then records the decision in the run's ``Decisions``
    (through an ``ObservingGrid``; on a bare Grid it is only kept in
    ``reported``).
    """

    grid = None
    reported: list[dict]

    def remember_grid(self, grid) -> None:
        """Keep the Grid the run handed the strategy (its ``decisions`` take the reports)."""
        self.grid = grid
        if not hasattr(self, "reported"):
            self.reported = []

    def hospital(self, reply: Message) -> str:
        """The id of the hospital that sent ``reply``."""
        hospital_of = getattr(self.grid, "hospital_of", None)
        node_id = reply.metadata.src_node_id
        return hospital_of(node_id) if hospital_of else str(node_id)

    def report(self, server_round: int, reply: Message, decision: str, reason: str = "",
               value: float = math.nan, by: str | None = None) -> None:
        """Record ``decision`` about ``reply`` (see ``fedsim.engine.decisions``), by this strategy (or ``by``)."""
        row = {"round": server_round, "hospital": self.hospital(reply), "decision": decision, "reason": reason,
               "by": by or type(self).__name__, "value": value}
        if not hasattr(self, "reported"):
            self.reported = []
        self.reported.append(row)
        decisions = getattr(self.grid, "decisions", None)
        if decisions is not None:
            decisions.record(server_round, row["hospital"], decision, reason, row["by"], value)
