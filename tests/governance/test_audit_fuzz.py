"""The audit log accepts nothing it did not sign: a security reviewer's probes, then a mutation fuzzer.

What a log means is its bytes. ``verify`` accepts a line only if it is byte for
byte what ``AuditWriter`` writes for the entry it parses to, so the fuzzer's
oracle is about bytes, which is stronger than comparing parsed entries: a
mutated log may verify only if it is the log as written, or a cut of it (its
tail removed, possibly mid-line: a torn last write) with no closing entry
before the cut. Whatever verifies then also parses to a prefix of the original
entries, and is ``complete`` only if it holds all of them.
"""

import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim.governance import AuditWriter, read, verify
from fedsim.governance.audit import MAX_DEPTH, MAX_PROBLEMS, OPENING, entry_hash

SECRET = b"0123456789abcdef-fuzz-secret"
ED25519 = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {"unsigned": None, "hmac": SECRET, "ed25519": ED25519}


def write_log(path, key=None) -> bytes:
    """A small log with the kinds of values fedsim writes: nested records, unicode, non-finite floats."""
    log = AuditWriter(path, key)
    log.append("start", {"label": "fuzz é", "config": {"rounds": 2, "lr": 0.05, "tags": ["a", "β", None]},
                         "data_fingerprints": {"H0": {"n_train": 10, "sha256": "ab" * 32}},
                         "in_play": {"components": [{"name": "dpsgd", "settings": {"delta": None, "clip": 1.0}}]}})
    for r in (1, 2):
        log.append("round", {"round": r, "sampled": ["H0", "H1"], "dropped": {},
                             "update_norms": {"H0": 0.25 * r, "H1": float("inf")}, "ok": True, "big": 10 ** 20})
    log.append("result", {"metrics": {"round": [1, 2], "value": [0.5, float("nan")]}, "note": "x\ny \"q\" \\"})
    log.append("end", {"status": "completed"})
    return Path(path).read_bytes()


def write(path, data: bytes) -> Path:
    Path(path).write_bytes(data)
    return Path(path)


def found(path, **kw) -> list[tuple]:
    return [(p["line"], p["problem"]) for p in verify(path, **kw).problems]


def as_written(entry: dict) -> bytes:
    return (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- the reviewer's probes

@pytest.mark.parametrize("key", [None, SECRET])
def test_a_field_added_to_an_entry_is_detected_with_or_without_a_key(tmp_path, key):
    raw = write_log(tmp_path / "a.jsonl", key)
    lines = raw.splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["approved_by"] = "the auditor"
    write(tmp_path / "a.jsonl", b"".join([lines[0], as_written(entry), *lines[2:]]))
    assert found(tmp_path / "a.jsonl", key=key) == [(2, "edited"), (2, "unknown field")]
    # Even with its hash recomputed (which then breaks the next link, and the signature).
    entry["hash"] = entry_hash(entry)
    write(tmp_path / "a.jsonl", b"".join([lines[0], as_written(entry), *lines[2:]]))
    expected = [(2, "unknown field"), (3, "broken link")]
    assert found(tmp_path / "a.jsonl", key=key) == ([(2, "bad signature"), *expected] if key else expected)


def test_the_hash_covers_every_field_but_hash_and_sig(tmp_path):
    raw = write_log(tmp_path / "a.jsonl", SECRET)
    entry = json.loads(raw.splitlines()[0])
    assert entry_hash(entry) == entry["hash"] == entry_hash({k: v for k, v in entry.items() if k != "sig"})
    assert entry_hash({**entry, "extra": 1}) != entry["hash"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_refused(tmp_path, token):
    raw = write_log(tmp_path / "a.jsonl")
    assert b'"inf"' in raw  # the writer stores non-finite floats as strings
    write(tmp_path / "a.jsonl", raw.replace(b'"H1": "inf"', f'"H1": {token}'.encode(), 1))
    result = verify(tmp_path / "a.jsonl")
    assert [(p["line"], p["problem"], p["detail"]) for p in result.problems] == [
        (2, "not an entry", f"not standard JSON (non-standard constant {token})"), (2, "removed", "entry 1 is "
                                                                                   "missing (after line 1)")]
    assert len(read(tmp_path / "a.jsonl")) == 4  # the reader does not take it either


def test_the_string_nan_and_the_constant_nan_do_not_both_verify(tmp_path):
    raw = write_log(tmp_path / "a.jsonl")
    assert verify(tmp_path / "a.jsonl").ok  # "nan", as the writer wrote it
    write(tmp_path / "a.jsonl", raw.replace(b'"nan"', b"NaN"))
    assert found(tmp_path / "a.jsonl")[0] == (4, "not an entry")


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    raw = write_log(tmp_path / "a.jsonl")
    lines = raw.splitlines(keepends=True)
    for old, new in [(b'{"data": {', b'{"seq": 9, "data": {'),           # top level
                     (b'"round": 1, ', b'"round": 1, "round": 7, ')]:    # inside data
        write(tmp_path / "a.jsonl", b"".join([lines[0], lines[1].replace(old, new), *lines[2:]]))
        problem = verify(tmp_path / "a.jsonl").problems[0]
        assert (problem["line"], problem["problem"]) == (2, "not an entry")
        assert problem["detail"].startswith("not standard JSON (duplicate key ")


@pytest.mark.parametrize("field, value, detail", [
    ("seq", [1], "seq: must be an integer >= 0, got [1]"),
    ("seq", True, "seq: must be an integer >= 0, got True"),
    ("seq", 1.0, "seq: must be an integer >= 0, got 1.0"),
    ("seq", "1", "seq: must be an integer >= 0, got '1'"),
    ("seq", -1, "seq: must be an integer >= 0, got -1"),
    ("kind", 3, "kind: must be a string, got 3"),
    ("data", [1, 2], "data: must be a mapping, got [1, 2]"),
    ("prev", None, "prev: must be a SHA-256 digest (64 lowercase hex digits), got None"),
    ("hash", {"a": 1}, "hash: must be a SHA-256 digest (64 lowercase hex digits), got {'a': 1}"),
    ("hash", "\x1b[2J" * 16, "hash: must be a SHA-256 digest (64 lowercase hex digits), got '\\x1b[2J\\x1b[2J"),
    ("sig", "deadbeef", "sig: must be a signature {alg, key_id, value} of strings, got 'deadbeef'"),
    ("sig", {"alg": "hmac-sha256", "value": "00"}, "sig: must be a signature {alg, key_id, value} of strings, "
                                                   "got {'alg': 'hmac-sha256', 'value': '00'}"),
])
def test_a_field_of_the_wrong_type_is_a_located_problem(tmp_path, field, value, detail):
    raw = write_log(tmp_path / "a.jsonl")
    lines = raw.splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry[field] = value
    write(tmp_path / "a.jsonl", b"".join([*lines[:2], as_written(entry), *lines[3:]]))
    result = verify(tmp_path / "a.jsonl")
    first = result.problems[0]
    assert (first["line"], first["problem"]) == (3, "not an entry") and first["detail"].startswith(detail)
    assert "\x1b" not in result.summary()  # what the log holds is shown quoted where it could not be printed


def test_a_huge_sequence_number_costs_nothing(tmp_path):
    raw = write_log(tmp_path / "a.jsonl")
    lines = raw.splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["seq"] = 10 ** 9
    entry["hash"] = entry_hash(entry)
    write(tmp_path / "a.jsonl", b"".join([lines[0], as_written(entry)]))
    result = verify(tmp_path / "a.jsonl")
    assert [(p["line"], p["problem"], p["detail"]) for p in result.problems] == [
        (2, "removed", "entries 1-999999999 are missing (after line 1)")]


def test_deep_nesting_and_bytes_that_are_not_utf8_are_located_problems(tmp_path):
    raw = write_log(tmp_path / "a.jsonl")
    lines = raw.splitlines(keepends=True)
    deep = b'{"data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
    nested = json.loads(lines[1])
    nested["data"]["x"] = json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)  # data one level too deep
    write(tmp_path / "a.jsonl", b"".join([lines[0], deep, b"{\xff\xfe}\n", as_written(nested), *lines[2:]]))
    details = [(p["line"], p["detail"]) for p in verify(tmp_path / "a.jsonl").problems
               if p["problem"] == "not an entry"]
    assert details == [(2, "not standard JSON (nested too deeply)"), (3, "not UTF-8 text"),
                       (4, f"data: nests deeper than {MAX_DEPTH} levels")]
    with pytest.raises(ValueError, match=f"^data: nests deeper than {MAX_DEPTH} levels"):
        AuditWriter(tmp_path / "b.jsonl").append("x", {"x": nested["data"]["x"]})


def test_a_huge_file_of_garbage_lists_the_first_problems_and_counts_the_rest(tmp_path):
    write(tmp_path / "a.jsonl", b"garbage\n" * 100_000)
    result = verify(tmp_path / "a.jsonl")
    assert not result.ok and result.entries == 0
    assert len(result.problems) == MAX_PROBLEMS and result.more_problems == 100_001 - MAX_PROBLEMS  # + empty log
    assert result.tally == "100001 problems" and "... and 99001 more problems" in result.summary()


@pytest.mark.parametrize("content", [b"", b"  \n\n \t", b'{"data": {"rou'])
def test_an_empty_log_is_an_error(tmp_path, content):
    result = verify(write(tmp_path / "a.jsonl", content))
    assert not result.ok and result.status == "TAMPERED" and result.entries == 0
    assert [(p["problem"], p["detail"]) for p in result.problems] == [("empty log", "the log holds no complete entry")]


def test_a_file_that_cannot_be_read_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="^log: cannot read .*No such file"):
        verify(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="^log: cannot read .*Is a directory"):
        verify(tmp_path)
    with pytest.raises(ValueError, match="^expected_head: must be None or a string, got 5"):
        verify(write(tmp_path / "a.jsonl", b""), expected_head=5)


def test_a_torn_line_after_the_closing_entry_is_a_problem(tmp_path):
    raw = write_log(tmp_path / "a.jsonl")
    assert found(write(tmp_path / "a.jsonl", raw + b'{"data": {"x"')) == [(6, "appended after end")]
    assert found(write(tmp_path / "a.jsonl", raw + b"  ")) == [(6, "not an entry")]  # not what a write leaves


def test_a_signature_must_be_exactly_the_one_the_key_makes(tmp_path):
    raw = write_log(tmp_path / "a.jsonl", ED25519)
    entry = json.loads(raw.splitlines()[1])
    for change in ({"value": entry["sig"]["value"].upper()}, {"key_id": "0" * 16}, {"alg": "hmac-sha256"}):
        forged = {**entry, "sig": {**entry["sig"], **change}}
        lines = raw.splitlines(keepends=True)
        write(tmp_path / "a.jsonl", b"".join([lines[0], as_written(forged), *lines[2:]]))
        assert found(tmp_path / "a.jsonl", key=ED25519.public_key()) == [(2, "bad signature")]


def test_without_the_key_a_log_must_be_signed_throughout_by_one_key(tmp_path):
    raw = write_log(tmp_path / "a.jsonl", SECRET)
    lines = raw.splitlines(keepends=True)
    unsigned = json.loads(lines[1])
    del unsigned["sig"]
    other = json.loads(lines[2])
    other["sig"]["key_id"] = "f" * 16
    write(tmp_path / "a.jsonl", b"".join([lines[0], as_written(unsigned), as_written(other), *lines[3:]]))
    result = verify(tmp_path / "a.jsonl")
    assert [(p["line"], p["problem"], p["detail"]) for p in result.problems] == [
        (2, "unsigned", "entry 1 carries no signature, unlike line 1's"),
        (3, "bad signature", "entry 2 is signed by another key than line 1's")]


def test_the_headline_of_a_tampered_signed_log_does_not_read_as_a_clean_bill(tmp_path):
    raw = write_log(tmp_path / "a.jsonl", SECRET)
    result = verify(write(tmp_path / "a.jsonl", raw.replace(b'"H0": 0.25', b'"H0": 0.35')), key=SECRET)
    assert result.signed == "signatures verified" and result.tally == "1 problem"
    assert result.headline == (f"TAMPERED: 1 problem (5 entries, head {result.head[:16]}; every signature "
                               "verifies, but a signature only vouches for its entry's recorded hash: the problems "
                               "were made after signing)")
    unsigned = verify(write(tmp_path / "b.jsonl", write_log(tmp_path / "c.jsonl")))
    assert unsigned.ok and "unsigned: anyone who can write the file can rewrite its entries and recompute every " \
                           "hash" in unsigned.summary()


# ---------------------------------------------------------------- the fuzzer

TOKENS = [b" ", b"\n", b"\r", b"\t", b",", b"{", b"}", b"[", b"]", b'"', b"\\", b"NaN", b"Infinity", b"-0",
          b"1e2", b"\\u0041", b"\xff", b"\xef\xbb\xbf", b'"x": 1, ', b"null", b"\x00"]
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


def _leaf_paths(value, path=()):
    """Every path to a value inside ``value`` (containers included)."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, (*path, i))


def _get(value, path):
    for step in path:
        value = value[step]
    return value


def _tweak(value):
    """A value close to ``value``: one character's case or a digit changed, a number off by one, a bool negated."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str) and value:
        return value[:-1] + (value[-1].swapcase() if value[-1].swapcase() != value[-1] else "0" if value[-1] != "0"
                             else "1")
    return value


def _set(value, path, new):
    if not path:
        return new
    value[path[0]] = _set(value[path[0]], path[1:], new)
    return value


def _lines(raw: bytes) -> list[bytes]:
    return raw.splitlines(keepends=True)


def _mutate_entry(draw, raw: bytes, keyed: bool) -> bytes:
    """Parse one line, change it (a field added, removed or changed, anywhere), write it back as the writer would."""
    lines = _lines(raw)
    if not lines:
        return raw
    i = draw(st.integers(0, len(lines) - 1))
    try:
        entry = json.loads(lines[i])
    except ValueError:
        return raw
    if not isinstance(entry, dict) or not entry:
        return raw
    action = draw(st.sampled_from(["add", "delete", "change"]))
    names = ["seq", "time", "kind", "data", "prev", "hash", *(["sig"] if keyed else []), "extra", "Seq", ""]
    if action == "add":
        entry[draw(st.sampled_from(names))] = draw(JSON_VALUES)
    elif action == "delete":
        del entry[draw(st.sampled_from(sorted(entry)))]
    else:  # a field, then a place inside it (so that small fields like sig.key_id are hit often)
        top = draw(st.sampled_from(sorted(entry)))
        path = draw(st.sampled_from([p for p in _leaf_paths(entry) if p[:1] == (top,)]))
        old = _get(entry, path)
        entry = _set(entry, path, draw(st.sampled_from([_tweak(old)]) | JSON_VALUES))
    try:
        lines[i] = as_written(entry)
    except (TypeError, ValueError):
        return raw
    return b"".join(lines)


def _reserialise(draw, raw: bytes) -> bytes:
    """One line written again with the same content in another form (key order, spacing, escapes, constants)."""
    lines = _lines(raw)
    i = draw(st.integers(0, len(lines) - 1)) if lines else 0
    try:
        entry = json.loads(lines[i])
    except (ValueError, IndexError):
        return raw
    form = draw(st.sampled_from(["shuffled", "compact", "ascii", "indented", "crlf", "nan"]))
    if form == "shuffled" and isinstance(entry, dict):
        keys = list(entry)
        random.Random(draw(st.integers(0, 99))).shuffle(keys)
        text = json.dumps({k: entry[k] for k in keys}, ensure_ascii=False) + "\n"
    elif form == "compact":
        text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    elif form == "ascii":
        text = json.dumps(entry, sort_keys=True) + "\n"
    elif form == "indented":
        text = json.dumps(entry, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    elif form == "crlf":
        text = lines[i].decode("utf-8", "replace").rstrip("\n") + "\r\n"
    else:  # the writer's "nan"/"inf" strings as the constants a lenient parser reads as the same floats
        text = lines[i].decode("utf-8", "replace").replace('"nan"', "NaN").replace('"inf"', "Infinity")
    lines[i] = text.encode()
    return b"".join(lines)


def _rechain(draw, raw: bytes) -> bytes:
    """A forger's edit: change an entry's data, recompute its hash and every later link (signatures untouched)."""
    entries = [json.loads(line) for line in _lines(raw)]
    i = draw(st.integers(0, len(entries) - 1))
    entries[i]["data"][draw(st.sampled_from(["round", "status", "new"]))] = draw(JSON_VALUES)
    for j in range(i, len(entries)):
        if j:
            entries[j]["prev"] = entries[j - 1]["hash"]
        entries[j]["hash"] = entry_hash(entries[j])
    return b"".join(as_written(e) for e in entries)


@st.composite
def mutated(draw, raw: bytes, keyed: bool) -> bytes:
    """``raw`` after one to three random mutations."""
    out = raw
    if keyed and draw(st.booleans()):
        out = _rechain(draw, out)
    for kind in draw(st.lists(st.sampled_from(["flip", "insert", "delete", "lines", "entry", "form", "cut"]),
                              min_size=1, max_size=3)):
        size = len(out)
        if kind == "flip" and size:
            at = draw(st.integers(0, size - 1))
            out = out[:at] + bytes([out[at] ^ draw(st.integers(1, 255))]) + out[at + 1:]
        elif kind == "insert":
            at = draw(st.integers(0, size))
            out = out[:at] + draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=4)) + out[at:]
        elif kind == "delete" and size:
            at = draw(st.integers(0, size - 1))
            out = out[:at] + out[at + draw(st.integers(1, 40)):]
        elif kind == "lines":
            lines = _lines(out)
            if lines:
                i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines)))
                op = draw(st.sampled_from(["duplicate", "delete", "swap", "move"]))
                if op == "duplicate":
                    lines.insert(j, lines[i])
                elif op == "delete":
                    del lines[i]
                elif op == "swap":
                    j = min(j, len(lines) - 1)
                    lines[i], lines[j] = lines[j], lines[i]
                else:
                    lines.insert(j, lines.pop(i))
                out = b"".join(lines)
        elif kind == "entry":
            out = _mutate_entry(draw, out, keyed)
        elif kind == "form":
            out = _reserialise(draw, out)
        elif kind == "cut":
            out = out[:draw(st.integers(0, size))] + draw(st.sampled_from([b"", b"{", b'{"data": {"x', b"junk"]))
    return out


def acceptable(raw: bytes, new: bytes) -> bool:
    """Whether ``new`` may verify: ``raw`` itself or a cut of it, or a cut at a line end followed by what an
    interrupted write leaves (the opening of an entry, without its newline), before the closing entry."""
    if raw.startswith(new):
        return True
    cut = new[: new.rfind(b"\n") + 1]
    torn = new[len(cut):]
    return len(cut) < len(raw) and raw.startswith(cut) and (torn.startswith(OPENING) or OPENING.startswith(torn))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One log per key, as written, and room for the mutated copies."""
    path = tmp_path_factory.mktemp("fuzz")
    for name, key in KEYS.items():
        write_log(path / f"{name}.jsonl", key)
    return path


@pytest.mark.parametrize("name", list(KEYS))
def test_the_originals_verify(folder, name):
    key = KEYS[name]
    result = verify(folder / f"{name}.jsonl", key=key.public_key() if name == "ed25519" else key)
    assert result.ok and result.complete and result.entries == 5 and not result.notes


@pytest.mark.parametrize("name", list(KEYS))
@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_mutation_of_a_log_verifies_unless_it_is_a_cut_of_it(folder, name, data):
    raw, key = (folder / f"{name}.jsonl").read_bytes(), KEYS[name]
    new = data.draw(mutated(raw, keyed=key is not None))
    path = write(folder / f"mutated-{name}.jsonl", new)
    result = verify(path, key=key)  # never raises
    assert isinstance(result.summary(), str)
    if result.ok:
        assert acceptable(raw, new), result.summary()
        kept, original = read(path), [json.loads(line) for line in _lines(raw)]
        assert kept == original[:len(kept)] and result.entries == len(kept)
        assert result.complete == (len(kept) == len(original))
