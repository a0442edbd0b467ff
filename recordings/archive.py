"""The evidence archive service: records every publishing unit, keeps the ledger signed.

Wired by ``dispatch_server.app.create_app``; it knows nothing about HTTP or Socket.IO. The live
service tells it when a unit starts and stops publishing; it taps the unit's frame source (a
:class:`~recordings.source.FrameSource`: the encoded frames the relay already forwards), keeps
one :class:`Recording` per unit per action session across reconnects (``reconnect_grace_s``),
watches free space, and signs tree heads of the ledger every ``sign_interval_s`` and at
shutdown.

Disk full: when free space under the archive falls below ``min_free_bytes`` (or a write fails
with ENOSPC), every recording pauses: its open segment is sealed or, if it cannot be, dropped
whole; a ``disk_full`` gap opens; operators get a ``recording_degraded`` alarm. Live view,
positions and instructions do not touch the archive and carry on. When space returns
(``min_free_bytes`` plus a 25 % margin), recordings resume at the next keyframe and the gap is
closed in the ledger.

Stills: :meth:`ArchiveService.seal_snapshot` stores a JPEG a unit uploaded
(:mod:`recordings.snapshots`) under ``snapshots/`` with its own ledger entry.

Start-up check: a ledger that fails :meth:`Ledger.open`'s check (:class:`LedgerIntegrityError`: a
rewritten, rolled-back or re-signed history) is refused: nothing is recovered, recorded, appended
or signed, :attr:`ArchiveService.refused` says what failed, and operators and admins get a
``ledger_integrity`` alarm. Live view, positions and instructions carry on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from utctime import iso_millis

from .ledger import Ledger, LedgerError, LedgerIntegrityError, load_public_key
from .recording import Recording
from .recording_info import RecordingInfo
from .recovery import recover
from .snapshots import SnapshotError, StillInfo, recover_snapshots, seal_snapshot
from .source import EncodedFrame, FrameSource, FrameTap
from .witness_client import WitnessSender, latest_heads

logger = logging.getLogger(__name__)

DISK_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ActionContext:
    action_id: str | None
    case_number: str | None
    officers: tuple[str, ...]
    category: str


Alarm = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (kind, message, detail)
ActionLookup = Callable[[str], Awaitable[ActionContext]]
Describe = Callable[[str, float, float], Awaitable[dict[str, Any]]]  # (unit, since, until) -> GPS track, instructions
DESCRIBE_TIMEOUT_S = 10.0


@dataclass
class _Active:
    recording: Recording
    channel: FrameSource | None = None
    taps: tuple[tuple[str, FrameTap], ...] = ()
    grace: asyncio.TimerHandle | None = None


def new_recording_id(now: float) -> str:
    return f"rec-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{secrets.token_hex(4)}"


class ArchiveRefusedError(LedgerError):
    """The archive's ledger failed its start-up check: nothing is recorded or appended."""


class ArchiveService:
    def __init__(self, root: Path, signing_key: Path, node: str, *, segment_s: float, queue_frames: int,
                 reconnect_grace_s: float, sign_interval_s: float, min_free_bytes: int,
                 action_for: ActionLookup, alarm: Alarm, describe: Describe | None = None,
                 clock: Callable[[], float] = time.time, checkpoint: Path | None = None,
                 witnesses: Sequence[str] = ()) -> None:
        self.root = root
        self.node = node
        self.where = f"recorder@{node}"
        self._witness_targets = tuple(witnesses)
        self.witnesses: WitnessSender | None = None
        self.ledger = Ledger(root, signing_key, where=self.where, clock=clock, checkpoint_path=checkpoint,
                             on_signed=self._signed)
        self.refused: list[str] = []  # what the start-up check found; non-empty: the ledger is refused
        self._segment_s = segment_s
        self._queue_frames = queue_frames
        self._grace_s = reconnect_grace_s
        self._sign_interval_s = sign_interval_s
        self._min_free = min_free_bytes
        self._action_for = action_for
        self._alarm = alarm
        self._describe = describe
        self._clock = clock
        self._finishing: set[asyncio.Task[None]] = set()
        self.active: dict[str, _Active] = {}
        self.disk_full = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: list[Recording] = []
        # ("sealed"|"gap"|"closed"|"snapshot"|"disk_full"|"resumed"|..., detail), called on the event loop
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> list[str]:
        """Open the ledger, recover what a crash left, sign a tree head; then start the timers."""
        self._loop = asyncio.get_running_loop()
        try:
            notes = await asyncio.to_thread(self._open_and_recover)
        except LedgerIntegrityError as exc:
            self.refused = exc.problems
            logger.error("%s", exc)
            message = ("证据账本启动校验失败，已停止录像和签名 / the evidence ledger failed its start-up check; "
                       f"nothing is recorded, appended or signed: {'; '.join(exc.problems)}")
            await self._alarm("ledger_integrity", message, {"problems": exc.problems, "archive": str(self.root)})
            return [str(exc)]
        for note in notes:
            logger.warning("archive recovery: %s", note)
        self._spawn(self._sign_loop(), "archive-sign")
        self._spawn(self._disk_loop(), "archive-disk")
        return notes

    def _open_and_recover(self) -> list[str]:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "recordings").mkdir(exist_ok=True)
        anchors, notes = latest_heads(self._witness_targets)
        notes += self.ledger.open(anchors)
        if self._witness_targets:
            key = load_public_key(self.ledger.public_key_pem())
            self.witnesses = WitnessSender(self._witness_targets, self.ledger, key, self._witness_refused)
            self.witnesses.start()
        entries = self.ledger.entries()
        notes += recover(self.root, self.ledger, entries, self.where, self._clock())
        notes += recover_snapshots(self.root, entries)
        self.ledger.sign_tree_head()
        return notes

    async def close(self) -> None:
        """Seal and close every recording, then sign the final tree head."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for unit_id in list(self.active):
            self._close_unit(unit_id, "server stopped (planned)")
        await asyncio.gather(*self._finishing, return_exceptions=True)
        recordings = list(self._closing)
        await asyncio.to_thread(self._join, recordings)
        await asyncio.to_thread(self.ledger.close)
        if self.witnesses is not None:
            await asyncio.to_thread(self.witnesses.close)

    @staticmethod
    def _join(recordings: list[Recording]) -> None:
        for r in recordings:
            r.join(timeout=30)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # publishers --------------------------------------------------------------------------
    async def publish_started(self, unit_id: str, channel: FrameSource, video_codec: str | None,
                              audio_codec: str | None, failover: tuple[str, float] | None = None) -> Recording | None:
        """A unit publishes on this node: continue its recording (a reconnect) or open one; None
        when the ledger is refused (nothing is recorded). ``failover``: ``(node, since)`` when
        the unit published on another node until about ``since`` (epoch seconds) and that publish
        was never ended there (the node died): the recording here begins with a ``node_failover``
        gap from then, naming that node, if the unit came back within ``reconnect_grace_s`` (as a
        reconnect on one node continues its recording)."""
        recording = await self._publish_started(unit_id, channel, video_codec, audio_codec)
        if recording is not None and failover is not None and self._clock() - failover[1] <= self._grace_s:
            node, since = failover
            recording.carry("node_failover", min(since, self._clock()),
                            f"node {node} stopped publishing the unit without ending it (the node died or "
                            "lost it); it publishes on this node now")
        return recording

    async def _publish_started(self, unit_id: str, channel: FrameSource, video_codec: str | None,
                               audio_codec: str | None) -> Recording | None:
        if self.refused:
            logger.error("unit %s: not recorded: the evidence ledger failed its start-up check", unit_id)
            return None
        video_codec = video_codec.lower() if video_codec else None
        audio_codec = audio_codec.lower() if audio_codec else None
        if video_codec not in (None, "vp8", "h264"):
            logger.error("unit %s: video codec %s cannot be recorded; recording audio only", unit_id, video_codec)
            video_codec = None
        if audio_codec not in (None, "opus"):
            logger.error("unit %s: audio codec %s cannot be recorded; recording video only", unit_id, audio_codec)
            audio_codec = None
        ctx = await self._action_for(unit_id)
        current = self.active.get(unit_id)
        if current is not None:
            r = current.recording
            same = (r.info.action_id == ctx.action_id and r.info.video_codec == video_codec
                    and r.info.audio_codec == audio_codec and not r.closed)
            if same:
                if current.grace is not None:
                    current.grace.cancel()
                    current.grace = None
                self._untap(current)
                self._tap(current, channel)
                return r
            self._close_unit(unit_id, "a new session of the unit (action or codecs changed)")
        now = self._clock()
        info = RecordingInfo(
            recording_id=new_recording_id(now), unit_id=unit_id, action_id=ctx.action_id,
            case_number=ctx.case_number, officers=ctx.officers, category=ctx.category, node=self.node,
            video_codec=video_codec, audio_codec=audio_codec,
        )
        recording = await asyncio.to_thread(
            Recording, info, self.root / "recordings" / info.recording_id, self.root, self.ledger,
            segment_s=self._segment_s, queue_frames=self._queue_frames, where=self.where,
            on_event=self._from_writer, clock=self._clock,
            request_keyframe=lambda: self._request_keyframe(unit_id))
        if self.disk_full:
            recording.pause("disk_full")
        active = _Active(recording)
        self.active[unit_id] = active
        self._tap(active, channel)
        logger.info("unit %s: recording %s opened (action %s)", unit_id, info.recording_id, ctx.action_id)
        return recording

    def recording_now(self, unit_id: str) -> bool:
        """Whether the unit's frames are being recorded now: it publishes on this node into an
        open recording that is not paused (disk full) and not waiting for the unit to come back."""
        current = self.active.get(unit_id)
        return (not self.refused and current is not None and bool(current.taps) and current.grace is None
                and not current.recording.closed and current.recording.paused_cause is None)

    def publish_ended(self, unit_id: str, cause: str) -> None:
        """The unit's publisher is gone (``link_lost``, ``unit_stopped`` ...): keep the recording
        open for ``reconnect_grace_s`` so a returning unit continues it."""
        current = self.active.get(unit_id)
        if current is None:
            return
        self._untap(current)
        current.recording.cut(cause)
        if current.grace is not None:
            current.grace.cancel()
        loop = asyncio.get_running_loop()
        current.grace = loop.call_later(self._grace_s, self._close_unit, unit_id,
                                        f"unit did not come back within {self._grace_s:g} s")

    async def action_changed(self, unit_ids: tuple[str, ...]) -> None:
        """An action started or ended: units whose recording belongs to another action session
        start a new recording at once (the old one closes)."""
        for unit_id in unit_ids:
            current = self.active.get(unit_id)
            if current is None:
                continue
            ctx = await self._action_for(unit_id)
            if ctx.action_id == current.recording.info.action_id:
                continue
            channel = current.channel
            info = current.recording.info
            self._close_unit(unit_id, "the unit's action session changed")
            if channel is not None and current.grace is None:
                await self.publish_started(unit_id, channel, info.video_codec, info.audio_codec)

    def _close_unit(self, unit_id: str, reason: str) -> None:
        current = self.active.pop(unit_id, None)
        if current is None:
            return
        if current.grace is not None:
            current.grace.cancel()
        self._untap(current)
        self._closing = [r for r in self._closing if not r.closed_done] + [current.recording]
        task = asyncio.ensure_future(self._finish(current.recording, reason))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, recording: Recording, reason: str) -> None:
        """Gather what the recording's metadata needs from the rest of the server, then close it."""
        extra: dict[str, Any] = {}
        if self._describe is not None:
            try:
                extra = await asyncio.wait_for(
                    self._describe(recording.info.unit_id, recording.opened_at, self._clock()), DESCRIBE_TIMEOUT_S)
            except Exception as exc:
                logger.warning("recording %s: metadata incomplete: %r", recording.info.recording_id, exc)
                extra = {"metadata_error": f"GPS track and instructions unavailable: {exc!r}"}
        recording.close(reason, extra)

    def _tap(self, active: _Active, channel: FrameSource) -> None:
        rec = active.recording
        taps: list[tuple[str, FrameTap]] = []
        for kind, codec in (("video", rec.info.video_codec), ("audio", rec.info.audio_codec)):
            if codec is None:
                continue

            def tap(frame: EncodedFrame, keyframe: bool, kind: str = kind) -> None:
                rec.offer(kind, bytes(frame), int(frame.pts or 0), keyframe)

            channel.add_tap(kind, tap)
            taps.append((kind, tap))
        active.channel = channel
        active.taps = tuple(taps)
        self._request_keyframe(rec.info.unit_id)

    @staticmethod
    def _untap(active: _Active) -> None:
        if active.channel is not None:
            for kind, tap in active.taps:
                active.channel.remove_tap(kind, tap)
        active.taps = ()

    def _request_keyframe(self, unit_id: str) -> None:
        """Thread-safe: the writer asks for a keyframe to start a segment."""
        loop = self._loop
        active = self.active.get(unit_id)
        if loop is None or active is None or active.channel is None:
            return
        loop.call_soon_threadsafe(active.channel.request_keyframe, "recording")

    # writer events (called on writer threads) --------------------------------------------
    def _from_writer(self, kind: str, detail: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._writer_event, kind, detail)

    def _writer_event(self, kind: str, detail: dict[str, Any]) -> None:
        if kind == "disk_full" and not self.disk_full:
            self._enter_disk_full(detail.get("message", "no space left on the archive volume"))
        elif kind == "error":
            self._spawn(self._alarm("recording_degraded", f"recording fault: {detail.get('message')}",
                                    {**detail, "cause": "fault"}),
                        "archive-alarm")
        self._tell_listeners(kind, detail)

    def _tell_listeners(self, kind: str, detail: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, detail)
            except Exception:
                logger.exception("archive listener failed")

    # stills ------------------------------------------------------------------------------
    async def seal_snapshot(self, info: StillInfo, jpeg: bytes, actor: str, where: str) -> dict[str, Any]:
        """Store a still from a unit's camera (:mod:`recordings.snapshots`); returns its
        ``snapshot_sealed`` data once file and entry are durable, and tells the listeners
        (``"snapshot"``). Raises :class:`SnapshotError` (nothing stored) while the disk is full or
        when the disk or the ledger refuses it; an ENOSPC puts the archive in disk-full mode."""
        if self.refused:
            raise SnapshotError("the evidence ledger failed its start-up check; nothing is stored")
        if self.disk_full:
            raise SnapshotError("the evidence archive's disk is full (recording is paused)", disk_full=True)
        try:
            data = await asyncio.to_thread(seal_snapshot, self.root, self.ledger, info, jpeg, self._clock(),
                                           actor=actor, where=where)
        except SnapshotError as exc:
            if exc.disk_full and not self.disk_full:
                self._enter_disk_full(str(exc))
            raise
        logger.info("unit %s: still %s sealed (%d bytes)", info.unit_id, data["snapshot_id"], data["bytes"])
        self._tell_listeners("snapshot", data)
        return data

    # disk --------------------------------------------------------------------------------
    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def _enter_disk_full(self, message: str) -> None:
        self.disk_full = True
        for active in self.active.values():
            active.recording.pause("disk_full")
        logger.error("archive: disk full (%s); recording paused", message)
        self._spawn(self._alarm("recording_degraded",
                                f"evidence archive disk full ({message}); recording paused, live view continues",
                                {"free_bytes": self._safe_free(), "units": sorted(self.active), "cause": "disk_full"}),
                    "archive-alarm")

    def _safe_free(self) -> int | None:
        try:
            return self.free_bytes()
        except OSError:
            return None

    async def _disk_loop(self) -> None:
        while True:
            await asyncio.sleep(DISK_CHECK_INTERVAL_S)
            free = self._safe_free()
            if free is None:
                continue
            if not self.disk_full and free < self._min_free:
                self._enter_disk_full(f"{free} bytes free, below {self._min_free}")
                self._tell_listeners("disk_full", {"free_bytes": free})
            elif self.disk_full and free >= self._min_free * 1.25:
                self.disk_full = False
                logger.warning("archive: %d bytes free again; recording resumes", free)
                for active in self.active.values():
                    active.recording.resume()
                self._tell_listeners("resumed", {"free_bytes": free})
                await self._alarm("recording_resumed", f"evidence archive has space again ({free} bytes free); "
                                  "recording resumed", {"free_bytes": free})

    # ledger ------------------------------------------------------------------------------
    def _signed(self, sth: dict[str, Any]) -> None:
        """The ledger signed a tree head (any thread): on to the witnesses."""
        if self.witnesses is not None:
            self.witnesses.signed(sth)

    def _witness_refused(self, witness: str, reason: str) -> None:
        """A witness refused a tree head (the sender's thread): alarm operators and admins."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        message = (f"见证方拒绝了证据账本的树头 / witness {witness} refused the ledger's tree head: {reason}")
        loop.call_soon_threadsafe(lambda: self._spawn(
            self._alarm("ledger_integrity", message, {"witness": witness, "reason": reason}), "archive-alarm"))

    async def _sign_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sign_interval_s)
            try:
                await asyncio.to_thread(self.ledger.sign_tree_head)
            except OSError as exc:
                logger.error("archive: tree head not signed: %s", exc)

    async def sign_now(self) -> dict[str, Any] | None:
        """Sign a tree head over every entry now (if any is new); the latest tree head."""
        if self.refused:
            raise ArchiveRefusedError("the evidence ledger failed its start-up check: " + "; ".join(self.refused))
        await asyncio.to_thread(self.ledger.sign_tree_head)
        return self.ledger.latest_sth()

    async def record(self, type: str, *, actor: str, where: str, outcome: str = "ok",
                     data: dict[str, Any]) -> dict[str, Any]:
        """An evidence access or management event (viewed, downloaded, hold_set ...);
        :class:`ArchiveRefusedError` while the ledger is refused."""
        if self.refused:
            raise ArchiveRefusedError("the evidence ledger failed its start-up check: " + "; ".join(self.refused))
        return await asyncio.to_thread(self.ledger.append, type, actor=actor, where=where, outcome=outcome, data=data)

    async def record_many(self, items: Sequence[tuple[str, str, str | None, str, dict[str, Any]]]
                          ) -> list[dict[str, Any]]:
        """Several entries ``(type, actor, where, outcome, data)`` with one write and one fsync."""
        if self.refused:
            raise ArchiveRefusedError("the evidence ledger failed its start-up check: " + "; ".join(self.refused))
        return await asyncio.to_thread(self.ledger.append_many, items)

    def status(self) -> dict[str, Any]:
        return {
            "integrity": {"ok": not self.refused, "problems": list(self.refused)},
            "disk_full": self.disk_full,
            "free_bytes": self._safe_free(),
            "ledger_size": self.ledger.size,
            "recording": {u: {"recording_id": a.recording.info.recording_id, "frames": a.recording.stats.frames,
                              "segments": a.recording.stats.segments, "dropped": a.recording.stats.dropped,
                              "gaps": a.recording.stats.gaps, "paused": a.recording.paused_cause,
                              "queue": a.recording.queue_depth,
                              "since": iso_millis(a.recording.opened_at)}
                          for u, a in self.active.items()},
        }
