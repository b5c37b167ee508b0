"""A tamper-evident audit log: append-only JSON Lines, each entry hash-chained to the previous one.

Every line is one entry::

    {"seq": 3, "time": "...", "kind": "round", "data": {...}, "prev": "<hash of entry 2>",
     "hash": "<sha256 of this entry without hash and sig>", "sig": {"alg": ..., "key_id": ..., "value": ...}}

The hash covers ``seq``, ``time``, ``kind``, ``data`` and ``prev`` in canonical
JSON (sorted keys, no spaces), so editing any field, removing, reordering or
inserting an entry breaks the chain at a place ``verify`` names. A key makes
the chain unforgeable too (without one, whoever rewrites an entry can recompute
every later hash): an HMAC-SHA256 secret (``bytes``) or an Ed25519 private key
(``cryptography``), verified with the secret or the public key.

Crash safety: each entry is one ``write`` of a whole line, flushed and fsynced
before the run goes on; a run killed mid-write leaves at most one torn last
line, which ``verify`` reports and ignores: the log stays valid up to its last
complete entry. A log without its closing ``end`` entry is reported as
incomplete: the run was interrupted, or its tail was cut (a chain cannot tell
these apart; compare ``head`` with the one the run reported to be sure).
"""

import hashlib
import hmac
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
SIGNED_FIELDS = ("seq", "time", "kind", "data", "prev")

AuditKey = bytes | Ed25519PrivateKey | Ed25519PublicKey


def plain(value):
    """``value`` as JSON-ready plain data: numpy scalars and arrays, non-finite floats as strings."""
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
    return repr(value)


def canonical(value) -> bytes:
    """Canonical JSON bytes (sorted keys, no whitespace): what hashes and signatures cover."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def digest(value) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def check_key(field_name: str, key) -> None:
    if key is not None and not isinstance(key, (bytes, Ed25519PrivateKey, Ed25519PublicKey)):
        raise ValueError(f"{field_name}: expected bytes (an HMAC secret) or an Ed25519 key from "
                         f"cryptography, got {type(key).__name__}")
    if isinstance(key, bytes) and len(key) < 16:
        raise ValueError(f"{field_name}: an HMAC secret needs at least 16 bytes, got {len(key)}")


def _key_id(key: AuditKey) -> str:
    if isinstance(key, bytes):
        material = b"hmac:" + hashlib.sha256(key).digest()
    else:
        public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
        material = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(material).hexdigest()[:16]


def _sign(key: AuditKey, entry_hash: str) -> dict:
    if isinstance(key, bytes):
        value = hmac.new(key, entry_hash.encode(), hashlib.sha256).hexdigest()
        return {"alg": "hmac-sha256", "key_id": _key_id(key), "value": value}
    if isinstance(key, Ed25519PublicKey):
        raise ValueError("audit_key: signing needs the Ed25519 private key (the public key only verifies)")
    return {"alg": "ed25519", "key_id": _key_id(key), "value": key.sign(entry_hash.encode()).hex()}


def _signature_ok(key: AuditKey, entry_hash: str, sig) -> bool:
    if not isinstance(sig, dict):
        return False
    if isinstance(key, bytes):
        expected = hmac.new(key, entry_hash.encode(), hashlib.sha256).hexdigest()
        return sig.get("alg") == "hmac-sha256" and hmac.compare_digest(expected, str(sig.get("value", "")))
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    try:
        public.verify(bytes.fromhex(str(sig.get("value", ""))), entry_hash.encode())
    except (InvalidSignature, ValueError):
        return False
    return sig.get("alg") == "ed25519"


def load_key(path: str | os.PathLike) -> AuditKey:
    """A key file: a PEM Ed25519 key (private signs and verifies, public verifies), else an HMAC secret."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"key: cannot read {str(path)!r} ({error.strerror})") from None
    if b"-----BEGIN" in raw:
        try:
            key = (serialization.load_pem_public_key(raw) if b"PUBLIC KEY" in raw
                   else serialization.load_pem_private_key(raw, password=None))
        except (ValueError, TypeError) as error:
            raise ValueError(f"key: {str(path)!r} is not a readable PEM key ({error})") from None
        if not isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
            raise ValueError(f"key: {str(path)!r} holds a {type(key).__name__}; expected an Ed25519 key")
        return key
    secret = raw.strip()
    check_key("key", secret)
    return secret


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
        if self.closed:
            raise RuntimeError("the audit log is closed")
        entry = {"seq": self.seq, "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                 "kind": kind, "data": plain(data), "prev": self.head}
        entry["hash"] = digest(entry)
        if self.key is not None:
            entry["sig"] = _sign(self.key, entry["hash"])
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
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


@dataclass
class Verification:
    """What ``verify`` found: ``ok`` (no tampering), ``complete`` (closed by an ``end`` entry)."""

    path: str
    entries: int
    ok: bool
    complete: bool
    head: str
    signed: str
    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.ok:
            return "TAMPERED"
        return "valid" if self.complete else "valid but incomplete"

    def summary(self) -> str:
        lines = [f"{self.path}: {self.status} ({self.entries} entries, {self.signed}, head {self.head[:16]})"]
        lines += [f"  line {p['line']}: {p['problem']}: {p['detail']}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return self.ok


def verify(path: str | os.PathLike, key: AuditKey | None = None, expected_head: str | None = None) -> Verification:
    """Check an audit log's chain (and signatures, given the key); locate every problem by line.

    Problems found: ``edited`` (an entry's content does not match its hash),
    ``bad signature`` / ``unsigned``, ``removed`` (sequence numbers missing),
    ``reordered`` (an entry earlier in the sequence comes later in the file),
    ``duplicated``, ``broken link`` (an entry does not chain to the one before:
    that one was rewritten with a recomputed hash, or this one was inserted),
    ``appended after end`` and ``not an entry`` (a line that is not a log entry).
    """
    check_key("key", key)
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"log: cannot read {str(path)!r} ({error.strerror})") from None
    problems: list[dict] = []
    notes: list[str] = []

    def problem(line: int, kind: str, detail: str, seq=None) -> None:
        problems.append({"line": line, "seq": seq, "problem": kind, "detail": detail})

    lines = raw.split(b"\n")
    torn = lines.pop() if lines else b""
    if torn.strip():
        try:
            json.loads(torn)
            lines.append(torn)  # a complete entry that merely lacks its newline
            notes.append("the last line has no newline")
        except ValueError:
            notes.append(f"line {len(lines) + 1} is an incomplete entry (a write was interrupted); ignored")

    entries: list[tuple[int, dict]] = []
    for number, text in enumerate(lines, start=1):
        try:
            entry = json.loads(text)
            if not isinstance(entry, dict) or not all(k in entry for k in (*SIGNED_FIELDS, "hash")):
                raise ValueError
        except ValueError:
            problem(number, "not an entry", "not a JSON audit entry")
            continue
        entries.append((number, entry))

    signed = {("hmac-sha256" if isinstance(e.get("sig"), dict) and e["sig"].get("alg") == "hmac-sha256"
               else "ed25519") for _, e in entries if "sig" in e}
    for number, entry in entries:
        seq = entry["seq"]
        if digest({k: entry[k] for k in SIGNED_FIELDS}) != entry["hash"]:
            problem(number, "edited", f"entry {seq} ({entry['kind']}) does not match its hash", seq)
        if key is not None:
            if "sig" not in entry:
                problem(number, "unsigned", f"entry {seq} carries no signature", seq)
            elif not _signature_ok(key, entry["hash"], entry["sig"]):
                problem(number, "bad signature", f"entry {seq}'s signature does not verify with this key", seq)

    seqs = [e["seq"] for _, e in entries]
    valid_seqs = [s for s in seqs if isinstance(s, int) and not isinstance(s, bool)]
    if len(valid_seqs) != len(seqs):
        for number, entry in entries:
            if entry["seq"] not in valid_seqs:
                problem(number, "edited", f"sequence number {entry['seq']!r} is not an integer")
    seen: dict[int, int] = {}
    for number, entry in entries:
        seq = entry["seq"]
        if seq in seen:
            problem(number, "duplicated", f"entry {seq} also appears on line {seen[seq]}", seq)
        else:
            seen.setdefault(seq, number)
    if valid_seqs:
        for missing in sorted(set(range(max(valid_seqs) + 1)) - set(valid_seqs)):
            before = [n for n, e in entries if e["seq"] == missing - 1]
            where = f"after line {before[0]}" if before else "at the start"
            problem(before[0] + 1 if before else 1, "removed", f"entry {missing} is missing ({where})", missing)
    highest = -1
    for number, entry in entries:
        seq = entry["seq"]
        if isinstance(seq, int) and seq < highest:
            problem(number, "reordered", f"entry {seq} comes after entry {highest} in the file", seq)
        highest = max(highest, seq) if isinstance(seq, int) else highest

    by_seq = {e["seq"]: e for _, e in entries if isinstance(e["seq"], int)}
    for number, entry in entries:
        seq = entry["seq"]
        if not isinstance(seq, int):
            continue
        expected = GENESIS if seq == 0 else by_seq.get(seq - 1, {}).get("hash")
        if expected is not None and entry["prev"] != expected:
            detail = (f"entry {seq} does not chain to entry {seq - 1}: one of them was rewritten "
                      f"(hash recomputed) or entry {seq} was inserted out of chain") if seq else \
                "entry 0 does not start the chain"
            problem(number, "broken link", detail, seq)

    ends = [(n, e) for n, e in entries if e["kind"] == "end"]
    if ends:
        end_line = ends[0][0]
        for number, entry in entries:
            if number > end_line:
                problem(number, "appended after end", f"entry {entry['seq']} ({entry['kind']}) follows the "
                        "closing entry", entry["seq"])
    else:
        notes.append("no closing entry: the run was interrupted, or the log's tail was removed")
    if entries and entries[0][1]["kind"] != "start":
        notes.append("the first entry is not the run's start entry")

    ordered = [e for _, e in sorted(entries, key=lambda item: item[1]["seq"] if isinstance(item[1]["seq"], int)
                                    else -1)]
    head = ordered[-1]["hash"] if ordered else GENESIS
    if expected_head is not None and head != expected_head:
        problem(len(lines), "removed" if expected_head in {e["hash"] for e in ordered} else "appended after end",
                f"the log ends at {head[:16]}, expected head {expected_head[:16]}")
    if signed and key is None:
        notes.append(f"entries are signed ({', '.join(sorted(signed))}); signatures not checked without the key")
    problems.sort(key=lambda p: (p["line"], p["problem"]))
    return Verification(
        path=str(path), entries=len(entries), ok=not problems, complete=bool(ends), head=head,
        signed=("signatures verified" if key is not None and not any(p["problem"] in ("unsigned", "bad signature")
                                                                      for p in problems)
                else f"signed: {', '.join(sorted(signed))}" if signed else "unsigned"),
        problems=problems, notes=notes,
    )


def read(path: str | os.PathLike) -> list[dict]:
    """The complete entries of a log, in file order (a torn last line is skipped)."""
    entries = []
    for text in Path(path).read_bytes().split(b"\n"):
        if text.strip():
            try:
                entries.append(json.loads(text))
            except ValueError:
                continue
    return entries
