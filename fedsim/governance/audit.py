"""A tamper-evident audit log: append-only JSON Lines, each entry hash-chained to the previous one.

Every line is one entry::

    {"data": {...}, "hash": "<sha256 of the entry without hash and sig>", "kind": "round",
     "prev": "<hash of entry 2>", "seq": 3, "sig": {"alg": ..., "key_id": ..., "value": ...}, "time": "..."}

An entry holds exactly these fields (``sig`` only in a signed log). The hash
covers the whole entry but ``hash`` and ``sig`` in canonical JSON (sorted keys,
no spaces), so editing any field, removing, reordering or inserting an entry
breaks the chain at a place ``verify`` names. A key makes the chain unforgeable
too (without one, whoever rewrites an entry can recompute every later hash):
an HMAC-SHA256 secret (``bytes``) or an Ed25519 private key (``cryptography``),
verified with the secret or the public key.

What a verified log means is its bytes: ``verify`` accepts a line only if it is
byte for byte what the writer writes for the entry it parses to (strict JSON:
no NaN or Infinity constants, no duplicate keys, valid UTF-8, at most
``MAX_DEPTH`` levels of nesting). A re-serialised line, even one a JSON parser
reads as the same entry, is reported (``reformatted``), so no two readers can
disagree about what a verified log says.

Crash safety: each entry is one ``write`` of a whole line, flushed and fsynced
before the run goes on; a run killed mid-write leaves at most one torn last
line, which ``verify`` notes and ignores: the log stays valid up to its last
complete entry (a torn line after the closing entry is a problem: nothing is
written after it). A log without its closing ``end`` entry is reported as
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

from fedsim.validation import Constraint, Instance, Integer, Mapping, NoneValue, check

GENESIS = "0" * 64
MAX_DEPTH = 64  # levels of lists and objects an entry's data may nest
MAX_PROBLEMS = 1000  # problems ``verify`` lists; it counts the others
OPENING = b'{"data": {'  # how every line the writer writes begins (sorted keys: data comes first)

AuditKey = bytes | Ed25519PrivateKey | Ed25519PublicKey


_LEAVES = (str, int, bool, type(None))


def plain(value):
    """``value`` as JSON-ready plain data: numpy scalars and arrays, non-finite floats as strings."""
    kind = type(value)
    if kind in _LEAVES:  # the common cases first: an entry may hold a million of them
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is list and all(type(v) in _LEAVES for v in value):
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
    return repr(value)


def canonical(value, *, is_plain: bool = False) -> bytes:
    """Canonical JSON bytes (sorted keys, no whitespace): what hashes and signatures cover.

    ``is_plain``: ``value`` is plain data already (``plain`` is not run again).
    """
    return json.dumps(value if is_plain else plain(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def digest(value) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical(value)).hexdigest()


def entry_hash(entry: dict) -> str:
    """The hash an entry must carry: the digest of the whole entry but its ``hash`` and ``sig``."""
    return digest({k: v for k, v in entry.items() if k not in ("hash", "sig")})


def _plain_hash(entry: dict) -> str:
    """``entry_hash`` of an entry that is plain data already (what the writer builds)."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k not in ("hash", "sig")},
                                    is_plain=True)).hexdigest()


def _line(entry: dict) -> str:
    """An entry as the writer writes it (without the newline)."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, allow_nan=False)


def _depth(value) -> int:
    """How many levels of lists and objects nest in ``value`` (iterative: any depth)."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        stack += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
                  if isinstance(v, (dict, list))]
    return deepest


class Signature(Constraint):
    """A signature as the writer writes it: exactly ``alg``, ``key_id`` and ``value``, all strings."""

    def accepts(self, value):
        return (isinstance(value, dict) and sorted(value) == ["alg", "key_id", "value"]
                and all(isinstance(v, str) for v in value.values())), value

    def describe(self) -> str:
        return "a signature {alg, key_id, value} of strings"


class Digest(Constraint):
    """A SHA-256 digest as the writer writes it: 64 lowercase hex digits."""

    def accepts(self, value):
        return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value), value

    def describe(self) -> str:
        return "a SHA-256 digest (64 lowercase hex digits)"


TEXT = Instance(str, what="a string")
ENTRY = {"seq": Integer(min=0), "time": TEXT, "kind": TEXT, "data": Mapping(), "prev": Digest(), "hash": Digest(),
         "sig": Signature()}


def _no_constant(name: str):
    raise ValueError(f"non-standard constant {name}")


def _no_duplicates(pairs: list[tuple]) -> dict:
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r}"[:100])
        seen.add(k)
    return dict(pairs)


def _parse(line: bytes) -> tuple[dict, bool]:
    """The entry a line holds and whether the line is byte for byte the writer's; ValueError if it holds none."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        entry = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("not standard JSON (nested too deeply)") from None
    except ValueError as error:
        raise ValueError(f"not standard JSON ({error})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"a JSON {type(entry).__name__}, not an object")
    missing = [k for k in ENTRY if k not in entry and k != "sig"]
    if missing:
        raise ValueError(f"no {', '.join(missing)} field")
    for name, constraint in ENTRY.items():
        if name in entry:
            check(name, entry[name], constraint)
    if _depth(entry["data"]) > MAX_DEPTH:
        raise ValueError(f"data: nests deeper than {MAX_DEPTH} levels")
    return entry, _line(entry).encode() == line  # encoding refuses lone surrogates (\ud800 escapes)


def _shown(text: str) -> str:
    """A string from the log, safe to print on one line."""
    return text if text.isascii() and text.isprintable() and len(text) <= 40 else ascii(text[:40])


def check_key(field_name: str, key) -> None:
    """Refuse what is not an audit key (bytes of 16 or more, or an Ed25519 key), naming ``field_name``."""
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


def _sign(key: AuditKey, hashed: str) -> dict:
    if isinstance(key, bytes):
        value = hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()
        return {"alg": "hmac-sha256", "key_id": _key_id(key), "value": value}
    if isinstance(key, Ed25519PublicKey):
        raise ValueError("audit_key: signing needs the Ed25519 private key (the public key only verifies)")
    return {"alg": "ed25519", "key_id": _key_id(key), "value": key.sign(hashed.encode()).hex()}


def _signature_ok(key: AuditKey, key_id: str, hashed: str, sig: dict) -> bool:
    """Whether ``sig`` is exactly the signature ``key`` (id ``key_id``) makes of the hash ``hashed``."""
    if sig["key_id"] != key_id:
        return False
    if isinstance(key, bytes):
        expected = hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()
        return sig["alg"] == "hmac-sha256" and hmac.compare_digest(expected.encode(), sig["value"].encode())
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    try:
        value = bytes.fromhex(sig["value"])
        public.verify(value, hashed.encode())
    except (InvalidSignature, ValueError):
        return False
    return sig["alg"] == "ed25519" and value.hex() == sig["value"]  # fromhex also reads "AB cd"


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
        """Write one entry (``data`` as plain JSON) chained to the last one; return it."""
        if self.closed:
            raise RuntimeError("the audit log is closed")
        check("kind", kind, TEXT)
        data = plain(check("data", data, Mapping()))
        if _depth(data) > MAX_DEPTH:
            raise ValueError(f"data: nests deeper than {MAX_DEPTH} levels")
        entry = {"seq": self.seq, "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                 "kind": kind, "data": data, "prev": self.head}
        entry["hash"] = _plain_hash(entry)
        if self.key is not None:
            entry["sig"] = _sign(self.key, entry["hash"])
        line = _line(entry) + "\n"
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
    """What ``verify`` found: ``ok`` (no tampering), ``complete`` (closed by an ``end`` entry).

    ``problems`` lists the first ``MAX_PROBLEMS`` found; ``more_problems`` counts the others.
    """

    path: str
    entries: int
    ok: bool
    complete: bool
    head: str
    signed: str
    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    more_problems: int = 0

    @property
    def status(self) -> str:
        """``valid``, ``valid but incomplete`` or ``TAMPERED``."""
        if not self.ok:
            return "TAMPERED"
        return "valid" if self.complete else "valid but incomplete"

    @property
    def tally(self) -> str:
        """How many problems were found, in words (``1 problem``, ``3 problems``), those not listed too."""
        n = len(self.problems) + self.more_problems
        return f"{n} problem{'s' if n != 1 else ''}"

    @property
    def signatures(self) -> str:
        """What the signatures show and do not show (``signed`` in words)."""
        if self.signed == "unsigned":
            return ("unsigned: anyone who can write the file can rewrite its entries and recompute every hash, so "
                    "the chain shows only that the file is internally consistent")
        if self.signed == "signatures verified" and not self.ok:
            return ("every signature verifies, but a signature only vouches for its entry's recorded hash: "
                    "the problems were made after signing")
        return self.signed

    @property
    def headline(self) -> str:
        """Status, problem count, entries, head and signatures, on one line."""
        count = f": {self.tally}" if not self.ok else ""
        return f"{self.status}{count} ({self.entries} entries, head {self.head[:16]}; {self.signatures})"

    def summary(self) -> str:
        """The headline, then one line per problem and note."""
        lines = [f"{self.path}: {self.headline}"]
        lines += [f"  line {p['line']}: {p['problem']}: {p['detail']}" for p in self.problems]
        if self.more_problems:
            lines.append(f"  ... and {self.more_problems} more problems")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return self.ok


def verify(path: str | os.PathLike, key: AuditKey | None = None, expected_head: str | None = None) -> Verification:
    """Check an audit log's chain (and signatures, given the key); locate every problem by line.

    Never raises on what the file holds (only on a file it cannot read, a bad
    key or a bad ``expected_head``). Problems found: ``empty log`` (no complete
    entry), ``not an entry`` (a line that is not a well-formed entry: not UTF-8,
    not strict JSON, fields missing or of the wrong type), ``reformatted`` (an
    entry not byte for byte as the writer writes it), ``unknown field``,
    ``edited`` (an entry's content does not match its hash), ``bad signature``
    / ``unsigned`` (with the key; without it, a signature by another key than
    the log's first or a missing one in a signed log), ``removed`` (sequence
    numbers missing), ``reordered`` (an entry earlier in the sequence comes
    later in the file), ``duplicated``, ``broken link`` (an entry does not
    chain to the one before: that one was rewritten with a recomputed hash, or
    this one was inserted) and ``appended after end``.
    """
    check_key("key", key)
    check("expected_head", expected_head, NoneValue(), TEXT)
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"log: cannot read {str(path)!r} ({error.strerror})") from None
    problems: list[dict] = []
    notes: list[str] = []
    more = 0

    def problem(line: int, kind: str, detail: str, seq=None) -> None:
        nonlocal more
        if len(problems) < MAX_PROBLEMS:
            problems.append({"line": line, "seq": seq, "problem": kind, "detail": detail})
        else:
            more += 1

    lines = raw.split(b"\n") if raw.strip() else [b""]
    last = lines.pop()
    torn = False
    if last:
        try:
            _parse(last)
            notes.append("the last line has no newline")
            lines.append(last)  # a complete entry that merely lacks its newline
        except ValueError:
            torn = last.startswith(OPENING) or OPENING.startswith(last)  # what an interrupted write leaves
            if not torn:
                lines.append(last)

    entries: list[tuple[int, dict]] = []
    for number, text in enumerate(lines, start=1):
        try:
            entry, exact = _parse(text)
        except ValueError as error:
            problem(number, "not an entry", str(error))
            continue
        seq = entry["seq"]
        if not exact:
            problem(number, "reformatted", f"entry {seq} is not byte for byte as the writer wrote it "
                    "(whitespace, key order, escapes or number format differ)", seq)
        unknown = sorted(set(entry) - {*ENTRY})
        if unknown:
            problem(number, "unknown field", f"entry {seq} has {', '.join(_shown(k) for k in unknown[:5])}, "
                    "which no entry has", seq)
        if entry_hash(entry) != entry["hash"]:
            problem(number, "edited", f"entry {seq} ({_shown(entry['kind'])}) does not match its hash", seq)
        entries.append((number, entry))
    if not entries:
        problem(1, "empty log", "the log holds no complete entry")

    signed = [(n, e) for n, e in entries if "sig" in e]
    failed = 0
    if key is not None:
        key_id = _key_id(key)
        for number, entry in entries:
            seq = entry["seq"]
            if "sig" not in entry:
                problem(number, "unsigned", f"entry {seq} carries no signature", seq)
            elif not _signature_ok(key, key_id, entry["hash"], entry["sig"]):
                problem(number, "bad signature", f"entry {seq}'s signature does not verify with this key", seq)
            else:
                continue
            failed += 1
    elif signed:
        first_line, first = signed[0]
        for number, entry in entries:
            seq = entry["seq"]
            if "sig" not in entry:
                problem(number, "unsigned", f"entry {seq} carries no signature, unlike line {first_line}'s", seq)
            elif (entry["sig"]["alg"], entry["sig"]["key_id"]) != (first["sig"]["alg"], first["sig"]["key_id"]):
                problem(number, "bad signature", f"entry {seq} is signed by another key than line "
                        f"{first_line}'s", seq)

    first_line_of: dict[int, int] = {}
    by_seq: dict[int, dict] = {}
    highest = -1
    for number, entry in entries:
        seq = entry["seq"]
        if seq in first_line_of:
            problem(number, "duplicated", f"entry {seq} also appears on line {first_line_of[seq]}", seq)
        else:
            first_line_of[seq], by_seq[seq] = number, entry
        if seq < highest:
            problem(number, "reordered", f"entry {seq} comes after entry {highest} in the file", seq)
        highest = max(highest, seq)
    previous = -1
    for seq in sorted(first_line_of):
        if seq > previous + 1:
            where = f"after line {first_line_of[previous]}" if previous >= 0 else "at the start"
            gap = (f"entry {previous + 1} is" if seq == previous + 2 else f"entries {previous + 1}-{seq - 1} are")
            problem(first_line_of[previous] + 1 if previous >= 0 else 1, "removed", f"{gap} missing ({where})",
                    previous + 1)
        previous = seq
    for number, entry in entries:
        seq = entry["seq"]
        expected = GENESIS if seq == 0 else by_seq.get(seq - 1, {}).get("hash")
        if expected is not None and entry["prev"] != expected:
            detail = (f"entry {seq} does not chain to entry {seq - 1}: one of them was rewritten "
                      f"(hash recomputed) or entry {seq} was inserted out of chain") if seq else \
                "entry 0 does not start the chain"
            problem(number, "broken link", detail, seq)

    ends = [n for n, e in entries if e["kind"] == "end"]
    if ends:
        for number, entry in entries:
            if number > ends[0]:
                problem(number, "appended after end", f"entry {entry['seq']} ({_shown(entry['kind'])}) follows "
                        "the closing entry", entry["seq"])
        if torn:
            problem(len(lines) + 1, "appended after end", "an incomplete line follows the closing entry")
    else:
        notes.append("no closing entry: the run was interrupted, or the log's tail was removed")
    if torn and not ends:
        notes.append(f"line {len(lines) + 1} is an incomplete entry (a write was interrupted); ignored")
    if entries and entries[0][1]["kind"] != "start":
        notes.append("the first entry is not the run's start entry")

    head = by_seq[max(by_seq)]["hash"] if by_seq else GENESIS
    if expected_head is not None and head != expected_head:
        problem(len(lines), "removed" if expected_head in {e["hash"] for _, e in entries} else "appended after end",
                f"the log ends at {head[:16]}, expected head {_shown(expected_head[:16])}")
    algs = sorted({e["sig"]["alg"] for _, e in signed})
    if not entries:
        described = "no entries"
    elif key is not None:
        described = "signatures verified" if not failed else f"signatures FAIL on {failed} of {len(entries)} entries"
    elif signed:
        described = f"signed ({', '.join(_shown(a) for a in algs[:3])}), signatures not checked without the key"
    else:
        described = "unsigned"
    problems.sort(key=lambda p: (p["line"], p["problem"]))
    return Verification(path=str(path), entries=len(entries), ok=not problems, complete=bool(ends), head=head,
                        signed=described, problems=problems, notes=notes, more_problems=more)


def read(path: str | os.PathLike) -> list[dict]:
    """The entries of a log in file order: every line that is a well-formed entry (a torn or foreign line is
    skipped; ``verify`` says whether the log can be trusted)."""
    entries = []
    for text in Path(path).read_bytes().split(b"\n"):
        try:
            entries.append(_parse(text)[0])
        except ValueError:
            continue
    return entries
