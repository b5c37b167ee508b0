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

from fedsim.governance.audit.entries import GENESIS, MAX_DEPTH, MAX_PROBLEMS, OPENING, canonical, digest, entry_hash
from fedsim.governance.audit.keys import AuditKey, check_key, load_key
from fedsim.governance.audit.verify import Verification, read, verify
from fedsim.governance.audit.writer import AuditWriter

__all__ = ["GENESIS", "MAX_DEPTH", "MAX_PROBLEMS", "OPENING", "AuditKey", "AuditWriter", "Verification", "canonical",
           "check_key", "digest", "entry_hash", "load_key", "read", "verify"]
