"""One field unit's lifecycle: connect, publish, report positions, acknowledge instructions.

Every attempt runs until the stop event, a dropped Socket.IO link or telemetry channel (which
carries the positions, :mod:`field_client.telemetry`), or a failed/closed peer connection, then
cleans up everything it opened and, unless stopping, waits a capped exponential backoff with full
jitter before the next attempt. Setting up (connecting,
negotiating) is abandoned as soon as the stop event is set; an established session is ended
politely (``unpublish`` or WHIP ``DELETE``).

With Socket.IO signalling one attempt holds the link and the publish made over it, so a link
drop re-publishes. With WHIP the link (positions, instructions) and the WHIP session are
independent and each is retried on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp

from geo.fix import Fix

from .answers import AnswerOutbox
from .applied_log import AppliedLog
from .backoff import Backoff, wait_or_stop
from .config import UnitConfig
from .desk import OrderDesk
from .errors import AlreadyPublishing, FieldClientError, LinkError, PublishRejected, SourceError
from .gps import PositionSource, open_position_source
from .gps_buffer import FixBuffer, PositionLink, PositionUploader
from .inbox import InstructionInbox
from .link import UnitLink
from .loop_cache import LoopCache
from .machine_orders import MachineOrders
from .nodes import ServerNodes
from .officer import AutoAck, Officer, TerminalOfficer
from .orders import Order
from .publisher import MediaPublisher
from .sources import PatternOptions, open_sources
from .still import StillCamera, upload_snapshot
from .talk import TalkListener
from .telemetry import TelemetryLink, Unsupported
from .whip import WhipClient, WhipResource

logger = logging.getLogger(__name__)

T = TypeVar("T")
CAMERA_READY_S = 5.0  # a snapshot just after publishing started waits this long for the first picture
Attempt = Callable[[asyncio.Event], Awaitable[bool]]


class Stopped(Exception):
    """The stop event was set while an attempt was still setting up."""


async def wait_first(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set; the helper tasks never outlive the call."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it carries on.

    On Python 3.11 ``asyncio.wait_for`` (used inside python-socketio's ``call``) swallows a
    cancellation that arrives just as the awaited result does, so one ``cancel()`` is not
    always enough to end a loop that makes such calls.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


async def until_stopped(stop: asyncio.Event, aw: Awaitable[T]) -> T:
    """Await ``aw`` unless ``stop`` is set first, in which case ``aw`` is cancelled and
    :class:`Stopped` raised."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(stopper)
        await cancel_and_wait(task)
    if task.cancelled():
        raise Stopped
    return task.result()


@dataclass
class _Session:
    """What one attempt opened, so its ``finally`` can close exactly that."""

    link: UnitLink | None = None
    publisher: MediaPublisher | None = None
    session_id: str | None = None
    whip: WhipResource | None = None
    telemetry: TelemetryLink | None = None
    positions: asyncio.Task[None] | None = None
    inbox: asyncio.Task[None] | None = None
    answers: asyncio.Task[None] | None = None

    def lost_events(self) -> list[asyncio.Event]:
        """What ends the attempt when it drops: the Socket.IO link and the telemetry channel."""
        return [e.lost for e in (self.link, self.telemetry) if e is not None]


class FieldUnit:
    """Runs one unit described by a :class:`UnitConfig` until its stop event is set.

    ``cfg.answers`` says who answers human orders: ``"terminal"`` (an officer at this terminal),
    ``"auto-ack"`` (unattended: acknowledge only) or ``"none"``.
    """

    def __init__(self, cfg: UnitConfig, *, loops: LoopCache | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.loops = loops or LoopCache()
        self._rng = rng or random.Random()
        self._clock = clock
        self._applied: AppliedLog | None = None
        self._positions: PositionSource | None = None
        # Fixes wait here while the link is down; None without a GPS source.
        self.fixes: FixBuffer | None = None
        self._uploader: PositionUploader | None = None
        self._http: aiohttp.ClientSession | None = None
        self.inbox: InstructionInbox | None = None
        self.talk = TalkListener(cfg.unit_id)
        self._publisher: MediaPublisher | None = None  # the publish in progress, if any
        self.answers = AnswerOutbox(cfg.unit_id)
        self.camera = StillCamera(cfg.codec)
        self.officer: Officer | None = None
        if cfg.answers == "terminal":
            self.officer = TerminalOfficer(self.answers, self._here, notice=self.mark_notice)
        elif cfg.answers == "auto-ack":
            self.officer = AutoAck(self.answers)
        self.desk = OrderDesk(cfg.unit_id, MachineOrders(cfg.unit_id, self), self.answers, self.officer)
        # Set while a publish is accepted and its peer connection has not ended; for callers
        # that run units in-process (tests, the server's demo mode).
        self.publishing = asyncio.Event()
        self.publish_count = 0
        # Whether the unit should publish now (``record_start``/``record_stop`` switch it), and
        # a condition the switch and the publishing state are watched through.
        self._media_on = cfg.publishes_media
        self._media = asyncio.Condition()
        self._media_changed = asyncio.Event()
        self._link: UnitLink | None = None  # the link of the current attempt, for callbacks
        # The cluster's nodes: the link stays with one until connecting to it fails (nodes.py).
        self.nodes = ServerNodes(cfg.unit_id, cfg.servers)
        self._last_fix: Fix | None = None

    def _log(self, level: int, message: str, *args: Any) -> None:
        logger.log(level, "unit %s: " + message, self.cfg.unit_id, *args)

    @property
    def pattern(self) -> PatternOptions:
        c = self.cfg
        return PatternOptions(codec=c.codec, width=c.width, height=c.height, fps=c.fps, label=c.label)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; returns after closing every connection it opened.

        Raises :class:`SourceError` at start if the GPS source cannot be read; every later
        failure is logged and retried.
        """
        cfg = self.cfg
        if cfg.applied_log is not None:
            self._applied = await AppliedLog.open(cfg.applied_log)
            self._log(logging.INFO, "%d applied instructions loaded from %s (last seq %d)",
                      len(self._applied), cfg.applied_log, self._applied.max_seq)
        self.inbox = InstructionInbox(cfg.unit_id, self._applied, self.desk)
        try:
            self._positions = await asyncio.to_thread(open_position_source, cfg.gps, self._rng)
        except (OSError, ValueError) as exc:  # NmeaError is a ValueError
            raise SourceError(f"--gps {cfg.gps}: {exc}") from exc
        sampler: asyncio.Task[None] | None = None
        if self._positions is not None:
            self.fixes = FixBuffer(cfg.position_buffer_size, unit_id=cfg.unit_id)
            self._uploader = PositionUploader(self.fixes, batch_max=cfg.position_batch_max)
            sampler = asyncio.create_task(self._sample_positions(self._positions, self.fixes),
                                          name=f"{cfg.unit_id}-gps")
        supervisors: list[tuple[str, Attempt]] = []
        if cfg.signalling == "sio":
            supervisors.append(("link", self._sio_attempt))
        else:
            self._http = aiohttp.ClientSession()
            supervisors.append(("link", self._link_attempt))
            if cfg.publishes_media:
                supervisors.append(("whip", self._whip_attempt))
        tasks = [asyncio.create_task(self._supervise(name, attempt, stop), name=f"{cfg.unit_id}-{name}")
                 for name, attempt in supervisors]
        terminal = (asyncio.create_task(self.officer.run(), name=f"{cfg.unit_id}-terminal")
                    if isinstance(self.officer, TerminalOfficer) else None)
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                await cancel_and_wait(t)
            await cancel_and_wait(terminal)
            await self.desk.close()
            if len(self.answers):
                self._log(logging.INFO, "%d answers not sent", len(self.answers))
            await cancel_and_wait(sampler)
            if self.fixes is not None and len(self.fixes):
                self._log(logging.INFO, "%d buffered fixes not sent", len(self.fixes))
            if self._http is not None:
                await self._http.close()
                self._http = None
            await self.talk.close()
            self._log(logging.INFO, "stopped")

    async def _supervise(self, name: str, attempt: Attempt, stop: asyncio.Event) -> None:
        backoff = Backoff(self.cfg.backoff_base_s, self.cfg.backoff_cap_s, self._rng)
        while not stop.is_set():
            established = False
            try:
                established = await attempt(stop)
            except Stopped:
                break
            except AlreadyPublishing:
                self._log(logging.INFO, "%s: server says another publisher holds the unit", name)
            except PublishRejected as exc:
                self._log(logging.WARNING, "%s: publish refused: %s", name, exc)
            except FieldClientError as exc:
                self._log(logging.WARNING, "%s: %s", name, exc)
            except Exception:
                logger.exception("unit %s: %s: attempt failed unexpectedly", self.cfg.unit_id, name)
            if stop.is_set():
                break
            if established:
                backoff.reset()
            delay = backoff.next_delay()
            self._log(logging.INFO, "%s: reconnecting in %.1f s (attempt %d)", name, delay, backoff.attempt)
            if await wait_or_stop(stop, delay):
                break

    # -- attempts -----------------------------------------------------------------------------

    async def _connect_link(self, s: _Session) -> None:
        c = self.cfg
        inbox = self.inbox
        assert inbox is not None
        server = self.nodes.current
        link = UnitLink(server, c.unit_id, c.token,
                        connect_timeout_s=c.connect_timeout_s, ack_timeout_s=c.ack_timeout_s,
                        handlers={
                            "instructions_pending": inbox.on_pending,
                            "talk": self.talk.on_talk,
                            "talk_end": self.talk.on_talk_end,
                            "server_restarting": self._on_restarting,
                            "media_lost": self._on_media_lost,
                        })
        s.link = link
        self._log(logging.INFO, "connecting to %s", server)
        try:
            await link.connect()
        except LinkError:
            self.nodes.unreachable(server)
            raise
        self._log(logging.INFO, "link connected to %s", server)
        self._link = link
        s.inbox = asyncio.create_task(self._pull_instructions(link), name=f"{c.unit_id}-instructions")
        s.answers = asyncio.create_task(self._send_answers(link), name=f"{c.unit_id}-answers")
        if self._uploader is not None:
            s.telemetry = await self._open_telemetry(server)
            s.positions = asyncio.create_task(self._send_positions(s.telemetry or s.link, self._uploader),
                                              name=f"{c.unit_id}-positions")

    async def _on_restarting(self, link: UnitLink, data: Any) -> None:
        """The server stops on purpose and comes back: the link drops next, and the unit
        reconnects and publishes again as after any link loss (with the shortest delay, since the
        link was established)."""
        reason = data.get("reason") if isinstance(data, dict) else None
        self._log(logging.INFO, "server restarting (%s); reconnecting when it is back", reason)

    async def _on_media_lost(self, link: UnitLink, data: Any) -> None:
        """The server lost this unit's media (its media worker died): end the publish now and
        publish again, instead of waiting ~30 s for the peer connection to notice."""
        reason = data.get("reason") if isinstance(data, dict) else None
        publisher = self._publisher
        if publisher is not None and not publisher.ended.is_set():
            self._log(logging.INFO, "the server lost our media (%s); publishing again", reason)
            publisher.ended.set()

    async def _open_telemetry(self, server: str) -> TelemetryLink | None:
        """The telemetry channel for positions, to the link's node; None when the server has none
        (positions then go over the Socket.IO link). Any other failure ends the attempt, which is
        retried."""
        c = self.cfg
        telemetry = TelemetryLink(server, c.unit_id, c.token, connect_timeout_s=c.connect_timeout_s,
                                  ack_timeout_s=c.ack_timeout_s)
        try:
            await telemetry.connect()
        except Unsupported as exc:
            self._log(logging.INFO, "%s; sending positions over the Socket.IO link", exc)
            return None
        self._log(logging.INFO, "telemetry channel open")
        return telemetry

    async def _open_publisher(self, s: _Session) -> str:
        c = self.cfg
        sources = await open_sources(c.video, c.audio, self.pattern, self.loops, rng=self._rng,
                                     on_video_packet=self.camera.on_packet, on_video_frame=self.camera.on_frame)
        s.publisher = self._publisher = MediaPublisher(c.unit_id, sources, c.codec, c.ice_servers,
                                                       c.ice_connect_timeout_s)
        return await s.publisher.create_offer()

    async def _close_publisher(self, s: _Session, link: UnitLink | None, stopping: bool) -> None:
        """End the session's publish: tell the server when the link is still up and the unit
        means to stop (not when the link or the peer connection has already gone)."""
        if stopping and s.session_id and link is not None and not link.lost.is_set():
            await link.unpublish(s.session_id)
            self._log(logging.INFO, "unpublished session %s", s.session_id)
        s.session_id = None
        if s.publisher is not None:
            if self._publisher is s.publisher:
                self._publisher = None
            await s.publisher.close()
            s.publisher = None
        await self._set_publishing(False)

    async def _sio_publish(self, s: _Session) -> None:
        offer = await self._open_publisher(s)
        assert s.link is not None and s.publisher is not None
        answer, s.session_id = await s.link.publish(offer)
        await s.publisher.accept_answer(answer)
        await self._mark_publishing()
        self._log(logging.INFO, "publishing (session %s, %s)", s.session_id, self.cfg.codec)

    async def _sio_attempt(self, stop: asyncio.Event) -> bool:
        """Link, positions, and a publish over the link while media is switched on, until the
        link or an established publish ends (a switch off ends only the publish)."""
        s = _Session()
        try:
            await until_stopped(stop, self._connect_link(s))
            assert s.link is not None
            while True:
                self._media_changed.clear()
                if self._media_on:
                    await until_stopped(stop, self._sio_publish(s))
                    assert s.publisher is not None
                    ended = s.publisher.ended
                    await wait_first(stop, self._media_changed, *s.lost_events(), ended)
                    if stop.is_set() or any(e.is_set() for e in s.lost_events()) or ended.is_set():
                        break
                    if not self._media_on:
                        await self._close_publisher(s, s.link, stopping=True)
                else:
                    await wait_first(stop, self._media_changed, *s.lost_events())
                    if stop.is_set() or any(e.is_set() for e in s.lost_events()):
                        break
            if not stop.is_set():
                cause = ("link lost" if s.link.lost.is_set() else
                         "telemetry channel lost" if s.telemetry and s.telemetry.lost.is_set() else
                         "peer connection ended")
                self._log(logging.INFO, "session ended: %s", cause)
            return True
        finally:
            self._link = None
            await cancel_and_wait(s.positions)
            await cancel_and_wait(s.inbox)
            await cancel_and_wait(s.answers)
            await self._close_publisher(s, s.link, stopping=stop.is_set())
            if s.telemetry is not None:
                await s.telemetry.close()
            if s.link is not None:
                await s.link.close()

    async def _link_attempt(self, stop: asyncio.Event) -> bool:
        """WHIP mode's control link: positions and instructions only."""
        s = _Session()
        try:
            await until_stopped(stop, self._connect_link(s))
            assert s.link is not None
            await wait_first(stop, *s.lost_events())
            return True
        finally:
            self._link = None
            await cancel_and_wait(s.positions)
            await cancel_and_wait(s.inbox)
            await cancel_and_wait(s.answers)
            if s.telemetry is not None:
                await s.telemetry.close()
            if s.link is not None:
                await s.link.close()

    async def _whip_setup(self, s: _Session, whip: WhipClient) -> None:
        offer = await self._open_publisher(s)
        assert s.publisher is not None
        self._log(logging.INFO, "WHIP POST %s", whip.endpoint)
        s.whip = await whip.publish(offer)
        await s.publisher.accept_answer(s.whip.answer_sdp)
        await self._mark_publishing()
        self._log(logging.INFO, "publishing via WHIP (session %s, %s)", s.whip.session_id, self.cfg.codec)

    async def _whip_attempt(self, stop: asyncio.Event) -> bool:
        """One WHIP session while media is switched on, to the node the link uses, until its peer
        connection ends, the switch goes off or the link moves to another node; ``DELETE`` on the
        way out."""
        assert self._http is not None
        c = self.cfg
        while not self._media_on:
            self._media_changed.clear()
            await wait_first(stop, self._media_changed)
            if stop.is_set():
                raise Stopped
        self.nodes.moved.clear()
        whip = WhipClient(self._http, self.nodes.current, c.unit_id, c.token, c.connect_timeout_s)
        s = _Session()
        try:
            self._media_changed.clear()
            await until_stopped(stop, self._whip_setup(s, whip))
            assert s.publisher is not None
            await wait_first(stop, s.publisher.ended, self._media_changed, self.nodes.moved)
            if not stop.is_set() and s.publisher.ended.is_set():
                self._log(logging.INFO, "WHIP session ended: peer connection %s", s.publisher.state)
            elif not stop.is_set() and self.nodes.moved.is_set():
                self._log(logging.INFO, "WHIP session ends: the link moved to %s", self.nodes.current)
            return True
        finally:
            if s.whip is not None:
                await whip.delete(s.whip)
                self._log(logging.INFO, "WHIP session %s deleted", s.whip.session_id)
            await self._close_publisher(s, None, stopping=False)

    async def _mark_publishing(self) -> None:
        self.publish_count += 1
        await self._set_publishing(True)

    async def _set_publishing(self, on: bool) -> None:
        if on:
            self.publishing.set()
        else:
            self.publishing.clear()
            self.camera.clear()
        async with self._media:
            self._media.notify_all()

    # -- what machine orders control (machine_orders.UnitControls) ------------------------------

    @property
    def has_camera(self) -> bool:
        return self.cfg.video.kind != "none"

    @property
    def has_microphone(self) -> bool:
        return self.cfg.audio.kind != "none"

    async def set_media(self, on: bool, timeout_s: float) -> bool:
        """Switch publishing on or off; True once the unit is (or is not) publishing."""
        if self._media_on != on:
            self._media_on = on
            self._media_changed.set()
            self._log(logging.INFO, "media switched %s", "on" if on else "off")
        async with self._media:
            try:
                await asyncio.wait_for(self._media.wait_for(lambda: self.publishing.is_set() == on), timeout_s)
            except TimeoutError:
                return False
        return True

    async def take_snapshot(self, order: Order) -> dict[str, Any]:
        if self.publishing.is_set():
            await self.camera.wait_ready(CAMERA_READY_S)
        jpeg = await self.camera.jpeg()
        if jpeg is None:
            raise FieldClientError("摄像头未开启 the camera is off (not publishing): start recording first")
        if self._http is None:
            self._http = aiohttp.ClientSession()
        c = self.cfg
        stored = await upload_snapshot(self._http, self.nodes.current, c.unit_id, c.token, jpeg, order.id,
                                       self._clock(), timeout_s=max(10.0, c.connect_timeout_s))
        self._log(logging.INFO, "snapshot %s stored (%d bytes, sha256 %s)", stored.get("snapshot_id"), len(jpeg),
                  str(stored.get("sha256", ""))[:12])
        return {k: stored[k] for k in ("snapshot_id", "sha256", "bytes") if k in stored}

    async def call_back(self, order: Order) -> None:
        link = self._link
        if link is None or link.lost.is_set():
            raise LinkError("not connected to the server: the call-back cannot be placed")
        await link.call("callback", {"instruction_id": order.id})

    async def mark_notice(self, officer: str | None) -> dict[str, Any]:
        """The officer gave the spoken notice (已告知): tell the server now, over the current link.
        :class:`LinkError` when not connected or refused (``not_in_running_action``)."""
        link = self._link
        if link is None or link.lost.is_set():
            raise LinkError("not connected to the server: the notice cannot be marked now")
        return await link.call("notice", {"officer": officer} if officer else {})

    def _here(self) -> Fix | None:
        return self._last_fix

    # -- positions and instructions -----------------------------------------------------------

    async def _sample_positions(self, source: PositionSource, fixes: FixBuffer) -> None:
        """One fix every ``position_interval_s`` into the buffer, link or no link."""
        loop = asyncio.get_running_loop()
        interval = self.cfg.position_interval_s
        due = loop.time()
        while True:
            position = source.position(self._clock())
            if position is not None:
                self._last_fix = position
                # Whole milliseconds, so a fix resent as a single ``position`` (ISO text, ms)
                # carries exactly the ``ts`` of its batch copy and the server sees a duplicate.
                fixes.append(replace(position, ts=round(position.ts, 3)))
            due += interval
            now = loop.time()
            if due < now:  # the loop was held up: skip the missed ticks rather than burst
                due = now + interval
            await asyncio.sleep(due - now)

    async def _send_positions(self, link: PositionLink, uploader: PositionUploader) -> None:
        """Buffered fixes over this link, oldest first, until the attempt cancels it."""
        await uploader.drain(link)

    async def _send_answers(self, link: UnitLink) -> None:
        """The officer's and the machine orders' answers, over this link while it lasts."""
        try:
            await self.answers.drain(link)
        except LinkError as exc:
            self._log(logging.INFO, "answers wait for the next link: %s", exc)

    async def _pull_instructions(self, link: UnitLink) -> None:
        """Everything queued while the unit was away, in order, right after connecting."""
        assert self.inbox is not None
        try:
            await self.inbox.pull(link)
        except LinkError as exc:
            self._log(logging.WARNING, "instruction sync failed: %s (retried on the next pending or connect)", exc)


async def run_unit(cfg: UnitConfig, stop: asyncio.Event, *, loops: LoopCache | None = None,
                   rng: random.Random | None = None) -> None:
    """Run one unit until ``stop`` is set, reconnecting with backoff; returns after cleanup.

    ``loops`` shares pre-encoded test-pattern loops between units of one process (a fleet or
    the server's demo mode); by default the unit builds its own.
    """
    await FieldUnit(cfg, loops=loops, rng=rng).run(stop)
