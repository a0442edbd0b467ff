"""The files half of the archive verifier: every file the ledger names, found and hashed.

Segments, ``recording.json`` files and stills the ledger vouches for
(:class:`~recordings.ledger_check.NamedFiles`) must be on disk with the size and SHA-256 it
records, unless a ``segment_deleted`` entry says a segment is gone; every other file under
``recordings/`` or ``snapshots/`` is ``extra`` (``*.part`` leftovers and metadata of unclosed
recordings are warnings). On a live archive (a server writes it now) the server is at work:
``*.part`` files of open recordings, stills and exports being built, files that entries appended
during the check name (``late``), and a new segment of an open recording written after
``fresh_after`` are ``in_progress``, not a problem; any other file the ledger does not name is
``extra`` as on a stopped archive. Files are hashed on worker threads in batches:
hashlib releases the GIL on big updates, so several cores share the work.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .findings import Findings
from .ledger import RECORDINGS_DIR
from .ledger_check import NamedFiles
from .snapshots import PART, SNAPSHOTS_DIR

_SEGMENT_NAME = re.compile(r"^[0-9]{6}\.(webm|mkv)$")
EXPORTS_DIR = "exports"  # export packages for parties: exports/<request_id>/ (docs/archive-format.md)

READ_SIZE = 1 << 20  # bytes per read while hashing; hashlib releases the GIL on updates this big
BATCH_BYTES = 32 << 20  # files are handed to the hashing threads in batches of about this size
BATCH_FILES = 256  # or this many files

Progress = Callable[[int, int], None]
"""``progress(bytes_hashed, bytes_total)``, called from the calling thread after each file."""


@dataclass
class HashJob:
    """A file to hash and what the ledger says it must be."""

    rel: str  # archive-relative path
    sha256: str
    size: int | None  # expected bytes; None when the ledger does not say (recording.json)
    source: str  # "entry <i>" that names the file
    found: int  # bytes of the file on disk


def _fresh(path: str, fresh_after: float | None) -> bool:
    """Written at or after ``fresh_after`` (None: the archive is not live)."""
    if fresh_after is None:
        return False
    try:
        return os.stat(path).st_mtime >= fresh_after
    except OSError:
        return True  # gone meanwhile: sealed or removed by the running server


def hash_jobs(archive: Path, named: NamedFiles, findings: Findings, fresh_after: float | None = None,
              late: Callable[[], set[str]] = set) -> list[HashJob]:
    """The files to hash; what is missing, still present after deletion or not named by the
    ledger at all goes into ``findings``. ``fresh_after`` (epoch seconds) is given for a live
    archive, and ``late()`` then names the files of entries appended since the ledger was read:
    see the module docstring."""
    r = findings
    live = fresh_after is not None
    late_names: set[str] | None = None

    def sealed_meanwhile(rel: str) -> bool:
        nonlocal late_names
        if not live:
            return False
        if late_names is None:
            late_names = late()
        return rel in late_names
    sealed, deleted, closed = named.sealed, named.deleted, named.closed
    jobs: list[HashJob] = []
    for rel, (i, d) in sealed.items():
        found = _size_of(archive, rel)
        if rel in deleted:
            if found is not None:
                r.warn("not_deleted", rel, f"entry {deleted[rel]} records its deletion but the file is present")
        elif found is not None:
            jobs.append(HashJob(rel, d["sha256"], d["bytes"], f"entry {i}", found))
        else:
            r.fail("missing", rel, f"sealed by entry {i} and not deleted by any entry")
    with_segments = {rel.split("/")[1] for rel in sealed if rel not in deleted}
    for rid, (i, sha) in closed.items():
        rel = f"{RECORDINGS_DIR}/{rid}/recording.json"
        found = _size_of(archive, rel)
        if found is not None:
            jobs.append(HashJob(rel, sha, None, f"entry {i}", found))
        elif rid in with_segments:
            r.fail("missing", rel, f"its SHA-256 is in entry {i} (recording_closed)")
        else:
            r.warn("missing", rel, f"named by entry {i}; every segment of the recording was deleted")

    prefix = len(str(archive)) + 1
    for dirpath, _dirs, files in os.walk(os.path.join(archive, RECORDINGS_DIR)):
        for fname in files:
            rel = os.path.join(dirpath, fname)[prefix:].replace(os.sep, "/")
            if rel in sealed:
                continue
            parts = rel.split("/")
            if fname.endswith(".part"):
                if live and len(parts) == 3 and parts[1] in named.opened and parts[1] not in closed:
                    r.warn("in_progress", rel, "a segment the running server is writing now")
                else:
                    r.warn("unsealed", rel, "unsealed segment, run the server to recover")
            elif fname == "recording.json" and len(parts) == 3:
                if parts[1] not in closed:
                    if live:
                        r.warn("in_progress", rel, "metadata of a recording the running server is closing now")
                    else:
                        r.warn("unclosed", rel, "metadata of a recording the ledger does not show as closed")
            elif sealed_meanwhile(rel) or (len(parts) == 3 and parts[1] in named.opened and parts[1] not in closed
                                           and _SEGMENT_NAME.match(fname)
                                           and _fresh(os.path.join(dirpath, fname), fresh_after)):
                r.warn("in_progress", rel, "sealed by the running server while the ledger was being checked")
            else:
                r.fail("extra", rel, "not named by the ledger")
    _still_jobs(archive, named, findings, jobs, fresh_after, sealed_meanwhile)
    _export_jobs(archive, named, findings, jobs, fresh_after, sealed_meanwhile)
    return jobs


def _export_jobs(archive: Path, named: NamedFiles, findings: Findings, jobs: list[HashJob],
                 fresh_after: float | None, sealed_meanwhile: Callable[[str], bool]) -> None:
    """Export packages: the files ``exported`` entries name are present; nothing else is under
    ``exports/`` but folders ``<request_id>.part`` (an export being built)."""
    r = findings
    for rel, (i, sha, size) in named.exports.items():
        found = _size_of(archive, rel)
        if found is not None:
            jobs.append(HashJob(rel, sha, size, f"entry {i}", found))
        else:
            r.fail("missing", rel, f"named by entry {i} (exported)")
    prefix = len(str(archive)) + 1
    for dirpath, _dirs, files in os.walk(os.path.join(archive, EXPORTS_DIR)):
        for fname in files:
            rel = os.path.join(dirpath, fname)[prefix:].replace(os.sep, "/")
            if rel in named.exports:
                continue
            folder = rel.split("/")[1] if rel.count("/") >= 2 else ""
            if folder.endswith(PART):
                kind = "in_progress" if fresh_after is not None else "unsealed"
                r.warn(kind, rel, "an export being built (a crash leftover when no server runs: the server "
                       "removes it or completes it at its next start)")
            elif sealed_meanwhile(rel):
                r.warn("in_progress", rel, "completed by the running server while the ledger was being checked")
            else:
                r.fail("extra", rel, "not named by the ledger")


def _still_jobs(archive: Path, named: NamedFiles, findings: Findings, jobs: list[HashJob],
                fresh_after: float | None, sealed_meanwhile: Callable[[str], bool]) -> None:
    """Stills: each one the ledger names is present; nothing else is under ``snapshots/``."""
    r = findings
    for rel, (i, d) in named.stills.items():
        found = _size_of(archive, rel)
        if found is not None:
            jobs.append(HashJob(rel, d["sha256"], d["bytes"], f"entry {i}", found))
        elif _size_of(archive, rel + PART) is not None:
            r.fail("missing", rel, f"sealed by entry {i}; only its {PART} is present (the server stopped before "
                   "renaming it): start the server, whose recovery completes it")
        else:
            r.fail("missing", rel, f"sealed by entry {i}")
    prefix = len(str(archive)) + 1
    for dirpath, _dirs, files in os.walk(os.path.join(archive, SNAPSHOTS_DIR)):
        for fname in files:
            rel = os.path.join(dirpath, fname)[prefix:].replace(os.sep, "/")
            if rel in named.stills:
                continue
            if fname.endswith(PART):
                if fresh_after is not None:
                    r.warn("in_progress", rel, "a still the running server is storing now")
                else:
                    r.warn("unsealed", rel, "a still being stored, or left by a crash: run the server to recover it")
            elif sealed_meanwhile(rel):
                r.warn("in_progress", rel, "stored by the running server while the ledger was being checked")
            else:
                r.fail("extra", rel, "not named by the ledger")


def _size_of(archive: Path, rel: str) -> int | None:
    """Size of a regular file at archive-relative ``rel``, None if there is none."""
    try:
        st = os.stat(os.path.join(archive, rel))
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def hash_files(archive: Path, jobs: list[HashJob], findings: Findings, progress: Progress | None,
               workers: int) -> tuple[int, int]:
    """Hash ``jobs`` on ``workers`` threads; returns (files hashed, bytes hashed). A size or
    hash that differs from the ledger's is ``altered``, an unreadable file ``missing``."""
    r = findings
    files_hashed = bytes_hashed = 0
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
    batches: list[list[HashJob]] = [[]]
    batch_bytes = 0
    for job in todo:
        if batches[-1] and (batch_bytes >= BATCH_BYTES or len(batches[-1]) >= BATCH_FILES):
            batches.append([])
            batch_bytes = 0
        batches[-1].append(job)
        batch_bytes += job.found
    base = str(archive)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify-hash") as pool:
        futures = {pool.submit(_hash_batch, [os.path.join(base, j.rel) for j in batch]): batch
                   for batch in batches if batch}
        for future in as_completed(futures):
            for job, (digest, nbytes, error) in zip(futures[future], future.result(), strict=True):
                done += job.found
                if error is not None:
                    r.fail("missing", job.rel, f"cannot be read: {error}")
                    continue
                files_hashed += 1
                bytes_hashed += nbytes
                if digest != job.sha256:
                    r.fail("altered", job.rel,
                           f"SHA-256 {digest[:16]}… differs from {job.sha256[:16]}… in {job.source}")
            if progress:
                progress(done, total)
    return files_hashed, bytes_hashed


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
