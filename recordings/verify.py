"""Offline verifier of an evidence archive: needs only the archive directory and the public key.

:func:`verify_archive` checks the ledger (:mod:`recordings.ledger_check`: every line, the hash
chain, every signed tree head, an RFC 9162 inclusion proof for every sealed segment and still),
then every file under ``recordings/`` and ``snapshots/`` the ledger names
(:mod:`recordings.archive_files`: present, size and SHA-256, nothing else there), and reports each
finding by kind and item. What each finding means is in
``docs/archive-format.md`` ("Verifying an archive"). Nothing here imports the server.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import iso_millis

from .archive_files import Progress, hash_files, hash_jobs
from .findings import Findings
from .known_heads import KnownHead, check_known_heads
from .ledger import ENTRIES_FILE, PUBLIC_KEY_FILE, key_id, load_public_key
from .ledger_check import LedgerCheck, late_paths
from .live_check import ledger_in_use

SIGN_SLACK_S = 5.0  # on top of sign_interval_s: the signing itself, a busy disk
SEAL_SLACK_S = 30.0  # a segment's last write to its entry: finalising, fsync and hashing a segment


class ArchiveNotFoundError(Exception):
    """The directory given is not an evidence archive."""


@dataclass
class Report(Findings):
    archive: str = ""
    entries: int = 0  # lines of entries.jsonl (without a torn last line)
    segments: int = 0  # segment_sealed entries
    segments_proven: int = 0  # of those, inclusion proofs checked against the latest tree head
    snapshots: int = 0  # snapshot_sealed entries (stills)
    snapshots_proven: int = 0  # of those, inclusion proofs checked against the latest tree head
    operator_actions: int = 0  # operator_action entries (the operators' audit trail)
    files_hashed: int = 0
    bytes_hashed: int = 0
    sths: int = 0  # lines of sth.jsonl
    tree_size: int = 0  # of the latest valid signed tree head
    root_hash: str = ""
    key_id: str = ""
    key_pinned: bool = False
    live: bool = False  # a server was writing the archive while it was checked
    pending: int = 0  # entries newer than the latest tree head, within the signing interval (live only)
    known_heads: int = 0  # tree heads kept elsewhere (--known-head) checked against the ledger
    known_heads_proven: int = 0  # of those, proven to be extended by the ledger
    seconds: float = 0.0


def _load_key(archive: Path, r: Report, pinned_pem: bytes | None) -> Ed25519PublicKey | None:
    """The key tree heads are checked with: the pinned one, else the archive's own."""
    key: Ed25519PublicKey | None
    try:
        archive_pem: bytes | None = (archive / PUBLIC_KEY_FILE).read_bytes()
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
        key = load_public_key(pinned_pem)  # ValueError: a usage error of the caller
        r.key_pinned = True
        if archive_pem is None:
            r.fail("missing", PUBLIC_KEY_FILE, "the archive has no public key")
        elif archive_key is not None and key_id(archive_key) != key_id(key):
            r.fail("bad_key", PUBLIC_KEY_FILE,
                   f"key id {key_id(archive_key)[:16]}… is not the pinned key {key_id(key)[:16]}…")
    else:
        key = archive_key
        if archive_pem is None:
            r.fail("missing", PUBLIC_KEY_FILE, "the archive has no public key; tree heads cannot be checked")
        r.warn("unpinned_key", PUBLIC_KEY_FILE, "the key was taken from the archive itself; pin the key "
               "you received separately (--public-key) to detect a re-signed archive")
    if key is not None:
        r.key_id = key_id(key)
    return key


def default_workers() -> int:
    return max(2, min(4, os.cpu_count() or 1))


UNANCHORED = ("neither the court's public key (--public-key) nor a tree head kept elsewhere (--known-head: an "
              "auditor's copy, a party's package, a witness) was given, so a fully re-signed archive would pass too")


def verify_archive(archive_dir: Path, public_key_pem: bytes | None = None, progress: Progress | None = None,
                   *, workers: int | None = None, known_heads: list[KnownHead] | None = None,
                   allow_unanchored: bool = False, live: bool | None = None, sign_interval_s: float = 60.0,
                   now: float | None = None) -> Report:
    """Check the archive at ``archive_dir``; ``public_key_pem`` pins the key that must have signed it.

    ``known_heads`` (tree heads kept outside the archive) must each be extended by the ledger
    (:mod:`recordings.known_heads`). With neither a pinned key nor known heads nothing outside the
    archive anchors the check: that is an ``unanchored`` failure, or only a warning with
    ``allow_unanchored``.

    ``progress(bytes_hashed, bytes_total)`` is called from this thread while files are hashed
    on ``workers`` threads (default: :func:`default_workers`). Raises
    :class:`ArchiveNotFoundError` if the directory is not an archive and ``ValueError`` if the
    pinned key is not an Ed25519 public key; everything wrong *inside* the archive is a finding.
    """
    archive = Path(archive_dir)
    if not archive.is_dir():
        raise ArchiveNotFoundError(f"{archive}: not a directory")
    if not (archive / "ledger").is_dir():
        raise ArchiveNotFoundError(f"{archive}: no ledger/ directory; is this an evidence archive?")
    t0 = time.monotonic()
    report = Report(archive=str(archive))
    report.live = ledger_in_use(archive / ENTRIES_FILE) if live is None else live
    clock = time.time() if now is None else now
    pending_after = clock - sign_interval_s - SIGN_SLACK_S
    fresh_after = clock - SEAL_SLACK_S
    key = _load_key(archive, report, public_key_pem)
    if public_key_pem is None and not known_heads:
        if allow_unanchored:
            report.warn("unanchored", "archive", UNANCHORED)
        else:
            report.fail("unanchored", "archive", UNANCHORED + "; pass --allow-unanchored to accept that")
    ledger = LedgerCheck(archive, report, key, iso_millis(pending_after) if report.live else None)
    ledger.run()
    report.pending = ledger.pending
    if known_heads:
        report.known_heads = len(known_heads)
        report.known_heads_proven = check_known_heads(known_heads, ledger.tree, ledger.latest, key, report)
    named = ledger.named_files()
    report.entries, report.sths = ledger.entries, ledger.sths
    report.tree_size, report.root_hash = ledger.tree_size, ledger.root_hash
    report.segments, report.segments_proven = ledger.segments, ledger.segments_proven
    report.snapshots, report.snapshots_proven = ledger.snapshots, ledger.snapshots_proven
    report.operator_actions = ledger.operator_actions
    jobs = hash_jobs(archive, named, report, fresh_after if report.live else None,
                     lambda: late_paths(archive, ledger.read_bytes))
    report.files_hashed, report.bytes_hashed = hash_files(archive, jobs, report, progress,
                                                          workers or default_workers())
    report.seconds = round(time.monotonic() - t0, 3)
    return report
