"""Offline verifier of an evidence archive: needs only the archive directory and the public key.

It reads ``ledger/sth.jsonl`` first and ``ledger/entries.jsonl`` second (so a tree head never
covers an entry the verifier has not read), checks every line, the hash chain, every signed tree
head (signature, Merkle root, coverage), recomputes an RFC 9162 inclusion proof for every sealed
segment, and hashes every file under ``recordings/`` that the ledger names. What each finding
means is in ``docs/archive-format.md`` ("Verifying an archive"). Nothing here imports the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import parse_iso_millis

from .ledger import (
    ENTRIES_FILE,
    ENTRY_KEYS,
    OUTCOMES,
    PUBLIC_KEY_FILE,
    RECORDINGS_DIR,
    STH_FILE,
    STH_KEYS,
    canonical_json,
    key_id,
    load_public_key,
    verify_sth_signature,
)
from .merkle import MerkleTree, leaf_hash, verify_inclusion

READ_SIZE = 1 << 20  # bytes per read while hashing; hashlib releases the GIL on updates this big
BATCH_BYTES = 32 << 20  # files are handed to the hashing threads in batches of about this size
BATCH_FILES = 256  # or this many files
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEGMENT_PATH = re.compile(r"^recordings/[^/]+/[^/]+$")

Progress = Callable[[int, int], None]
"""``progress(bytes_hashed, bytes_total)``, called from the calling thread after each file."""


class ArchiveNotFoundError(Exception):
    """The directory given is not an evidence archive."""


@dataclass(frozen=True)
class Finding:
    kind: str  # missing, altered, extra, out_of_order, bad_entry, chain_broken, bad_signature, ...
    item: str  # a path under the archive, "entry <index>", "entries <a>..<b>" or "sth line <n>"
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.item}: {self.message}"


@dataclass
class Findings:
    """What a verifier found: failures (the check fails) and warnings (worth a look)."""

    failures: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, kind: str, item: str, message: str) -> None:
        self.failures.append(Finding(kind, item, message))

    def warn(self, kind: str, item: str, message: str) -> None:
        self.warnings.append(Finding(kind, item, message))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass
class Report(Findings):
    archive: str = ""
    entries: int = 0  # lines of entries.jsonl (without a torn last line)
    segments: int = 0  # segment_sealed entries
    segments_proven: int = 0  # of those, inclusion proofs checked against the latest tree head
    files_hashed: int = 0
    bytes_hashed: int = 0
    sths: int = 0  # lines of sth.jsonl
    tree_size: int = 0  # of the latest valid signed tree head
    root_hash: str = ""
    key_id: str = ""
    key_pinned: bool = False
    seconds: float = 0.0



@dataclass
class _HashJob:
    rel: str  # archive-relative path
    sha256: str
    size: int | None  # expected bytes; None when the ledger does not say (recording.json)
    source: str  # "entry <i>" that names the file
    found: int  # bytes of the file on disk


def _read_lines(path: Path) -> tuple[list[bytes], bytes | None]:
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
    if problem is None and canonical_json(entry) != line:
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
    if canonical_json(sth) != line:
        return None, "not in canonical form: not written by the ledger"
    return sth, None


def _span(a: int, b: int) -> str:
    return f"entry {a}" if a == b else f"entries {a}..{b}"


class _Verifier:
    def __init__(self, archive: Path, report: Report) -> None:
        self.archive = archive
        self.report = report
        self.key: Ed25519PublicKey | None = None
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

    # -- key --

    def load_key(self, pinned_pem: bytes | None) -> None:
        r = self.report
        try:
            archive_pem: bytes | None = (self.archive / PUBLIC_KEY_FILE).read_bytes()
        except FileNotFoundError:
            archive_pem = None
        except OSError as exc:
            archive_pem = b""
            r.fail("bad_key", PUBLIC_KEY_FILE, f"cannot be read: {exc}")
        archive_key = None
        if archive_pem:
            try:
                archive_key = load_public_key(archive_pem)
            except ValueError as exc:
                r.fail("bad_key", PUBLIC_KEY_FILE, str(exc))
        if pinned_pem is not None:
            self.key = load_public_key(pinned_pem)  # ValueError: a usage error of the caller
            r.key_pinned = True
            if archive_pem is None:
                r.fail("missing", PUBLIC_KEY_FILE, "the archive has no public key")
            elif archive_key is not None and key_id(archive_key) != key_id(self.key):
                r.fail("bad_key", PUBLIC_KEY_FILE,
                       f"key id {key_id(archive_key)[:16]}… is not the pinned key {key_id(self.key)[:16]}…")
        else:
            self.key = archive_key
            if archive_pem is None:
                r.fail("missing", PUBLIC_KEY_FILE, "the archive has no public key; tree heads cannot be checked")
            r.warn("unpinned_key", PUBLIC_KEY_FILE, "the key was taken from the archive itself; pin the key "
                   "you received separately (--public-key) to detect a re-signed archive")
        if self.key is not None:
            r.key_id = key_id(self.key)

    # -- entries --

    def load_entries(self) -> None:
        r = self.report
        path = self.archive / ENTRIES_FILE
        if not path.is_file():
            r.fail("missing", ENTRIES_FILE, "the archive has no ledger")
            return
        self.lines, torn = _read_lines(path)
        n = len(self.lines)
        r.entries = n
        if torn is not None:
            r.fail("bad_entry", f"entry {n}", f"line {n + 1} has no newline at its end: a write torn by a crash "
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
        r.sths = len(lines)
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
                r.fail("bad_signature", item, f"signed by key id {sth['key_id'][:16]}…, not the archive key {kid[:16]}…")
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
            r.tree_size, r.root_hash = self.latest["tree_size"], self.latest["root_hash"]

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
                             f"the chain is intact but {item} no longer matches the entries it covers: this entry, the "
                             "last it covers, was altered (and possibly earlier ones, with their prev fields rewritten)")

    def check_coverage(self) -> None:
        r = self.report
        covered = self.latest["tree_size"] if self.latest else 0
        if self.key is not None and covered < self.tree.size:
            r.fail("uncovered", _span(covered, self.tree.size - 1),
                   "not covered by the latest signed tree head: appended after the last signature (the server "
                   "signs within archive.sign_interval_s and at shutdown) or added afterwards")

    # -- files --

    def collect_files(self) -> list[_HashJob]:
        r = self.report
        sealed: dict[str, tuple[int, dict[str, Any]]] = {}
        deleted: dict[str, int] = {}
        closed: dict[str, tuple[int, str]] = {}
        key_ids: list[tuple[int, str]] = []
        for i, p in enumerate(self.order):
            e = self.parsed[p]
            if e is None:
                continue
            d, name = e["data"], self.names[p]
            if e["type"] == "segment_sealed":
                r.segments += 1
                rel = d.get("path")
                if not (isinstance(rel, str) and _SEGMENT_PATH.match(rel) and ".." not in rel.split("/")
                        and isinstance(d.get("sha256"), str) and _HEX64.match(d["sha256"])
                        and isinstance(d.get("bytes"), int) and d["bytes"] >= 0):
                    r.fail("bad_entry", name, "segment_sealed needs path recordings/<id>/<file>, sha256 and bytes")
                    continue
                if rel in sealed and rel not in deleted:
                    r.fail("bad_entry", name, f"{rel} was already sealed by entry {sealed[rel][0]}")
                sealed[rel] = (i, d)
                deleted.pop(rel, None)
                if self.latest is not None and self.latest_root_ok and i < self.latest["tree_size"]:
                    size = self.latest["tree_size"]
                    proof = self.tree.inclusion_proof(i, size)
                    if verify_inclusion(self.tree.leaf(i), i, size, proof, bytes.fromhex(self.latest["root_hash"])):
                        r.segments_proven += 1
                    else:
                        r.fail("not_included", name, "its inclusion proof does not verify against the latest tree head")
            elif e["type"] == "segment_deleted":
                rel = d.get("path")
                if rel not in sealed or rel in deleted:
                    r.fail("bad_entry", name, f"deletes {rel!r}, which no earlier entry sealed")
                    continue
                if d.get("sha256") != sealed[rel][1]["sha256"]:
                    r.fail("bad_entry", name, f"the sha256 of the deleted {rel} differs from entry {sealed[rel][0]}'s")
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
        if key_ids and r.key_id and key_ids[-1][1] != r.key_id:
            r.fail("bad_key", PUBLIC_KEY_FILE, f"entry {key_ids[-1][0]} records the creation of key id "
                   f"{key_ids[-1][1][:16]}…, but the tree heads are checked with {r.key_id[:16]}…")

        jobs: list[_HashJob] = []
        for rel, (i, d) in sealed.items():
            found = self._size_of(rel)
            if rel in deleted:
                if found is not None:
                    r.warn("not_deleted", rel, f"entry {deleted[rel]} records its deletion but the file is present")
            elif found is not None:
                jobs.append(_HashJob(rel, d["sha256"], d["bytes"], f"entry {i}", found))
            else:
                r.fail("missing", rel, f"sealed by entry {i} and not deleted by any entry")
        live = {rel.split("/")[1] for rel in sealed if rel not in deleted}
        for rid, (i, sha) in closed.items():
            rel = f"{RECORDINGS_DIR}/{rid}/recording.json"
            found = self._size_of(rel)
            if found is not None:
                jobs.append(_HashJob(rel, sha, None, f"entry {i}", found))
            elif rid in live:
                r.fail("missing", rel, f"its SHA-256 is in entry {i} (recording_closed)")
            else:
                r.warn("missing", rel, f"named by entry {i}; every segment of the recording was deleted")

        prefix = len(str(self.archive)) + 1
        for dirpath, _dirs, files in os.walk(os.path.join(self.archive, RECORDINGS_DIR)):
            for fname in files:
                rel = os.path.join(dirpath, fname)[prefix:].replace(os.sep, "/")
                if rel in sealed:
                    continue
                parts = rel.split("/")
                if fname.endswith(".part"):
                    r.warn("unsealed", rel, "unsealed segment, run the server to recover")
                elif fname == "recording.json" and len(parts) == 3:
                    if parts[1] not in closed:
                        r.warn("unclosed", rel, "metadata of a recording the ledger does not show as closed")
                else:
                    r.fail("extra", rel, "not named by the ledger")
        return jobs

    def _size_of(self, rel: str) -> int | None:
        """Size of a regular file at archive-relative ``rel``, None if there is none."""
        try:
            st = os.stat(os.path.join(self.archive, rel))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def hash_files(self, jobs: list[_HashJob], progress: Progress | None, workers: int) -> None:
        r = self.report
        total = sum(job.found for job in jobs)
        todo = []
        for job in jobs:
            if job.size is not None and job.found != job.size:
                r.fail("altered", job.rel, f"has {job.found} bytes, {job.source} sealed {job.size}")
            else:
                todo.append(job)
        done = total - sum(job.found for job in todo)
        if progress:
            progress(done, total)
        # Batches keep the per-task overhead small for many small files and the load even for big ones.
        batches: list[list[_HashJob]] = [[]]
        batch_bytes = 0
        for job in todo:
            if batches[-1] and (batch_bytes >= BATCH_BYTES or len(batches[-1]) >= BATCH_FILES):
                batches.append([])
                batch_bytes = 0
            batches[-1].append(job)
            batch_bytes += job.found
        base = str(self.archive)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify-hash") as pool:
            futures = {pool.submit(_hash_batch, [os.path.join(base, j.rel) for j in batch]): batch
                       for batch in batches if batch}
            for future in as_completed(futures):
                for job, (digest, nbytes, error) in zip(futures[future], future.result()):
                    done += job.found
                    if error is not None:
                        r.fail("missing", job.rel, f"cannot be read: {error}")
                        continue
                    r.files_hashed += 1
                    r.bytes_hashed += nbytes
                    if digest != job.sha256:
                        r.fail("altered", job.rel,
                               f"SHA-256 {digest[:16]}… differs from {job.sha256[:16]}… in {job.source}")
                if progress:
                    progress(done, total)


def _hash_batch(paths: list[str]) -> list[tuple[str, int, OSError | None]]:
    """(hex SHA-256, bytes read, error) per file; runs on a worker thread."""
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    out: list[tuple[str, int, OSError | None]] = []
    for path in paths:
        h = hashlib.sha256()
        n = 0
        try:
            with open(path, "rb", buffering=0) as f:
                try:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                except (AttributeError, OSError):
                    pass
                while got := f.readinto(buf):
                    h.update(view[:got])  # hashlib releases the GIL for updates over 2 KiB
                    n += got
        except OSError as exc:
            out.append(("", n, exc))
            continue
        out.append((h.hexdigest(), n, None))
    return out


def default_workers() -> int:
    return max(2, min(4, os.cpu_count() or 1))


def verify_archive(archive_dir: Path, public_key_pem: bytes | None = None, progress: Progress | None = None,
                   *, workers: int | None = None) -> Report:
    """Check the archive at ``archive_dir``; ``public_key_pem`` pins the key that must have signed it.

    Raises :class:`ArchiveNotFoundError` if the directory is not an archive and ``ValueError`` if
    the pinned key is not an Ed25519 public key; everything wrong *inside* the archive is a finding.
    """
    archive = Path(archive_dir)
    if not archive.is_dir():
        raise ArchiveNotFoundError(f"{archive}: not a directory")
    if not (archive / "ledger").is_dir():
        raise ArchiveNotFoundError(f"{archive}: no ledger/ directory; is this an evidence archive?")
    t0 = time.monotonic()
    report = Report(archive=str(archive))
    v = _Verifier(archive, report)
    v.load_key(public_key_pem)
    sth_path = archive / STH_FILE
    sth_lines, sth_torn = _read_lines(sth_path) if sth_path.is_file() else ([], None)
    v.load_entries()
    v.link_chain()
    v.check_sths(sth_lines, sth_torn)
    v.report_chain()
    v.localize_root_mismatch()
    v.check_coverage()
    v.hash_files(v.collect_files(), progress, workers or default_workers())
    report.seconds = round(time.monotonic() - t0, 3)
    return report
