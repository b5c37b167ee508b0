"""An audit log's entries: their canonical JSON and hash, and the strict parse of one line."""

import hashlib
import json

from fedsim.plain import plain
from fedsim.validation import Constraint, Instance, Integer, Mapping, check

GENESIS = "0" * 64
MAX_DEPTH = 64  # levels of lists and objects an entry's data may nest
MAX_PROBLEMS = 1000  # problems ``verify`` lists; it counts the others
OPENING = b'{"data": {'  # how every line the writer writes begins (sorted keys: data comes first)


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


def plain_hash(entry: dict) -> str:
    """``entry_hash`` of an entry that is plain data already (what the writer builds)."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k not in ("hash", "sig")},
                                    is_plain=True)).hexdigest()


def line_of(entry: dict) -> str:
    """An entry as the writer writes it (without the newline)."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, allow_nan=False)


def depth(value) -> int:
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


def parse_line(line: bytes) -> tuple[dict, bool]:
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
    if depth(entry["data"]) > MAX_DEPTH:
        raise ValueError(f"data: nests deeper than {MAX_DEPTH} levels")
    return entry, line_of(entry).encode() == line  # encoding refuses lone surrogates (\ud800 escapes)


def shown(text: str) -> str:
    """A string from the log, safe to print on one line."""
    return text if text.isascii() and text.isprintable() and len(text) <= 40 else ascii(text[:40])
