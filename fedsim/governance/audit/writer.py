"""The audit log's writer: one hash-chained, fsynced line per entry."""

import os
from datetime import UTC, datetime
from pathlib import Path

from fedsim.governance.audit.entries import GENESIS, MAX_DEPTH, TEXT, depth, line_of, plain_hash
from fedsim.governance.audit.keys import AuditKey, check_key, sign
from fedsim.plain import plain
from fedsim.validation import Mapping, check


class AuditWriter:
    """Appends hash-chained entries to a JSON Lines file, one fsynced line each."""

    def __init__(self, path: str | os.PathLike, key: AuditKey | None = None):
        check_key("audit_key", key)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            raise ValueError(f"out: {str(self.path)!r} already holds an audit log; give a fresh results folder")
        self.key = key
        self.seq = 0
        self.head = GENESIS
        self.closed = False

    def append(self, kind: str, data: dict) -> dict:
        """Write one entry (``data`` as plain JSON) chained to the last one; return it."""
        if self.closed:
            raise RuntimeError("the audit log is closed")
        check("kind", kind, TEXT)
        data = plain(check("data", data, Mapping()))
        if depth(data) > MAX_DEPTH:
            raise ValueError(f"data: nests deeper than {MAX_DEPTH} levels")
        entry = {"seq": self.seq, "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                 "kind": kind, "data": data, "prev": self.head}
        entry["hash"] = plain_hash(entry)
        if self.key is not None:
            entry["sig"] = sign(self.key, entry["hash"])
        line = line_of(entry) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.seq += 1
        self.head = entry["hash"]
        if kind == "end":
            self.closed = True
        return entry
