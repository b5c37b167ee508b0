"""What a results folder's audit log says about one run: the reader the report is built from.

The report reads only what the shapes below declare, and ``conform`` leaves out
of each entry whatever does not fit them (a field of another type, a list item
that is not a record...): a log that fedsim did not write, or wrote
differently, renders what it holds, with "not available" for the rest.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedsim.governance.audit import AuditKey, Verification, read, verify

MISSING = object()  # what ``conform`` returns for a value that does not fit its shape

COMPONENT = {"name": str, "title": str, "family": str, "role": str, "threats": [str], "settings": {str: object},
             "label": str, "spends_epsilon": bool, "unit": str, "trust_model": str}
DATA = {"source": str, "name": str, "scenario": str, "title": str, "n_hospitals": int, "n_patients": int,
        "n_train": int, "n_test": int, "target": str, "site": str, "seed": int, "test_size": float,
        "knobs": {str: float}, "columns": [str], "events_train": int, "images": bool, "preprocessing": str}
SCOPE = {"n_test": int, "events": int, "base_rate": float, "event_rate_low": float, "event_rate_high": float,
         "auroc": float, "auroc_low": float, "auroc_high": float, "auprc": float, "mean_risk": float, "brier": float,
         "calibration_slope": float, "calibration_intercept": float}
EVALUATION = {"scopes": {str: SCOPE}, "reliability": [{"bin": int, "n": int, "mean_risk": float, "observed": float}]}
AUDIT_ROW = {"hospital": str, "technique": str, "level": str, "view": str, "method": str, "canaries": int,
             "guesses": int, "correct": int, "epsilon_audited": float, "confidence": float, "epsilon_claimed": float,
             "delta": float, "epsilon_one_run": float, "epsilon_fdp": float, "exceeded": bool}
AUDIT = {"rows": [AUDIT_ROW], "claim_refuted": bool, "statement": str}
START = {
    "label": str, "config": {str: object}, "config_hash": str, "versions": {str: str},
    "data_fingerprints": {str: {"n_train": int}},
    "policies": [{"hospital": str, "max_epsilon": float, "min_records": int, "evaluate": bool,
                  "share_metrics": bool}],
    "strategy": [{"class": str, "clipping_norm": float, "min_train_nodes": int}],
    "aggregation": {"name": str, "threats": [str]},
    "client_training": {str: object},
    "in_play": {"components": [COMPONENT], "custom": [{"name": str, "threat": str, "hospitals": [str]}]},
    "data": DATA, "kind": str, "owner": str, "require": str, "threats": [str], "seeds": [int],
    "candidates": {str: [COMPONENT]},
}
CANDIDATE = {"label": str, "row": {str: object}, "components": [COMPONENT],
             "hospitals": [{"hospital": str, "auroc": float, "reference_auroc": float, "change": float}],
             "privacy": [{str: object}], "audit": [AUDIT_ROW], "attacks": [{str: object}],
             "skipped": [{"battery": str, "reason": str}], "evaluation": EVALUATION,
             "runs": [{"battery": str, "seed": int, "audit_log": str, "head": str}]}
ROUND = {"round": int, "sampled": [str], "dropped": {str: object}, "rejected": {str: object},
         "excluded": {str: object}, "update_norms": {str: float},
         "aggregation": {"rule": str, "aggregated": [str], "not_selected": {str: object}, "values": {str: float},
                         "unexplained": [str]}}
POLICY = {"round": int, "hospital": str, "policy": str, "action": str, "detail": str}
RESULT = {"metrics": {str: [object]}, "tables": {str: [{str: object}]}, "evaluation": EVALUATION,
          "decision": [{str: object}], "columns": [str],
          "model": {"name": str, "class": str, "parameters": int, "layers": [object], "target": str,
                    "n_features": int, "weights_sha256": str}}
METRIC_COLUMNS = ["round", "scope", "metric", "value"]


def conform(value, shape):
    """``value`` without what does not fit ``shape``; ``MISSING`` when nothing does.

    A shape is a type (``float`` also takes integers and the "nan", "inf" and
    "-inf" that the log writes for non-finite floats; ``object`` takes
    anything), ``[item]`` (a list: the items that fit), ``{str: item}`` (a
    mapping: the values that fit) or ``{field: shape, ...}`` (a record: the
    fields that fit).
    """
    if isinstance(shape, list):
        if not isinstance(value, list):
            return MISSING
        return [v for v in (conform(x, shape[0]) for x in value) if v is not MISSING]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return MISSING
        pairs = (((k, conform(v, shape[str])) for k, v in value.items()) if str in shape
                 else ((k, conform(value[k], s)) for k, s in shape.items() if k in value))
        return {k: v for k, v in pairs if v is not MISSING}
    if shape is float and isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if shape is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and shape not in (bool, object):
        return MISSING
    return value if isinstance(value, shape) else MISSING


def title(component: dict) -> str:
    """A component's title, else its registry name."""
    return component.get("title") or component.get("name") or "?"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


@dataclass
class Run:
    """What a results folder's audit log says about one run (each entry cut to the shape the report reads)."""

    folder: Path
    verification: Verification
    start: dict
    rounds: list[dict]
    policy: list[dict]
    result: dict | None
    started: str = ""  # when the run began (the start entry's time, UTC)
    ended: dict | None = None  # the closing entry's data (status), None for an incomplete log
    audit: dict | None = None  # the empirical audit's entry
    candidates: tuple = ()  # an assessment's candidate entries

    @classmethod
    def load(cls, folder: str | os.PathLike, key: AuditKey | None = None, field: str = "results",
             allow_tampered: bool = False) -> "Run":
        """Read and verify the log of a results folder (or a log file); ValueError if it has none, has no start
        entry, or fails verification (unless ``allow_tampered``). ``field`` names the argument in errors."""
        folder = Path(folder)
        log = folder / "audit.jsonl" if folder.is_dir() else folder
        if not log.exists():
            raise ValueError(f"{field}: no audit log at {str(log)!r} (a results folder holds audit.jsonl)")
        verification = verify(log, key=key)
        if not verification.ok and not allow_tampered:
            first = verification.problems[0] if verification.problems else {"line": "?", "problem": "?"}
            raise ValueError(f"{field}: the audit log {str(log)!r} is TAMPERED ({verification.tally}, "
                             f"first: line {first['line']}: {first['problem']}): refusing to report; pass "
                             "allow_tampered=True (fedsim report --allow-tampered) to render it with a warning banner")
        entries = read(log)

        def data(kind: str, shape: dict) -> list[dict]:
            return [conform(e["data"], shape) for e in entries if e["kind"] == kind]

        starts, results = data("start", START), data("result", RESULT)
        if not starts:
            raise ValueError(f"{field}: {str(log)!r} has no start entry")
        started = next((e.get("time") for e in entries if e["kind"] == "start"), "")
        ends, audits = data("end", {"status": str, "rounds": int}), data("audit", AUDIT)
        return cls(log.parent, verification, starts[0], [r for r in data("round", ROUND) if "round" in r],
                   data("policy", POLICY), results[0] if results else None,
                   started if isinstance(started, str) else "", ends[-1] if ends else None,
                   audits[0] if audits else None, tuple(c for c in data("candidate", CANDIDATE) if "label" in c))

    @property
    def is_assessment(self) -> bool:
        """Whether the log is an assessment's (``fedsim assess``) rather than one run's."""
        return self.start.get("kind") == "assessment"

    @property
    def evaluation(self) -> dict:
        """The final model's evaluation per released scope (test size, events, intervals, calibration)."""
        return (self.result or {}).get("evaluation", {})

    @property
    def metrics(self) -> pd.DataFrame:
        """Released metrics (round, scope, metric, value); empty when the log holds none in that form."""
        columns = (self.result or {}).get("metrics", {})
        if not all(c in columns for c in METRIC_COLUMNS) or len({len(columns[c]) for c in METRIC_COLUMNS}) != 1:
            return pd.DataFrame({c: pd.Series(dtype=float if c in ("round", "value") else str)
                                 for c in METRIC_COLUMNS})
        frame = pd.DataFrame({c: columns[c] for c in METRIC_COLUMNS})
        for c in ("round", "value"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
        for c in ("scope", "metric"):
            frame[c] = frame[c].map(_text)
        return frame[frame["round"].map(math.isfinite)]

    def table(self, name: str, numbers: tuple[str, ...] = (), texts: tuple[str, ...] = ()) -> pd.DataFrame:
        """A result table, with the columns ``numbers`` as floats (NaN where missing) and ``texts`` as strings."""
        frame = pd.DataFrame((self.result or {}).get("tables", {}).get(name, []))
        for c in numbers:
            frame[c] = pd.to_numeric(frame[c], errors="coerce") if c in frame else math.nan
        for c in texts:
            frame[c] = frame[c].map(_text) if c in frame else ""
        return frame

    def final(self, metric: str = "auroc", scope: str = "global") -> float:
        """The metric's value after the last round; NaN when the log does not hold it."""
        m = self.metrics
        rows = m[(m.metric == metric) & (m.scope == scope)]
        if rows.empty:
            return math.nan
        return float(rows.loc[rows["round"].idxmax(), "value"])

    @property
    def components(self) -> list[dict]:
        """Every component in play, as it described itself in the start entry."""
        return list(self.start.get("in_play", {}).get("components", []))

    def of_family(self, family: str) -> list[dict]:
        """The components in play of ``family``."""
        return [c for c in self.components if c.get("family") == family]

    def posing(self, threat: str) -> list[dict]:
        """Components and custom pieces that pose ``threat`` (attacks run), with their hospitals where known."""
        drawn = self.table("adversaries", texts=("adversary", "hospital"))
        found = []
        for c in self.components:
            if c.get("role") == "threat" and threat in c.get("threats", []):
                row = {"name": c.get("name", "?"), "title": title(c), "family": c.get("family", "?"),
                       "label": c.get("label")}
                hospitals = c.get("settings", {}).get("hospitals")
                mine = drawn[drawn.adversary == c.get("name")].hospital
                if len(mine):
                    hospitals = sorted(mine)
                if isinstance(hospitals, list):
                    row["hospitals"] = [str(h) for h in hospitals]
                found.append(row)
        for piece in self.start.get("in_play", {}).get("custom", []):
            if piece.get("threat") == threat:
                found.append({"name": piece.get("name", "?"), "title": piece.get("name", "?"), "family": "custom",
                              **({"hospitals": piece["hospitals"]} if "hospitals" in piece else {})})
        return found

    def mitigating(self, threat: str) -> list[dict]:
        """Components in play that address ``threat`` (only those whose settings make them act)."""
        return [c for c in self.components if c.get("role") == "mitigation" and threat in c.get("threats", [])]

    @property
    def aggregation(self) -> dict:
        """The aggregation rule: its name and the threats it addresses (from the start entry)."""
        return {"name": self.rule, "threats": [], **self.start.get("aggregation", {})}

    @property
    def rule(self) -> str:
        """The class name of the innermost strategy."""
        chain = self.start.get("strategy", [])
        return chain[-1].get("class", "?") if chain else "?"
