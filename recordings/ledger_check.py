"""The ledger half of the archive verifier: every line, the hash chain, the signed tree heads.

It reads ``ledger/sth.jsonl`` first and ``ledger/entries.jsonl`` second (so a tree head never
covers an entry it has not read), checks the form of every line, the ``prev`` chain, every
signed tree head (signature, Merkle root, coverage) and an RFC 9162 inclusion proof for every
sealed segment and still, and names the entry behind each break. It also collects which files the
ledger says exist (:class:`NamedFiles`) for :mod:`recordings.archive_files` to check on disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import parse_iso_millis

from .canonical import is_canonical
from .findings import Findings
from .ledger import (
    ENTRIES_FILE,
    ENTRY_KEYS,
    OUTCOMES,
    PUBLIC_KEY_FILE,
    STH_FILE,
    STH_KEYS,
    key_id,
    verify_sth_signature,
)
from .merkle import MerkleTree, leaf_hash, verify_inclusion
from .snapshots import ENTRY_TYPE as SNAPSHOT_SEALED
from .snapshots import SNAPSHOT_PATH_RE

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEGMENT_PATH = re.compile(r"^recordings/[^/]+/[^/]+$")
_EXPORT_PATH = re.compile(r"^exports/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")


@dataclass
class NamedFiles:
    """The files the ledger vouches for, by archive-relative path, with the index of the entry
    that says so."""

    sealed: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # segment -> (entry, its data)
    deleted: dict[str, int] = field(default_factory=dict)  # segment -> segment_deleted entry
    closed: dict[str, tuple[int, str]] = field(default_factory=dict)  # recording id -> (entry, recording.json sha256)
    stills: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # snapshot -> (entry, its data)
    opened: set[str] = field(default_factory=set)  # recording ids of recording_opened entries
    exports: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # export file -> (entry, sha256, bytes)


def read_lines(path: Path) -> tuple[list[bytes], bytes | None]:
    """Lines without their ``\\n``, and a torn last line (no ``\\n``) separately."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with "\n"
    return lines, (torn or None)


def _entry_problem(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    keys = set(entry)
    if keys != set(ENTRY_KEYS):
        missing, unknown = sorted(set(ENTRY_KEYS) - keys), sorted(keys - set(ENTRY_KEYS))
        return None, f"keys differ from the format (missing {missing}, unknown {unknown})"
    index = entry["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None, f"index {index!r} is not a non-negative integer"
    problem = None
    if not (entry["prev"] == "" or (isinstance(entry["prev"], str) and _HEX64.match(entry["prev"]))):
        problem = "prev is not a hex SHA-256"
    elif not all(isinstance(entry[k], str) and entry[k] for k in ("type", "actor", "where")):
        problem = "type, actor and where must be non-empty strings"
    elif entry["outcome"] not in OUTCOMES:
        problem = f"outcome {entry['outcome']!r} is not one of {sorted(OUTCOMES)}"
    elif not isinstance(entry["data"], dict):
        problem = "data is not an object"
    else:
        try:
            parse_iso_millis(entry["time"])
        except ValueError as exc:
            problem = str(exc)
    if problem is None and not is_canonical(entry, line):
        problem = "not in canonical form (sorted keys, no spaces, UTF-8): not written by the ledger"
    return entry, problem


def _sth_problem(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        sth = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(sth, dict) or set(sth) != set(STH_KEYS):
        return None, f"not a tree head (keys must be {list(STH_KEYS)})"
    size = sth["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None, f"tree_size {size!r} is not a positive integer"
    if not all(isinstance(sth[k], str) and _HEX64.match(sth[k]) for k in ("root_hash", "key_id")):
        return None, "root_hash and key_id must be hex SHA-256"
    try:
        signature = base64.b64decode(sth["signature"], validate=True)
    except (TypeError, ValueError, binascii.Error):
        return None, "signature is not base64"
    if len(signature) != 64 or base64.b64encode(signature).decode() != sth["signature"]:
        return None, "signature is not the canonical base64 of 64 bytes"
    try:
        parse_iso_millis(sth["timestamp"])
    except ValueError as exc:
        return None, str(exc)
    if not is_canonical(sth, line):
        return None, "not in canonical form: not written by the ledger"
    return sth, None


def late_paths(archive: Path, offset: int) -> set[str]:
    """Files named by entries appended to a live ledger after its first ``offset`` bytes were read
    (sealed while the check ran): archive-relative paths."""
    try:
        with open(archive / ENTRIES_FILE, "rb") as f:
            f.seek(offset)
            tail = f.read()
    except OSError:
        return set()
    out: set[str] = set()
    for line in tail.split(b"\n"):
        try:
            data = json.loads(line).get("data", {})
        except (ValueError, AttributeError):
            continue
        if isinstance(data, dict):
            out.update(v for k, v in data.items()
                       if k in ("path", "export_path", "package_path") and isinstance(v, str))
            if isinstance(data.get("recording_id"), str):
                out.add(f"recordings/{data['recording_id']}/recording.json")
    return out


def _span(a: int, b: int) -> str:
    return f"entry {a}" if a == b else f"entries {a}..{b}"


class LedgerCheck:
    """Checks the ledger of the archive at ``archive`` against ``key`` (None: no usable key, so
    no tree head can be checked), recording what it finds in ``findings``. The counters are
    read by the caller's report once :meth:`run` and :meth:`named_files` have run."""

    def __init__(self, archive: Path, findings: Findings, key: Ed25519PublicKey | None,
                 pending_after: str | None = None) -> None:
        """``pending_after``: on a live archive, the time (UTC, the time format) from which an
        entry the latest tree head does not cover yet is pending (the server signs it within its
        signing interval) rather than uncovered; None for an archive no server writes."""
        self.archive = archive
        self.report = findings
        self.key = key
        self.pending_after = pending_after
        self.pending = 0  # entries not covered yet, but recent enough on a live archive
        self.lines: list[bytes] = []
        self.parsed: list[dict[str, Any] | None] = []
        self.names: list[str] = []  # how findings name the line at each position
        self.order: list[int] = []  # line position of entry 0, 1, 2, ...
        self.tree = MerkleTree()
        self.latest: dict[str, Any] | None = None
        self.latest_root_ok = False
        self.authenticated = 0  # entries 0..authenticated-1 are under a verified, matching root
        self.broken: list[bool] = []
        self.first_mismatch: tuple[int, int, str] | None = None  # (matching size below, size, sth item)
        self.entries = 0  # lines of entries.jsonl (without a torn last line)
        self.read_bytes = 0
        self.sths = 0  # lines of sth.jsonl
        self.tree_size = 0  # of the latest valid signed tree head
        self.root_hash = ""
        self.segments = 0  # segment_sealed entries
        self.segments_proven = 0  # of those, inclusion proofs checked against the latest tree head
        self.snapshots = 0  # snapshot_sealed entries
        self.snapshots_proven = 0  # of those, inclusion proofs checked against the latest tree head
        self.operator_actions = 0  # operator_action entries (the operators' audit trail)

    def run(self) -> None:
        """Every check but the files'; tree heads are read before the entries they cover."""
        sth_path = self.archive / STH_FILE
        sth_lines, sth_torn = read_lines(sth_path) if sth_path.is_file() else ([], None)
        self.load_entries()
        self.link_chain()
        self.check_sths(sth_lines, sth_torn)
        self.report_chain()
        self.localize_root_mismatch()
        self.check_coverage()

    # -- entries --

    def load_entries(self) -> None:
        r = self.report
        path = self.archive / ENTRIES_FILE
        if not path.is_file():
            r.fail("missing", ENTRIES_FILE, "the archive has no ledger")
            return
        self.lines, torn = read_lines(path)
        self.read_bytes = sum(len(x) + 1 for x in self.lines)  # where a re-read for late entries starts
        n = len(self.lines)
        self.entries = n
        if torn is not None:
            # Named by the index it carries when that much of it was written, else by its position.
            carried = re.search(rb'"index":(\d+)', torn)
            item = f"entry {int(carried.group(1)) if carried else n}"
            r.fail("bad_entry", item, f"line {n + 1} has no newline at its end: a write torn by a crash "
                   "(the server cuts it off at its next start) or an altered file; it is not counted")
        self.parsed = []
        for p, line in enumerate(self.lines):
            entry, problem = _entry_problem(line)
            self.parsed.append(entry)
            if problem:
                r.fail("bad_entry", f"entry {p}", f"line {p + 1}: {problem}")
        indices = [e["index"] if e is not None else p for p, e in enumerate(self.parsed)]
        counts = Counter(indices)
        self.names = [f"entry {i}" if counts[i] == 1 else f"entry {p}" for p, i in enumerate(indices)]
        if sorted(indices) == list(range(n)):
            # A permutation: check content in index order and name each line that moved.
            self.order = [0] * n
            for p, i in enumerate(indices):
                self.order[i] = p
                if i != p:
                    r.fail("out_of_order", f"entry {i}", f"found at line {p + 1}, belongs at line {i + 1}")
        else:
            self.order = list(range(n))
            for i in sorted(set(range(n)) - set(indices)):
                r.fail("missing", f"entry {i}", "no line of the ledger has this index (a line was removed?)")
            for i, c in sorted(counts.items()):
                if c > 1:
                    where = ", ".join(str(p + 1) for p, j in enumerate(indices) if j == i)
                    r.fail("bad_entry", f"entry {i}", f"index {i} appears on lines {where}")
            for p in range(1, n):
                if indices[p] < indices[p - 1]:
                    r.fail("out_of_order", f"entry {indices[p]}", f"line {p + 1} comes after entry {indices[p - 1]}")
        for p in self.order:
            self.tree.append(leaf_hash(self.lines[p]))

    def link_chain(self) -> None:
        """Find the broken ``prev`` links (in index order); reported by :meth:`report_chain`."""
        r = self.report
        n = len(self.order)
        self.broken = broken = [False] * (n + 1)  # broken[k]: entry k's prev is not entry k-1's hash
        last_time = ""
        for k, p in enumerate(self.order):
            e = self.parsed[p]
            if e is None:
                continue
            if e["time"] < last_time:
                r.warn("time_backwards", self.names[p], f"time {e['time']} is before the previous entry's {last_time}")
            last_time = max(last_time, e["time"])
            if k == 0:
                if e["prev"] != "":
                    r.fail("chain_broken", self.names[p], "the first entry's prev must be empty")
            elif self.parsed[self.order[k - 1]] is not None:
                broken[k] = e["prev"] != self.tree.leaf(k - 1).hex()

    def report_chain(self) -> None:
        """Name the altered entry behind each broken link.

        One altered line k breaks link k+1 (its hash changed); if its ``prev`` changed, link k too.
        So two adjacent broken links name the entry between them, and a lone broken link names the
        entry before it, unless a verified tree head vouches for that one. A lone break at the last
        entry is ambiguous without such a tree head, and both candidates are named.
        """
        r, broken, n = self.report, self.broken, len(self.order)
        k = 1
        while k < n:
            if not broken[k]:
                k += 1
                continue
            here, before = self.names[self.order[k]], self.names[self.order[k - 1]]
            if broken[k + 1]:
                r.fail("chain_broken", here, f"altered: its prev does not match the hash of {before} and its "
                       f"hash does not match the prev of {self.names[self.order[k + 1]]}")
                k += 2
                continue
            if k == n - 1 and k - 1 >= self.authenticated:
                r.fail("chain_broken", before, f"its hash does not match the prev of {here}, the last entry: "
                       f"{before} or the prev of {here} was altered")
                r.fail("chain_broken", here, f"its prev does not match the hash of {before}: "
                       f"{before} or the prev of {here} was altered")
            elif k - 1 < self.authenticated:
                r.fail("chain_broken", here, f"altered: its prev does not match the hash of {before}, "
                       "which a signed tree head authenticates")
            else:
                r.fail("chain_broken", before, f"altered: its hash does not match the prev recorded by {here}")
            k += 1

    # -- signed tree heads --

    def check_sths(self, lines: list[bytes], torn: bytes | None) -> None:
        r = self.report
        self.sths = len(lines)
        if torn is not None:
            r.fail("bad_entry", f"sth line {len(lines) + 1}", "no newline at its end: a write torn by a crash "
                   "(the server cuts it off at its next start) or an altered file")
        if self.key is None:
            if lines:
                r.fail("bad_signature", STH_FILE, "no usable public key: no tree head can be checked")
            return
        kid = key_id(self.key)
        prev_size = reported_missing = 0
        for n, line in enumerate(lines, 1):
            item = f"sth line {n}"
            sth, problem = _sth_problem(line)
            if sth is None:
                r.fail("bad_entry", item, str(problem))
                continue
            if sth["key_id"] != kid:
                r.fail("bad_signature", item,
                       f"signed by key id {sth['key_id'][:16]}…, not the archive key {kid[:16]}…")
                continue
            if not verify_sth_signature(sth, self.key):
                r.fail("bad_signature", item, "the Ed25519 signature does not verify")
                continue
            size = sth["tree_size"]
            if size < prev_size:
                r.fail("out_of_order", item, f"tree size {size} is smaller than an earlier tree head's {prev_size}")
            prev_size = max(prev_size, size)
            self.latest = sth
            if size > self.tree.size:
                if size > reported_missing:
                    r.fail("missing", _span(max(self.tree.size, reported_missing), size - 1),
                           f"signed into the tree by {item} but absent from the ledger (it was cut short)")
                    reported_missing = size
                self.latest_root_ok = False
                continue
            ok = self.tree.root(size).hex() == sth["root_hash"]
            self.latest_root_ok = ok
            if ok:
                self.authenticated = max(self.authenticated, size)
            else:
                if self.first_mismatch is None or size < self.first_mismatch[1]:
                    self.first_mismatch = (self.authenticated if self.authenticated < size else 0, size, item)
                r.fail("root_mismatch", item, f"the Merkle root of the first {size} entries is not the signed "
                       "root: an entry it covers was altered, removed or inserted")
        if self.latest is not None:
            self.tree_size, self.root_hash = self.latest["tree_size"], self.latest["root_hash"]

    def localize_root_mismatch(self) -> None:
        """When the chain is intact across the entries between the last matching root (a) and the
        first mismatching one (b), only entry b-1 can have changed on its own (every earlier one's
        hash is pinned by its successor's prev): name it."""
        if self.first_mismatch is None:
            return
        a, b, item = self.first_mismatch
        span = self.order[a:b]
        if all(self.parsed[p] is not None for p in span) and not any(self.broken[a + 1:b]):
            self.report.fail("altered", self.names[self.order[b - 1]],
                             f"the chain is intact but {item} no longer matches the entries it covers: this entry, "
                             "the last it covers, was altered (and possibly earlier ones, with their prev fields "
                             "rewritten)")

    def check_coverage(self) -> None:
        r = self.report
        covered = self.latest["tree_size"] if self.latest else 0
        if self.key is None or covered >= self.tree.size:
            return
        first_pending = self.tree.size
        if self.pending_after is not None:
            # On a live archive the newest entries wait for the next signature: those appended
            # within the signing interval are pending, any older one is a failure.
            first_pending = covered
            for k in range(self.tree.size - 1, covered - 1, -1):
                e = self.parsed[self.order[k]]
                if e is None or e["time"] < self.pending_after:
                    first_pending = k + 1
                    break
        if covered < first_pending:
            r.fail("uncovered", _span(covered, first_pending - 1),
                   "not covered by the latest signed tree head: appended after the last signature (the server "
                   "signs within archive.sign_interval_s and at shutdown) or added afterwards")
        if first_pending < self.tree.size:
            self.pending = self.tree.size - first_pending
            r.warn("pending", _span(first_pending, self.tree.size - 1),
                   f"appended since the last tree head, after {self.pending_after}: the running server signs them "
                   "within archive.sign_interval_s (dispatch-audit verify --fresh asks it to sign now)")

    # -- what the ledger says exists --

    def _proven(self, i: int, name: str) -> bool:
        """True if entry ``i`` (covered by the latest tree head, whose root matched) has a valid
        inclusion proof; a failing proof is reported. False when there is nothing to prove against."""
        if self.latest is None or not self.latest_root_ok or i >= self.latest["tree_size"]:
            return False
        size = self.latest["tree_size"]
        proof = self.tree.inclusion_proof(i, size)
        if verify_inclusion(self.tree.leaf(i), i, size, proof, bytes.fromhex(self.latest["root_hash"])):
            return True
        self.report.fail("not_included", name, "its inclusion proof does not verify against the latest tree head")
        return False

    def _named_exports(self, i: int, name: str, d: dict[str, Any], named: NamedFiles) -> None:
        """An ``exported`` entry names the export and the package under ``exports/<request_id>/``."""
        rid = d.get("request_id")
        files = [(d.get("export_path"), d.get("export_sha256"), d.get("export_bytes")),
                 (d.get("package_path"), d.get("package_sha256"), d.get("package_bytes"))]
        for rel, sha, size in files:
            if not (isinstance(rid, str) and isinstance(rel, str) and _EXPORT_PATH.match(rel)
                    and rel.split("/")[1] == rid and isinstance(sha, str) and _HEX64.match(sha)
                    and isinstance(size, int) and not isinstance(size, bool) and size >= 0):
                self.report.fail("bad_entry", name, "exported needs request_id and, for the export and the package, "
                                 "a path exports/<request_id>/<file>, its sha256 and bytes")
                return
        for rel, sha, size in files:
            named.exports[str(rel)] = (i, str(sha), int(size or 0))  # a later export of the request replaces it

    def named_files(self) -> NamedFiles:
        """Walk the entries for sealed, deleted and closed files and stills; check each sealed
        segment's and still's inclusion proof and that the last ``key_created`` entry names the key
        in use."""
        r = self.report
        named = NamedFiles()
        sealed, deleted, closed, stills = named.sealed, named.deleted, named.closed, named.stills
        key_ids: list[tuple[int, str]] = []
        last_seq = 0  # of the operators' audit trail (operator_action entries): strictly increasing
        for i, p in enumerate(self.order):
            e = self.parsed[p]
            if e is None:
                continue
            d, name = e["data"], self.names[p]
            if e["type"] == "recording_opened" and isinstance(d.get("recording_id"), str):
                named.opened.add(d["recording_id"])
            elif e["type"] == "segment_sealed":
                self.segments += 1
                rel = d.get("path")
                if not (isinstance(rel, str) and _SEGMENT_PATH.match(rel) and ".." not in rel.split("/")
                        and rel.split("/")[1] == d.get("recording_id")
                        and isinstance(d.get("sha256"), str) and _HEX64.match(d["sha256"])
                        and isinstance(d.get("bytes"), int) and not isinstance(d["bytes"], bool) and d["bytes"] >= 0):
                    r.fail("bad_entry", name, "segment_sealed needs path recordings/<recording_id>/<file> (of its own "
                           "recording_id), sha256 and bytes")
                    continue
                if rel in sealed and rel not in deleted:
                    r.fail("bad_entry", name, f"{rel} was already sealed by entry {sealed[rel][0]}")
                sealed[rel] = (i, d)
                deleted.pop(rel, None)
                self.segments_proven += self._proven(i, name)
            elif e["type"] == SNAPSHOT_SEALED:
                self.snapshots += 1
                rel = d.get("path")
                if not (isinstance(rel, str) and SNAPSHOT_PATH_RE.match(rel)
                        and rel.rsplit("/", 1)[-1] == f"{d.get('snapshot_id')}.jpg"
                        and isinstance(d.get("sha256"), str) and _HEX64.match(d["sha256"])
                        and isinstance(d.get("bytes"), int) and not isinstance(d["bytes"], bool) and d["bytes"] >= 0):
                    r.fail("bad_entry", name, "snapshot_sealed needs path snapshots/<YYYYMMDD>/<snapshot_id>.jpg, "
                           "sha256 and bytes")
                    continue
                if rel in stills:
                    r.fail("bad_entry", name, f"{rel} was already sealed by entry {stills[rel][0]}")
                stills[rel] = (i, d)
                self.snapshots_proven += self._proven(i, name)
            elif e["type"] == "segment_deleted":
                rel = d.get("path")
                if rel not in sealed or rel in deleted:
                    r.fail("bad_entry", name, f"deletes {rel!r}, which no earlier entry sealed")
                    continue
                first = sealed[rel][1]
                if d.get("sha256") != first["sha256"] or d.get("recording_id") != first["recording_id"]:
                    r.fail("bad_entry", name, f"the sha256 or recording_id of the deleted {rel} differs from entry "
                           f"{sealed[rel][0]}'s")
                deleted[rel] = i
            elif e["type"] == "recording_closed":
                rid, sha = d.get("recording_id"), d.get("metadata_sha256")
                if not (isinstance(rid, str) and rid not in ("", ".", "..") and "/" not in rid
                        and isinstance(sha, str) and _HEX64.match(sha)):
                    r.fail("bad_entry", name, "recording_closed needs recording_id and metadata_sha256")
                    continue
                closed[rid] = (i, sha)
            elif e["type"] == "key_created" and isinstance(d.get("key_id"), str):
                key_ids.append((i, d["key_id"]))
            elif e["type"] == "operator_action":
                self.operator_actions += 1
                seq = d.get("seq")
                if not (isinstance(seq, int) and not isinstance(seq, bool) and isinstance(d.get("verb"), str)
                        and isinstance(d.get("subject"), str)):
                    r.fail("bad_entry", name, "operator_action needs seq, verb and subject")
                    continue
                if seq <= last_seq:
                    r.fail("bad_entry", name, f"operator action {seq} does not follow {last_seq}: the audit trail "
                           "is written in order, each row once")
                last_seq = max(last_seq, seq)
            elif e["type"] == "exported" and e["outcome"] == "ok" and "package_path" in d:
                self._named_exports(i, name, d, named)
            elif e["type"] == "audit_gap":
                r.warn("audit_gap", name, f"audit rows {d.get('from_seq')}..{d.get('to_seq')} were deleted from the "
                       "server's database before they reached the ledger")
        kid = key_id(self.key) if self.key is not None else ""
        if key_ids and kid and key_ids[-1][1] != kid:
            r.fail("bad_key", PUBLIC_KEY_FILE, f"entry {key_ids[-1][0]} records the creation of key id "
                   f"{key_ids[-1][1][:16]}…, but the tree heads are checked with {kid[:16]}…")
        return named
