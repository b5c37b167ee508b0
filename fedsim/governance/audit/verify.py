"""Verifying an audit log: every check of ``verify`` one function, each problem located by line."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.governance.audit.entries import ENTRY, GENESIS, MAX_PROBLEMS, OPENING, TEXT, entry_hash, parse_line, shown
from fedsim.governance.audit.keys import AuditKey, check_key, key_id, signature_ok
from fedsim.validation import NoneValue, check


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
    this one was inserted) and ``appended after end``. Each is one check below.
    """
    check_key("key", key)
    check("expected_head", expected_head, NoneValue(), TEXT)
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"log: cannot read {str(path)!r} ({error.strerror})") from None
    found = Findings()
    lines, torn = split_lines(raw, found)
    entries = parse_entries(lines, found)
    failed = check_signatures(entries, key, found)
    by_seq, first_line_of = check_order(entries, found)
    check_gaps(first_line_of, found)
    check_links(entries, by_seq, found)
    ends = check_ending(entries, lines, torn, found)
    head = by_seq[max(by_seq)]["hash"] if by_seq else GENESIS
    if expected_head is not None and head != expected_head:
        found.problem(len(lines), "removed" if expected_head in {e["hash"] for _, e in entries}
                      else "appended after end", f"the log ends at {head[:16]}, expected head "
                      f"{shown(expected_head[:16])}")
    found.problems.sort(key=lambda p: (p["line"], p["problem"]))
    return Verification(path=str(path), entries=len(entries), ok=not found.problems, complete=bool(ends), head=head,
                        signed=signatures_in_words(entries, key, failed), problems=found.problems, notes=found.notes,
                        more_problems=found.more)


@dataclass
class Findings:
    """The problems and notes a verification has found so far (the first ``MAX_PROBLEMS`` problems listed)."""

    problems: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    more: int = 0

    def problem(self, line: int, kind: str, detail: str, seq=None) -> None:
        """Record a problem at ``line`` (of entry ``seq``, where known)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"line": line, "seq": seq, "problem": kind, "detail": detail})
        else:
            self.more += 1


def split_lines(raw: bytes, found: Findings) -> tuple[list[bytes], bool]:
    """The file's lines, and whether its last one is torn (an interrupted write, left out of the lines)."""
    lines = raw.split(b"\n") if raw.strip() else [b""]
    last = lines.pop()
    torn = False
    if last:
        try:
            parse_line(last)
            found.notes.append("the last line has no newline")
            lines.append(last)  # a complete entry that merely lacks its newline
        except ValueError:
            torn = last.startswith(OPENING) or OPENING.startswith(last)  # what an interrupted write leaves
            if not torn:
                lines.append(last)
    return lines, torn


def parse_entries(lines: list[bytes], found: Findings) -> list[tuple[int, dict]]:
    """Every line that is an entry, with its line number; each entry checked against its own hash and format."""
    entries: list[tuple[int, dict]] = []
    for number, text in enumerate(lines, start=1):
        try:
            entry, exact = parse_line(text)
        except ValueError as error:
            found.problem(number, "not an entry", str(error))
            continue
        seq = entry["seq"]
        if not exact:
            found.problem(number, "reformatted", f"entry {seq} is not byte for byte as the writer wrote it "
                          "(whitespace, key order, escapes or number format differ)", seq)
        unknown = sorted(set(entry) - {*ENTRY})
        if unknown:
            found.problem(number, "unknown field", f"entry {seq} has {', '.join(shown(k) for k in unknown[:5])}, "
                          "which no entry has", seq)
        if entry_hash(entry) != entry["hash"]:
            found.problem(number, "edited", f"entry {seq} ({shown(entry['kind'])}) does not match its hash", seq)
        entries.append((number, entry))
    if not entries:
        found.problem(1, "empty log", "the log holds no complete entry")
    return entries


def check_signatures(entries: list[tuple[int, dict]], key: AuditKey | None, found: Findings) -> int:
    """With ``key``: every entry signed by it (how many are not); without: every entry signed as the first one."""
    failed = 0
    if key is not None:
        own = key_id(key)
        for number, entry in entries:
            seq = entry["seq"]
            if "sig" not in entry:
                found.problem(number, "unsigned", f"entry {seq} carries no signature", seq)
            elif not signature_ok(key, own, entry["hash"], entry["sig"]):
                found.problem(number, "bad signature", f"entry {seq}'s signature does not verify with this key", seq)
            else:
                continue
            failed += 1
        return failed
    signed = [(n, e) for n, e in entries if "sig" in e]
    if signed:
        first_line, first = signed[0]
        for number, entry in entries:
            seq = entry["seq"]
            if "sig" not in entry:
                found.problem(number, "unsigned", f"entry {seq} carries no signature, unlike line {first_line}'s",
                              seq)
            elif (entry["sig"]["alg"], entry["sig"]["key_id"]) != (first["sig"]["alg"], first["sig"]["key_id"]):
                found.problem(number, "bad signature", f"entry {seq} is signed by another key than line "
                              f"{first_line}'s", seq)
    return failed


def check_order(entries: list[tuple[int, dict]], found: Findings) -> tuple[dict[int, dict], dict[int, int]]:
    """Duplicated and reordered entries; each sequence number's first entry and line."""
    first_line_of: dict[int, int] = {}
    by_seq: dict[int, dict] = {}
    highest = -1
    for number, entry in entries:
        seq = entry["seq"]
        if seq in first_line_of:
            found.problem(number, "duplicated", f"entry {seq} also appears on line {first_line_of[seq]}", seq)
        else:
            first_line_of[seq], by_seq[seq] = number, entry
        if seq < highest:
            found.problem(number, "reordered", f"entry {seq} comes after entry {highest} in the file", seq)
        highest = max(highest, seq)
    return by_seq, first_line_of


def check_gaps(first_line_of: dict[int, int], found: Findings) -> None:
    """Sequence numbers missing (removed entries), located after the line that precedes them."""
    previous = -1
    for seq in sorted(first_line_of):
        if seq > previous + 1:
            where = f"after line {first_line_of[previous]}" if previous >= 0 else "at the start"
            gap = (f"entry {previous + 1} is" if seq == previous + 2 else f"entries {previous + 1}-{seq - 1} are")
            found.problem(first_line_of[previous] + 1 if previous >= 0 else 1, "removed", f"{gap} missing ({where})",
                          previous + 1)
        previous = seq


def check_links(entries: list[tuple[int, dict]], by_seq: dict[int, dict], found: Findings) -> None:
    """Every entry chains to the one before it (entry 0 to the genesis hash)."""
    for number, entry in entries:
        seq = entry["seq"]
        expected = GENESIS if seq == 0 else by_seq.get(seq - 1, {}).get("hash")
        if expected is not None and entry["prev"] != expected:
            detail = (f"entry {seq} does not chain to entry {seq - 1}: one of them was rewritten "
                      f"(hash recomputed) or entry {seq} was inserted out of chain") if seq else \
                "entry 0 does not start the chain"
            found.problem(number, "broken link", detail, seq)


def check_ending(entries: list[tuple[int, dict]], lines: list[bytes], torn: bool, found: Findings) -> list[int]:
    """Nothing after the closing entry; notes on a log without one, a torn last line or a missing start."""
    ends = [n for n, e in entries if e["kind"] == "end"]
    if ends:
        for number, entry in entries:
            if number > ends[0]:
                found.problem(number, "appended after end", f"entry {entry['seq']} ({shown(entry['kind'])}) follows "
                              "the closing entry", entry["seq"])
        if torn:
            found.problem(len(lines) + 1, "appended after end", "an incomplete line follows the closing entry")
    else:
        found.notes.append("no closing entry: the run was interrupted, or the log's tail was removed")
    if torn and not ends:
        found.notes.append(f"line {len(lines) + 1} is an incomplete entry (a write was interrupted); ignored")
    if entries and entries[0][1]["kind"] != "start":
        found.notes.append("the first entry is not the run's start entry")
    return ends


def signatures_in_words(entries: list[tuple[int, dict]], key: AuditKey | None, failed: int) -> str:
    """What the signatures show: verified, failing on some entries, not checked without the key, or none."""
    signed = [e for _, e in entries if "sig" in e]
    if not entries:
        return "no entries"
    if key is not None:
        return "signatures verified" if not failed else f"signatures FAIL on {failed} of {len(entries)} entries"
    if signed:
        algs = sorted({e["sig"]["alg"] for e in signed})
        return f"signed ({', '.join(shown(a) for a in algs[:3])}), signatures not checked without the key"
    return "unsigned"


def read(path: str | os.PathLike) -> list[dict]:
    """The entries of a log in file order: every line that is a well-formed entry (a torn or foreign line is
    skipped; ``verify`` says whether the log can be trusted)."""
    entries = []
    for text in Path(path).read_bytes().split(b"\n"):
        try:
            entries.append(parse_line(text)[0])
        except ValueError:
            continue
    return entries
