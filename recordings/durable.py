"""Making files durable and hashing them: the few disk primitives every archive module shares."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

HASH_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a file created or renamed in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex SHA-256 and size of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT (also when a library reports it only in its message)."""
    code = getattr(exc, "errno", None)
    return code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
