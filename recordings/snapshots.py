"""Stills in the evidence archive: a JPEG from a unit's camera, sealed, hashed and ledgered.

A still is written as ``snapshots/<YYYYMMDD>/<snapshot_id>.jpg.part`` (one write, ``fsync``,
``fsync`` of the directory), then its ``snapshot_sealed`` entry is appended to the ledger, then
the file is renamed to ``<snapshot_id>.jpg`` and the directory ``fsync``-ed again. The ledger
append is the commit point: a file under its final name is always one the ledger names, and
the uploader is told the still is stored only once the entry is on disk.

What a crash leaves, and what :func:`recover_snapshots` does with it at the next start:

- a ``.part`` no entry names (killed before the append): the upload was never acknowledged, so
  the file is removed, as an upload cut off mid-body would be; the uploader saw an error;
- a ``.part`` an entry names (killed between the append and the rename): its bytes were
  ``fsync``-ed before the entry was written, so it is renamed to the name the entry gives, once
  its SHA-256 and size are checked against the entry.

When the write or the append fails (disk full: ENOSPC), the ``.part`` is removed and
:class:`SnapshotError` raised: nothing partial stays behind. Every function here blocks on disk
I/O; async callers run them in a thread.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utctime import iso_millis

from .durable import fsync_dir, is_disk_full, sha256_file
from .ledger import LedgerWriteError
from .ledger_spool import LedgerWriter

logger = logging.getLogger(__name__)

SNAPSHOTS_DIR = "snapshots"
ENTRY_TYPE = "snapshot_sealed"
CONTENT_TYPE = "image/jpeg"
JPEG_MAGIC = b"\xff\xd8\xff"  # SOI marker and the first byte of the next marker
SUFFIX = ".jpg"
PART = ".part"
SNAPSHOT_ID_RE = re.compile(r"^snap-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
SNAPSHOT_PATH_RE = re.compile(r"^snapshots/[0-9]{8}/snap-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.jpg$")


class SnapshotError(Exception):
    """A still could not be stored; nothing of it is left in the archive. ``disk_full`` tells
    ENOSPC/EDQUOT (of the file or of the ledger) apart from other faults."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True)
class StillInfo:
    """What the archive records with a still besides its bytes. ``taken_at`` is the device's
    clock (POSIX seconds, may be wrong or absent); the archive adds its own ``received_at``."""

    unit_id: str
    action_id: str | None
    case_number: str | None
    instruction_id: str | None
    taken_at: float | None


def new_snapshot_id(now: float) -> str:
    return f"snap-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{secrets.token_hex(4)}"


def snapshot_path(snapshot_id: str, received_at: float) -> str:
    """Archive-relative path of a still: filed under the UTC day it was received."""
    return f"{SNAPSHOTS_DIR}/{time.strftime('%Y%m%d', time.gmtime(received_at))}/{snapshot_id}{SUFFIX}"


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def _write_part(part: Path, data: bytes) -> None:
    """Write ``part`` durably; if that fails, nothing of it is left. A file of that name that
    already exists is never touched (``FileExistsError``)."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(part.parent)
    except OSError:
        _discard(part)
        raise


def _make_dirs(root: Path, day_dir: Path) -> None:
    """Create ``snapshots/`` and the day's folder, each made durable in its parent."""
    for d in (root / SNAPSHOTS_DIR, day_dir):
        if not d.is_dir():
            d.mkdir(exist_ok=True)
            fsync_dir(d.parent)


def _discard(part: Path) -> None:
    try:
        part.unlink(missing_ok=True)
        fsync_dir(part.parent)
    except OSError as exc:  # recovery removes it at the next start
        logger.error("still %s not removed after a failed seal: %s", part, exc)


def seal_snapshot(root: Path, ledger: LedgerWriter, info: StillInfo, jpeg: bytes, now: float, *,
                  actor: str, where: str) -> dict[str, Any]:
    """Store ``jpeg`` durably under the archive ``root`` and append its ``snapshot_sealed``
    entry; returns the entry's ``data``. ``now`` (POSIX seconds) is ``received_at``.

    Raises ``ValueError`` (nothing written) if ``jpeg`` is not a JPEG, and
    :class:`SnapshotError` (nothing left behind) if the disk or the ledger refuses it.
    """
    if not is_jpeg(jpeg):
        raise ValueError("not a JPEG: the data does not start with FF D8 FF")
    snapshot_id = new_snapshot_id(now)
    rel = snapshot_path(snapshot_id, now)
    final = root / rel
    part = final.with_name(final.name + PART)
    try:
        _make_dirs(root, final.parent)
        _write_part(part, jpeg)
    except OSError as exc:
        raise SnapshotError(f"the still could not be written to the archive: {exc}",
                            disk_full=is_disk_full(exc)) from exc
    data: dict[str, Any] = {
        "snapshot_id": snapshot_id, "path": rel, "sha256": hashlib.sha256(jpeg).hexdigest(), "bytes": len(jpeg),
        "unit_id": info.unit_id, "action_id": info.action_id, "case_number": info.case_number,
        "instruction_id": info.instruction_id,
        "taken_at": iso_millis(info.taken_at) if info.taken_at is not None else None,
        "received_at": iso_millis(now), "content_type": CONTENT_TYPE,
    }
    try:
        ledger.append(ENTRY_TYPE, actor=actor, where=where, data=data)
    except Exception as exc:  # LedgerWriteError (ENOSPC) or any other refusal: not committed
        _discard(part)
        full = isinstance(exc, LedgerWriteError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise SnapshotError(f"the evidence ledger refused the still: {exc}", disk_full=full) from exc
    try:
        os.rename(part, final)
        fsync_dir(final.parent)
    except OSError as exc:  # committed: the ledger names it and recovery renames it at the next start
        logger.error("still %s is in the ledger but not renamed (%s); the next start completes it", rel, exc)
    return data


def recover_snapshots(root: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Complete or remove what a crash left under ``snapshots/`` (see the module docstring);
    ``entries`` are the whole ledger's. Returns one note per file handled."""
    base = root / SNAPSHOTS_DIR
    if not base.is_dir():
        return []
    named = {e["data"]["path"]: e["data"] for e in entries
             if e.get("type") == ENTRY_TYPE and isinstance(e.get("data"), dict)
             and isinstance(e["data"].get("path"), str)}
    notes: list[str] = []
    for part in sorted(base.glob(f"*/*{SUFFIX}{PART}")):
        final = part.with_name(part.name.removesuffix(PART))
        rel = final.relative_to(root).as_posix()
        sealed = named.get(rel)
        if sealed is None:
            part.unlink()
            fsync_dir(part.parent)
            notes.append(f"{rel}{PART}: a still the ledger never recorded (its upload was not acknowledged); removed")
            continue
        if final.exists():
            part.unlink()
            fsync_dir(part.parent)
            notes.append(f"{rel}{PART}: leftover of a sealed still; removed")
            continue
        digest, size = sha256_file(part)
        if (digest, size) != (sealed.get("sha256"), sealed.get("bytes")):
            notes.append(f"{rel}{PART}: SHA-256 or size differs from the ledger's; left for dispatch-audit verify")
            continue
        os.rename(part, final)
        fsync_dir(final.parent)
        notes.append(f"{rel}: sealed in the ledger before the crash; renamed to its final name")
    return notes
