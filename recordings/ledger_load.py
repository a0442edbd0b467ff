"""Reading the ledger back at start, and checking it before anything is appended or signed.

The server must never sign a tree head over a history it did not write. So before the ledger
takes a new entry, :func:`load_ledger` rebuilds the Merkle tree from ``entries.jsonl`` and checks:

- every entry after the checkpoint: one canonical JSON object with the entry keys, its ``index``
  its position, its ``prev`` the leaf hash of the entry before;
- every tree head after the checkpoint: well formed, by this key, a valid signature, sizes that
  never decrease, a size no larger than the ledger and a root equal to the Merkle root of the
  entries it covers;
- the checkpoint itself (:mod:`recordings.checkpoint`): the ledger still holds at least the
  entries verified last time, with the same root, and ``sth.jsonl`` still begins with the bytes
  verified last time.

Entries and tree heads the checkpoint covers are not parsed or re-verified (their root and hash
stand for them), so a start costs one SHA-256 per entry line (needed for the tree anyway) plus the
checks of what is new. Every problem is named; any problem refuses the ledger
(:class:`~recordings.ledger.LedgerIntegrityError`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import is_canonical
from .checkpoint import Checkpoint
from .merkle import MerkleTree, leaf_hash

ENTRY_KEYS = frozenset(("index", "prev", "time", "type", "actor", "where", "outcome", "data"))
STH_KEYS = frozenset(("tree_size", "root_hash", "timestamp", "key_id", "signature"))
STH_CONTEXT = "dispatch-ledger-sth:v1"
MAX_PROBLEMS = 20  # named one by one; more are counted
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_READ = 1 << 20


@dataclass
class Loaded:
    """The ledger as read from disk, and everything found wrong with it."""

    tree: MerkleTree = field(default_factory=MerkleTree)
    offsets: array[int] = field(default_factory=lambda: array("Q"))  # byte offset of each entry line
    entries_len: int = 0
    sth_len: int = 0
    sth_lines: int = 0
    sth_sha256: Any = field(default_factory=hashlib.sha256)  # running hash of sth.jsonl
    latest_sth: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    entries_checked: int = 0  # entry lines parsed and linked this time
    sths_checked: int = 0  # tree heads whose signature and root were checked this time

    def problem(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("… and more")


def _entry_problem(line: bytes, number: int, prev: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        return "not a ledger entry (wrong keys)"
    if entry["index"] != number:
        return f"carries index {entry['index']!r} at position {number}"
    if entry["prev"] != prev:
        return "its prev is not the hash of the entry before it: the chain is broken here"
    if not is_canonical(entry, line):
        return "not in canonical form: not written by the ledger"
    return None


def _sth_problem(line: bytes, key: Ed25519PublicKey, kid: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        sth = json.loads(line)
    except ValueError:
        return None, "not JSON"
    if not isinstance(sth, dict) or set(sth) != STH_KEYS:
        return None, "not a tree head (wrong keys)"
    size = sth["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None, "tree_size is not a positive integer"
    if not (isinstance(sth["root_hash"], str) and _HEX64.match(sth["root_hash"])):
        return None, "root_hash is not hex SHA-256"
    if sth["key_id"] != kid:
        return None, f"signed by key id {str(sth['key_id'])[:16]}…, not this archive's key {kid[:16]}…"
    try:
        message = f"{STH_CONTEXT}\n{size}\n{sth['root_hash']}\n{sth['timestamp']}".encode()
        key.verify(base64.b64decode(str(sth["signature"]), validate=True), message)
    except (ValueError, binascii.Error, InvalidSignature):
        return None, "the Ed25519 signature does not verify"
    if not is_canonical(sth, line):
        return None, "not in canonical form: not written by the ledger"
    return sth, None


def load_ledger(entries_path: Path, sth_path: Path, key: Ed25519PublicKey, kid: str,
                checkpoint: Checkpoint | None) -> Loaded:
    """Read both ledger files (neither may end in a torn line: cut it off first) and check them
    against each other and against ``checkpoint`` (None: check everything)."""
    out = Loaded()
    tree = out.tree
    verified = checkpoint.entries if checkpoint is not None else 0
    offset = 0
    prev = ""
    with open(entries_path, "rb") as f:
        for number, raw in enumerate(f):
            line = raw[:-1]
            out.offsets.append(offset)
            offset += len(raw)
            if number >= verified:
                problem = _entry_problem(line, number, prev)
                out.entries_checked += 1
                if problem:
                    out.problem(f"entry {number}: {problem}")
            h = leaf_hash(line)
            tree.append(h)
            prev = h.hex()
    out.entries_len = offset
    n = tree.size

    start_line, start_byte = 0, 0
    if checkpoint is not None:
        when = checkpoint.verified_at
        if checkpoint.entries > n:
            out.problem(f"the ledger holds {n} entries but {checkpoint.entries} were verified at {when}: "
                        "entries were removed (the ledger was cut back or rolled back)")
        elif checkpoint.closed and n > checkpoint.entries:
            out.problem(f"entries {checkpoint.entries}..{n - 1} follow the final tree head of the server that "
                        f"stopped cleanly at {when}: they were not written by it")
        elif checkpoint.entries and tree.root(checkpoint.entries).hex() != checkpoint.root_hash:
            out.problem(f"entries 0..{checkpoint.entries - 1} are not those verified at {when} (their Merkle root "
                        "changed): history was rewritten")
        if _prefix_matches(sth_path, checkpoint.sth_bytes, checkpoint.sth_sha256):
            start_line, start_byte = checkpoint.sth_lines, checkpoint.sth_bytes
            out.latest_sth = checkpoint.latest_sth
        else:
            out.problem(f"{checkpoint.sth_lines} tree heads verified at {when} are no longer the beginning of "
                        "sth.jsonl: tree heads were removed or altered")

    hasher = out.sth_sha256
    last_size = 0
    with open(sth_path, "rb") as f:
        if start_byte:
            hasher.update(f.read(start_byte))
            if out.latest_sth is not None:
                last_size = int(out.latest_sth["tree_size"])
        number = start_line
        for raw in f:
            hasher.update(raw)
            number += 1
            item = f"tree head {number} (sth.jsonl line {number})"
            sth, problem = _sth_problem(raw[:-1], key, kid)
            out.sths_checked += 1
            if sth is None:
                out.problem(f"{item}: {problem}")
                continue
            size = sth["tree_size"]
            if size < last_size:
                out.problem(f"{item}: tree size {size} is smaller than an earlier tree head's {last_size}")
            last_size = max(last_size, size)
            if size > n:
                out.problem(f"{item} covers {size} entries but the ledger holds {n}: entries were removed")
            elif tree.root(size).hex() != sth["root_hash"]:
                out.problem(f"{item}: its signed root is not the Merkle root of entries 0..{size - 1}: an entry it "
                            "covers was altered, removed or inserted")
            out.latest_sth = sth
        out.sth_lines = number
        out.sth_len = f.tell()
    return out


def _prefix_matches(path: Path, length: int, sha256_hex: str) -> bool:
    h = hashlib.sha256()
    left = length
    with open(path, "rb") as f:
        while left:
            chunk = f.read(min(_READ, left))
            if not chunk:
                return False
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest() == sha256_hex
