"""What a results folder's audit log says about one run: the reader the report is built from."""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedsim.governance.audit import AuditKey, Verification, read, verify


@dataclass
class Run:
    """What a results folder's audit log says about one run."""

    folder: Path
    verification: Verification
    start: dict
    rounds: list[dict]
    policy: list[dict]
    result: dict | None
    end: dict | None

    @classmethod
    def load(cls, folder: str | os.PathLike, key: AuditKey | None = None) -> "Run":
        folder = Path(folder)
        log = folder / "audit.jsonl" if folder.is_dir() else folder
        if not log.exists():
            raise ValueError(f"results: no audit log at {str(log)!r} (a results folder holds audit.jsonl)")
        verification = verify(log, key=key)
        entries = read(log)

        def first(kind):
            return next((e["data"] for e in entries if e.get("kind") == kind), None)

        if first("start") is None:
            raise ValueError(f"results: {str(log)!r} has no start entry")
        return cls(log.parent, verification, first("start"),
                   [e["data"] for e in entries if e.get("kind") == "round"],
                   [e["data"] for e in entries if e.get("kind") == "policy"], first("result"), first("end"))

    @property
    def metrics(self) -> pd.DataFrame:
        if not self.result:
            return pd.DataFrame(columns=["round", "scope", "metric", "value"])
        return pd.DataFrame(self.result["metrics"])

    def table(self, name: str) -> pd.DataFrame:
        rows = (self.result or {}).get("tables", {}).get(name, [])
        return pd.DataFrame(rows)

    @property
    def participation(self) -> pd.DataFrame:
        return pd.DataFrame((self.result or {}).get("participation", []),
                            columns=["round", "hospital", "event", "reason"])

    def final(self, metric: str = "auroc", scope: str = "global") -> float:
        m = self.metrics
        rows = m[(m.metric == metric) & (m.scope == scope)] if not m.empty else m
        if rows.empty:
            return math.nan
        return float(pd.to_numeric(rows.loc[rows["round"].idxmax(), "value"], errors="coerce"))

    @property
    def components(self) -> list[dict]:
        """Every component in play, as it described itself in the start entry."""
        return list(self.start.get("in_play", {}).get("components", []))

    def of_family(self, family: str) -> list[dict]:
        return [c for c in self.components if c.get("family") == family]

    def posing(self, threat: str) -> list[dict]:
        """Components and custom pieces that pose ``threat`` (attacks run), with their hospitals where known."""
        drawn = self.table("adversaries")
        found = []
        for c in self.components:
            if c.get("role") == "threat" and threat in c.get("threats", []):
                row = {"name": c["name"], "title": c.get("title", c["name"]), "family": c["family"],
                       "label": c.get("label")}
                hospitals = c.get("settings", {}).get("hospitals")
                if not drawn.empty and {"adversary", "hospital"} <= set(drawn):
                    mine = drawn[drawn.adversary == c["name"]].hospital.astype(str)
                    if len(mine):
                        hospitals = sorted(mine)
                if isinstance(hospitals, list):
                    row["hospitals"] = hospitals
                found.append(row)
        for piece in self.start.get("in_play", {}).get("custom", []):
            if piece.get("threat") == threat:
                found.append({"name": piece["name"], "title": piece["name"], "family": "custom",
                              **({"hospitals": piece["hospitals"]} if "hospitals" in piece else {})})
        return found

    def mitigating(self, threat: str) -> list[dict]:
        """Components in play that address ``threat`` (only those whose settings make them act)."""
        return [c for c in self.components if c.get("role") == "mitigation" and threat in c.get("threats", [])]

    @property
    def aggregation(self) -> dict:
        """The aggregation rule: its name and the threats it addresses (from the start entry)."""
        return self.start.get("aggregation", {"name": self.rule, "threats": []})

    @property
    def rule(self) -> str:
        chain = self.start.get("strategy", [])
        return chain[-1]["class"] if chain else "?"
