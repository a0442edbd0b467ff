"""One recording: a unit's encoded media of one action session, spanning publisher reconnects.

The relay calls :meth:`Recording.offer` from the event loop for every forwarded frame (a copy of
the bytes goes into a bounded queue, nothing else happens there, so live viewers never wait on
disk). The recording's writer thread takes frames and controls off that queue in order and
hands them to its :class:`~recordings.segmenter.Segmenter`, which muxes segments. Frames do not
wake the writer: it takes what has queued every ``WRITER_WAKE_S`` instead of a futex wake and a
GIL hand-off per frame (80 a second per unit); controls wake it at once. A second thread, the
:class:`~recordings.sealer.Sealer`, makes segments durable and ledgers them. Media timestamps
count from the recording's start on the server's clock
(:mod:`recordings.timeline`); stretches without frames are gaps (:mod:`recordings.gaps`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .durable import fsync_dir
from .ledger_spool import LedgerSpool, LedgerWriter
from .recording_info import RecordingInfo, RecordingStats
from .sealer import OnEvent, Sealer
from .segmenter import Frame, Segmenter

logger = logging.getLogger(__name__)

WRITER_WAKE_S = 0.1  # the writer takes queued frames this often (frames reach disk up to this much later)


@dataclass
class _Control:
    op: str  # "cut", "carry", "resume", "close"
    cause: str = ""  # the cut's cause, the close's reason
    at: float = 0.0
    done: threading.Event | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # close: more for recording.json


class Recording:
    """Owns one writer thread (and, through its sealer, one durable-work thread). Thread-safety:
    ``offer``/``cut``/``resume``/``pause``/``close`` may be called from the event loop;
    everything else runs on the writer threads."""

    def __init__(self, info: RecordingInfo, directory: Path, archive_root: Path, ledger: LedgerWriter,
                 *, segment_s: float, queue_frames: int, where: str, on_event: OnEvent,
                 clock: Callable[[], float] = time.time, request_keyframe: Callable[[], None] = lambda: None) -> None:
        """Creates ``directory``, appends ``recording_opened`` and starts the writer thread.
        ``on_event(kind, detail)`` is called on the writer threads (``sealed``, ``closed``,
        ``disk_full``, ``error``); ``request_keyframe`` too, when a segment waits for one."""
        self.info = info
        self.dir = directory
        self._on_event = on_event
        self._clock = clock
        # deque.append and popleft are atomic: the loop appends, the writer pops, no lock is taken.
        self._queue: deque[Frame | _Control] = deque()
        self._queue_max = queue_frames
        self._wake = threading.Event()
        self._overflowing = False
        self.stats = RecordingStats()
        self.opened_at = clock()
        self.closed = False
        spool = LedgerSpool(ledger, where, info.recording_id)
        sealer = Sealer(info, directory, archive_root, spool, self.stats, on_event)
        self._segmenter = Segmenter(info, directory, opened_at=self.opened_at, segment_s=segment_s, stats=self.stats,
                                    sealer=sealer, on_event=on_event, request_keyframe=request_keyframe)
        self.dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.dir.parent)
        spool.append("recording_opened", info.opened_entry(self.opened_at))  # before the threads start
        self._thread = threading.Thread(target=self._run, name=f"rec-{info.unit_id}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Frames and controls waiting for the writer thread now."""
        return len(self._queue)

    @property
    def paused_cause(self) -> str | None:
        """Why frames are being dropped (``disk_full``), or None while recording."""
        return self._segmenter.paused_cause

    # event-loop side ---------------------------------------------------------------------
    def offer(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        """Called for every frame the relay forwards; never blocks."""
        if self.closed:
            return
        depth = len(self._queue)
        if depth < self._queue_max:
            self._queue.append(Frame(kind, data, pts, keyframe, self._clock()))
            if self._overflowing and kind == "video" and depth < self._queue_max // 2:
                self._overflowing = False
            return
        self.stats.dropped += 1
        if not self._overflowing:
            self._overflowing = True
            logger.warning("recording %s: writer behind, frames dropped", self.info.recording_id)
            self._control(_Control("cut", "recorder_overflow", self._clock()))

    def cut(self, cause: str) -> None:
        """Frames stop for ``cause``: seal the open segment and open a gap."""
        self._control(_Control("cut", cause, self._clock()))

    def carry(self, cause: str, since: float, detail: str) -> None:
        """The unit's frames stopped at ``since`` on another node: the recording begins (or goes on)
        with a gap of ``cause`` from then, ``detail`` naming the other node."""
        self._control(_Control("carry", cause, since, extra={"detail": detail}))

    def resume(self) -> None:
        """Write again (disk space is back), from the next keyframe."""
        self._control(_Control("resume", "", self._clock()))

    def pause(self, cause: str) -> None:
        """Stop writing (disk full); frames are dropped until :meth:`resume`."""
        self._segmenter.paused_cause = cause
        self._control(_Control("cut", cause, self._clock()))

    def close(self, reason: str, extra: Mapping[str, Any] | None = None) -> threading.Event:
        """Seal, write ``recording.json`` (``extra`` under its ``extra`` key: GPS track,
        instructions) and ``recording_closed``; the event is set once the writer is done."""
        done = threading.Event()
        if self.closed:
            done.set()
            return done
        self.closed = True
        self._control(_Control("close", reason, self._clock(), done, dict(extra or {})))
        return done

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def closed_done(self) -> bool:
        """Closed and its writer has finished."""
        return self.closed and not self._thread.is_alive()

    def _control(self, item: _Control) -> None:
        """Queue ``item`` behind the frames (controls are never dropped nor block) and wake the writer."""
        self._queue.append(item)
        self._wake.set()

    # writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        items = self._queue
        while True:
            self._wake.clear()
            while items:
                if self._handle(items.popleft()):
                    return
            self._wake.wait(WRITER_WAKE_S)

    def _handle(self, item: Frame | _Control) -> bool:
        """Write one frame or carry out one control; True once the recording is closed."""
        segmenter = self._segmenter
        try:
            if isinstance(item, Frame):
                segmenter.frame(item)
            elif item.op == "cut":
                segmenter.cut(item.cause, item.at)
            elif item.op == "carry":
                segmenter.carry(item.cause, item.at, str(item.extra.get("detail", "")))
            elif item.op == "resume":
                segmenter.resume()
            elif item.op == "close":
                segmenter.close(item.cause, item.at, item.extra)
                return True
        except Exception as exc:  # keep recording whatever happens to one frame
            logger.exception("recording %s: writer fault", self.info.recording_id)
            self._on_event("error", {"recording_id": self.info.recording_id, "message": str(exc)})
        finally:
            if isinstance(item, _Control) and item.done is not None:
                item.done.set()
        return False
