"""One recording: a unit's encoded media of one action session, spanning publisher reconnects.

The relay calls :meth:`Recording.offer` from the event loop for every forwarded frame (a copy of
the bytes goes into a bounded queue, nothing else happens there, so live viewers never wait on
disk). A writer thread owned by the recording muxes the frames into segments
(:mod:`recordings.segment`), seals each one and appends it to the ledger.

Timeline: a recording's media timestamps count from the recording's start on the server's
clock. Each stream is anchored on its first frame (RTP timestamps start anywhere) and re-anchored
when it drifts more than :data:`REANCHOR_S` from the server clock (a device clock jump); the relay
already keeps timestamps monotonic across reconnects, and :class:`SegmentWriter` guards the rest.
So a gap of 5 s in the unit's link is 5 s in the files too, and in the ledger as a ``gap`` entry.

Gaps: whenever frames stop arriving for a reason we know (link lost, unit stopped, disk full,
queue overflow, server fault found at recovery) the current segment is sealed and a gap opens;
it is written to the ledger when frames resume or the recording closes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from utctime import iso_millis

from .durable import fsync_dir
from .segment import SealedSegment, SegmentError, SegmentWriter, extension, frame_size

logger = logging.getLogger(__name__)

REANCHOR_S = 5.0
KEYFRAME_ASK_S = 0.5  # while waiting for a keyframe to start a segment, ask the publisher this often
RATES = {"video": 90_000, "audio": 48_000}


class LedgerWriter(Protocol):
    def append(self, type: str, *, actor: str, where: str | None = None, outcome: str = "ok",
               data: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RecordingInfo:
    """What a recording is of; written to the ledger when it opens and to ``recording.json``."""

    recording_id: str
    unit_id: str
    action_id: str | None
    case_number: str | None
    officers: tuple[str, ...]
    category: str
    node: str
    video_codec: str | None
    audio_codec: str | None


@dataclass
class _Frame:
    kind: str
    data: bytes
    pts: int
    keyframe: bool
    wall: float


@dataclass
class _Control:
    op: str  # "cut", "resume", "close"
    cause: str = ""
    at: float = 0.0
    done: threading.Event | None = None


@dataclass
class RecordingStats:
    frames: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    dropped: int = 0  # frames not recorded: queue overflow, disk full, before the first keyframe
    segments: int = 0
    bytes: int = 0
    gaps: int = 0


class Recording:
    """Owns one writer thread. Thread-safety: ``offer``/``cut``/``resume``/``close`` may be called
    from the event loop; everything else runs on the writer thread."""

    def __init__(self, info: RecordingInfo, directory: Path, archive_root: Path, ledger: LedgerWriter,
                 *, segment_s: float, queue_frames: int, where: str,
                 on_event: Callable[[str, dict[str, Any]], None], clock: Callable[[], float] = time.time,
                 request_keyframe: Callable[[], None] = lambda: None) -> None:
        self.info = info
        self.dir = directory
        self._root = archive_root
        self._ledger = ledger
        self._segment_s = segment_s
        self._where = where
        self._on_event = on_event  # (kind, detail) from the writer thread: "disk_full", "sealed", "closed", "error"
        self._clock = clock
        self.request_keyframe = request_keyframe
        self._queue: queue.Queue[_Frame | _Control] = queue.Queue(maxsize=queue_frames)
        self._overflowing = False
        self.stats = RecordingStats()
        self.opened_at = clock()
        self.closed = False
        self.paused_cause: str | None = None  # set while disk is full
        # writer-thread state
        self._writer: SegmentWriter | None = None
        self._seg_started_wall = 0.0
        self._seq = 0
        self._anchor: dict[str, int] = {}
        self._last_wall: float | None = None
        self._gap: tuple[float, str] | None = None
        self._pending: list[tuple[str, dict[str, Any]]] = []  # ledger entries that failed to append (disk full)
        self._segments: list[dict[str, Any]] = []
        self._gaps: list[dict[str, Any]] = []
        self._size: tuple[int, int] | None = None
        self._keyframe_asked = float("-inf")
        # Filled in by the archive service (GPS track, instructions); called on the writer thread at close.
        self.extra_metadata: Callable[[], dict[str, Any]] = lambda: {}
        # Durable work (fsync, rename, hash, ledger appends) runs on a second thread, in order, so
        # a slow disk never holds up muxing; the queue above absorbs what muxing cannot take.
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seal-{info.unit_id}")
        self.dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.dir.parent)
        self._append_now("recording_opened", {
            "recording_id": info.recording_id, "unit_id": info.unit_id, "action_id": info.action_id,
            "case_number": info.case_number, "officers": list(info.officers), "category": info.category,
            "node": info.node, "video_codec": info.video_codec, "audio_codec": info.audio_codec,
            "server_time": iso_millis(self.opened_at),
        })
        self._thread = threading.Thread(target=self._run, name=f"rec-{info.unit_id}", daemon=True)
        self._thread.start()

    # event-loop side ---------------------------------------------------------------------
    def offer(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        """Called for every frame the relay forwards; never blocks."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(_Frame(kind, data, pts, keyframe, self._clock()))
            if self._overflowing and kind == "video" and self._queue.qsize() < self._queue.maxsize // 2:
                self._overflowing = False
        except queue.Full:
            self.stats.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logger.warning("recording %s: writer behind, frames dropped", self.info.recording_id)
                self._control(_Control("cut", "recorder_overflow", self._clock()), force=True)

    def cut(self, cause: str) -> None:
        """Frames stop for ``cause``: seal the open segment and open a gap."""
        self._control(_Control("cut", cause, self._clock()))

    def resume(self) -> None:
        self._control(_Control("resume", "", self._clock()))

    def pause(self, cause: str) -> None:
        """Stop writing (disk full); frames are dropped until :meth:`resume`."""
        self.paused_cause = cause
        self._control(_Control("cut", cause, self._clock()))

    def close(self, reason: str) -> threading.Event:
        done = threading.Event()
        if self.closed:
            done.set()
            return done
        self.closed = True
        self._control(_Control("close", reason, self._clock(), done), force=True)
        return done

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def closed_done(self) -> bool:
        """Closed and its writer has finished."""
        return self.closed and not self._thread.is_alive()

    def _control(self, item: _Control, force: bool = False) -> None:
        if force:
            # Controls must not be lost to a full queue; the writer drains fast enough that this
            # blocks for at most one frame's write.
            self._queue.put(item)
        else:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._queue.put(item)

    # writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if isinstance(item, _Frame):
                    self._frame(item)
                elif item.op == "cut":
                    self._cut(item.cause, item.at)
                elif item.op == "resume":
                    self.paused_cause = None
                    self._sealer.submit(self._flush_pending)
                    self.request_keyframe()
                elif item.op == "close":
                    self._close(item.cause, item.at)
                    return
            except Exception as exc:  # keep recording whatever happens to one frame
                logger.exception("recording %s: writer fault", self.info.recording_id)
                self._on_event("error", {"recording_id": self.info.recording_id, "message": str(exc)})
            finally:
                if isinstance(item, _Control) and item.done is not None:
                    item.done.set()

    def _timeline_pts(self, frame: _Frame) -> int:
        rate = RATES[frame.kind]
        expected = int((frame.wall - self.opened_at) * rate)
        anchor = self._anchor.get(frame.kind)
        if anchor is None or abs(frame.pts + anchor - expected) > REANCHOR_S * rate:
            if anchor is not None:
                logger.warning("recording %s: %s clock jumped %.1f s; re-anchored to the server clock",
                               self.info.recording_id, frame.kind, (frame.pts + anchor - expected) / rate)
            anchor = expected - frame.pts
            self._anchor[frame.kind] = anchor
        return frame.pts + anchor

    def _frame(self, frame: _Frame) -> None:
        if self.paused_cause is not None:
            self.stats.dropped += 1
            return
        has_video = self.info.video_codec is not None
        if self._writer is None:
            if has_video and not (frame.kind == "video" and frame.keyframe):
                self.stats.dropped += 1  # a segment starts on a keyframe
                if frame.kind == "video" and frame.wall - self._keyframe_asked >= KEYFRAME_ASK_S:
                    # Once per interval, not per dropped frame: each ask crosses to the event loop.
                    self._keyframe_asked = frame.wall
                    self.request_keyframe()
                return
            self._close_gap(frame.wall)
            if not self._open_segment(frame):
                return
        elif (frame.kind == "video" or not has_video) and frame.keyframe \
                and frame.wall - self._seg_started_wall >= self._segment_s:
            self._seal()
            if not self._open_segment(frame):
                return
        try:
            assert self._writer is not None
            self._writer.write(frame.kind, frame.data, self._timeline_pts(frame), frame.keyframe)
            self.stats.frames[frame.kind] += 1
            self._last_wall = frame.wall
        except SegmentError as exc:
            self._segment_failed(exc, frame.wall)

    def _open_segment(self, frame: _Frame) -> bool:
        self._seq += 1
        if frame.kind == "video":
            self._size = frame_size(self.info.video_codec or "vp8", frame.data) or self._size
        path = self.dir / f"{self._seq:06d}{extension(self.info.video_codec)}"
        try:
            self._writer = SegmentWriter(path, self.info.video_codec, self.info.audio_codec is not None, self._size)
        except SegmentError as exc:
            self._seq -= 1
            self._segment_failed(exc, frame.wall)
            return False
        self._seg_started_wall = frame.wall
        return True

    def _segment_failed(self, exc: SegmentError, at: float) -> None:
        """The open segment cannot be completed: drop it (never half in the ledger) and open a gap."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
            self._seq -= 1
            at = self._seg_started_wall
        cause = "disk_full" if exc.disk_full else "server_fault"
        logger.error("recording %s: %s (%s)", self.info.recording_id, exc, cause)
        if self._gap is None:
            self._gap = (at, cause)
        if exc.disk_full:
            self.paused_cause = "disk_full"
            self._on_event("disk_full", {"recording_id": self.info.recording_id, "message": str(exc)})
        else:
            self._on_event("error", {"recording_id": self.info.recording_id, "message": str(exc)})

    def _seal(self) -> None:
        """Close the open segment here; fsync, rename, hash and ledger it on the sealer thread."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close_container()
        except SegmentError as exc:
            self._writer = writer  # the next segment reuses its number: the file is gone
            self._segment_failed(exc, self._seg_started_wall)
            return
        start, end = self._seg_started_wall, self._last_wall or self._seg_started_wall
        self._sealer.submit(self._finalize, writer, start, end)

    def _finalize(self, writer: SegmentWriter, start: float, end: float) -> None:
        """Sealer thread."""
        try:
            sealed = writer.finalize()
        except SegmentError as exc:
            cause = "disk_full" if exc.disk_full else "server_fault"
            logger.error("recording %s: %s", self.info.recording_id, exc)
            gap = {"recording_id": self.info.recording_id, "start": iso_millis(start), "end": iso_millis(end),
                   "cause": cause, "seconds": round(max(0.0, end - start), 3)}
            self._gaps.append(gap)
            self._append_now("gap", gap)
            self._on_event("disk_full" if exc.disk_full else "error",
                           {"recording_id": self.info.recording_id, "message": str(exc)})
            return
        self._record_sealed(sealed, start, end)

    def _record_sealed(self, sealed: SealedSegment, start: float, end: float) -> None:
        """Sealer thread."""
        rel = sealed.path.relative_to(self._root).as_posix()
        data = {
            "recording_id": self.info.recording_id, "seq": int(sealed.path.name.split(".")[0]), "path": rel,
            "sha256": sealed.sha256, "bytes": sealed.bytes, "start": iso_millis(start), "end": iso_millis(end),
            "frames": sealed.frames, "recovered": False, "offset_s": round(sealed.offset_s, 6),
            "pts": {k: [sealed.first_pts.get(k), sealed.last_pts.get(k)] for k in sealed.first_pts},
        }
        self.stats.segments += 1
        self.stats.bytes += sealed.bytes
        self._segments.append(data)
        self._append_now("segment_sealed", data)
        self._on_event("sealed", data)

    def _cut(self, cause: str, at: float) -> None:
        self._seal()
        if self._gap is None:
            self._gap = (self._last_wall or at, cause)

    def _close_gap(self, end: float) -> None:
        if self._gap is None:
            return
        start, cause = self._gap
        self._gap = None
        if self._last_wall is None:
            return  # nothing recorded yet: the wait for the first keyframe is not a gap
        data = {"recording_id": self.info.recording_id, "start": iso_millis(start), "end": iso_millis(max(start, end)),
                "cause": cause, "seconds": round(max(0.0, end - start), 3)}
        self.stats.gaps += 1
        self._sealer.submit(self._gaps.append, data)
        self._append("gap", data)

    def _close(self, reason: str, at: float) -> None:
        self._seal()
        end_cause = None
        if self._gap is not None:
            if self._gap[1] in ("link_lost", "unit_stopped", "server_shutdown"):
                # The unit did not come back: that is where the recording ends, not a gap in it.
                end_cause = self._gap[1]
                self._gap = None
            else:
                self._close_gap(at)  # disk full or a fault lost the tail: a gap up to the close
        self._sealer.submit(self._write_close, reason, at, end_cause)
        self._sealer.shutdown(wait=True)
        self._on_event("closed", {"recording_id": self.info.recording_id, "reason": reason})

    def _write_close(self, reason: str, at: float, end_cause: str | None) -> None:
        """Sealer thread: recording.json, then the recording_closed entry."""
        meta = self.metadata(reason, at)
        meta_path = self.dir / "recording.json"
        digest = ""
        try:
            blob = json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True).encode()
            tmp = meta_path.with_name("recording.json.tmp")
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, meta_path)
            fsync_dir(self.dir)
            digest = hashlib.sha256(blob).hexdigest()
        except OSError as exc:
            logger.error("recording %s: metadata not written: %s", self.info.recording_id, exc)
        self._append_now("recording_closed", {
            "recording_id": self.info.recording_id, "segments": len(self._segments), "reason": reason,
            "end_cause": end_cause, "metadata_sha256": digest, "server_time": iso_millis(at),
        })
        self._flush_pending()

    def metadata(self, reason: str, at: float) -> dict[str, Any]:
        i = self.info
        return {
            "format": "dispatch-recording/1",
            "recording_id": i.recording_id, "unit_id": i.unit_id, "action_id": i.action_id,
            "case_number": i.case_number, "officers": list(i.officers), "category": i.category, "node": i.node,
            "codecs": {"video": i.video_codec, "audio": i.audio_codec},
            "resolution": list(self._size) if self._size else None,
            "clocks": {"server_opened": iso_millis(self.opened_at), "server_closed": iso_millis(at),
                       "timeline": "media timestamps count from server_opened on the server clock",
                       "device_reanchors": {k: v for k, v in self._anchor.items()}},
            "close_reason": reason,
            "segments": self._segments,
            "gaps": self._gaps,
            "dropped_frames": self.stats.dropped,
            "extra": self.extra_metadata(),
        }

    def _append(self, type: str, data: dict[str, Any]) -> None:
        """Queue a ledger entry behind the seals already queued (any thread but the sealer)."""
        self._sealer.submit(self._append_now, type, data)

    def _append_now(self, type: str, data: dict[str, Any]) -> None:
        """Sealer thread (or the constructor, before any other work)."""
        if self._pending:
            self._pending.append((type, data))
            self._flush_pending()
            return
        try:
            self._ledger.append(type, actor="system", where=self._where, data=data)
        except Exception as exc:  # LedgerWriteError (ENOSPC) and any other failure to append
            # Disk full: the entry waits in memory (and the file it names stays on disk) until
            # space returns; recovery after a crash re-derives it from the files.
            logger.error("recording %s: ledger append failed (%s); kept pending", self.info.recording_id, exc)
            self._pending.append((type, data))

    def _flush_pending(self) -> None:
        """Sealer thread."""
        while self._pending:
            type, data = self._pending[0]
            try:
                self._ledger.append(type, actor="system", where=self._where, data=data)
            except Exception:
                return
            self._pending.pop(0)
