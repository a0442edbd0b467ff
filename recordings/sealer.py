"""A recording's durable work, on its own thread, in the order the writer hands it over.

Sealing a segment (fsync, rename to its final name, fsync of the directory, hash), its
``segment_sealed`` entry, ``gap`` entries, and at the end ``recording.json`` and
``recording_closed`` all run on one thread per recording, so a slow disk never holds up muxing
(the recording's frame queue absorbs what muxing cannot take) and the ledger lists a
recording's entries in the order they happened.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from utctime import iso_millis

from .gaps import gap_entry
from .ledger_spool import LedgerSpool
from .metadata import write_metadata
from .recording_info import RecordingInfo, RecordingStats
from .segment import SealedSegment, SegmentError, SegmentWriter

logger = logging.getLogger(__name__)

OnEvent = Callable[[str, dict[str, Any]], None]
"""``(kind, detail)`` from a recording's threads: ``sealed``, ``closed``, ``disk_full``, ``error``."""


class Sealer:
    """The methods queue work and return at once; they are called from the writer thread.
    :attr:`segments` and :attr:`gaps` (entry data, for ``recording.json``) grow on the sealer
    thread."""

    def __init__(self, info: RecordingInfo, directory: Path, archive_root: Path, spool: LedgerSpool,
                 stats: RecordingStats, on_event: OnEvent) -> None:
        self._info = info
        self._dir = directory
        self._root = archive_root
        self._spool = spool
        self._stats = stats
        self._on_event = on_event
        self.segments: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seal-{info.unit_id}")

    def seal(self, writer: SegmentWriter, start: float, end: float) -> None:
        """Make a closed segment durable and ledger it; a segment that cannot be sealed becomes a
        gap from ``start`` to ``end`` (server times of its first and last frame)."""
        self._pool.submit(self._seal, writer, start, end)

    def gap(self, data: dict[str, Any]) -> None:
        """Ledger a gap (behind the seals already queued)."""
        self._pool.submit(self._gap, data)

    def retry_pending(self) -> None:
        """Space is back: append the entries the ledger refused."""
        self._pool.submit(self._spool.retry)

    def close(self, reason: str, at: float, end_cause: str | None, metadata: Callable[[], dict[str, Any]]) -> None:
        """Write ``recording.json`` (``metadata()`` is called on the sealer thread, after every
        seal) and the ``recording_closed`` entry, then wait for the sealer thread to finish."""
        self._pool.submit(self._close, reason, at, end_cause, metadata)
        self._pool.shutdown(wait=True)

    # sealer thread -------------------------------------------------------------------------
    def _seal(self, writer: SegmentWriter, start: float, end: float) -> None:
        try:
            sealed = writer.finalize()
        except SegmentError as exc:
            logger.error("recording %s: %s", self._info.recording_id, exc)
            self._gap(gap_entry(self._info.recording_id, start, end, "disk_full" if exc.disk_full else "server_fault"))
            self._on_event("disk_full" if exc.disk_full else "error",
                           {"recording_id": self._info.recording_id, "message": str(exc)})
            return
        self._sealed(sealed, start, end)

    def _sealed(self, sealed: SealedSegment, start: float, end: float) -> None:
        data = {
            "recording_id": self._info.recording_id, "seq": int(sealed.path.name.split(".")[0]),
            "path": sealed.path.relative_to(self._root).as_posix(), "sha256": sealed.sha256, "bytes": sealed.bytes,
            "start": iso_millis(start), "end": iso_millis(end), "frames": sealed.frames, "recovered": False,
            "offset_s": round(sealed.offset_s, 6),
            "pts": {k: [sealed.first_pts.get(k), sealed.last_pts.get(k)] for k in sealed.first_pts},
        }
        self._stats.segments += 1
        self._stats.bytes += sealed.bytes
        self.segments.append(data)
        self._spool.append("segment_sealed", data)
        self._on_event("sealed", data)

    def _gap(self, data: dict[str, Any]) -> None:
        self.gaps.append(data)
        self._spool.append("gap", data)
        self._on_event("gap", data)

    def _close(self, reason: str, at: float, end_cause: str | None, metadata: Callable[[], dict[str, Any]]) -> None:
        digest = ""
        try:
            digest = write_metadata(self._dir, metadata())
        except OSError as exc:
            logger.error("recording %s: metadata not written: %s", self._info.recording_id, exc)
        self._spool.append("recording_closed", {
            "recording_id": self._info.recording_id, "segments": len(self.segments), "reason": reason,
            "end_cause": end_cause, "metadata_sha256": digest, "server_time": iso_millis(at),
        })
        self._spool.retry()
