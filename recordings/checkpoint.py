"""What the server last verified of its ledger, kept outside the archive.

Whoever can write the archive can rewrite ``entries.jsonl``, re-chain every later entry and drop
the tree heads that covered the old ones: the files are then consistent with each other, and only
something kept elsewhere remembers what the ledger held. The checkpoint is that memory, next to
the signing key (``[archive] checkpoint``, by default ``<data_dir>/keys/checkpoints/``): after
every tree head the server signs, and after every start-up check, it records how many entries
were verified and their Merkle root, and how many bytes of ``sth.jsonl`` were verified with their
SHA-256. At the next start the server re-checks only what came after
(:mod:`recordings.ledger_load`), and a ledger that no longer extends the checkpoint is refused.

The file is one canonical JSON object (``docs/archive-format.md``, "Start-up check"), replaced
atomically (written to a temporary file, ``fsync``-ed, renamed, folder ``fsync``-ed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .durable import fsync_dir

FORMAT = "dispatch-ledger-checkpoint"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be read or is malformed."""


@dataclass(frozen=True)
class Checkpoint:
    """Entries ``0..entries-1`` had Merkle root ``root_hash``; the first ``sth_bytes`` bytes of
    ``sth.jsonl`` (``sth_lines`` lines, every one verified) had SHA-256 ``sth_sha256``."""

    archive: str  # the archive directory, resolved: one checkpoint file per archive
    entries: int
    root_hash: str  # hex MTH of the first ``entries`` entries ("" when entries is 0)
    sth_lines: int
    sth_bytes: int
    sth_sha256: str
    verified_at: str  # UTC ISO time of the check or the signature
    latest_sth: dict[str, Any] | None = field(default=None)
    # The server stopped cleanly right after this checkpoint (its final tree head covers every
    # entry): nothing may follow in entries.jsonl until it starts again.
    closed: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()


def default_checkpoint_path(keys_dir: Path, archive_dir: Path) -> Path:
    """``<keys_dir>/checkpoints/<first 16 hex digits of SHA-256 of the resolved archive path>.json``:
    nodes sharing a data directory keep one checkpoint per archive."""
    name = hashlib.sha256(str(Path(archive_dir).resolve()).encode()).hexdigest()[:16]
    return Path(keys_dir) / "checkpoints" / f"{name}.json"


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``; None when there is none. :class:`CheckpointError` when it is
    unreadable or malformed (the caller refuses: it cannot tell what was verified)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
            raise ValueError("not a ledger checkpoint")
        cp = Checkpoint(**doc)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    ints = (cp.entries, cp.sth_lines, cp.sth_bytes)
    if not isinstance(cp.closed, bool):
        raise CheckpointError(f"checkpoint {path}: malformed")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in ints) \
            or not _HEX64.match(cp.sth_sha256) or not (cp.root_hash == "" or _HEX64.match(cp.root_hash)):
        raise CheckpointError(f"checkpoint {path}: malformed")
    return cp


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint durably; creates its folder (mode 0700) when needed."""
    path = Path(path)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, mode=0o700)
        fsync_dir(path.parent.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(checkpoint.to_json() + b"\n")
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
