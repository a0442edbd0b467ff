"""Live path domain: who publishes which unit on this node, who watches, and the rules between them.

Rules:
- One live publisher per unit. A second one gets ``409 already_publishing``, unless the current
  one has been silent for ``media.publisher_timeout_s`` (a unit that lost its link and came back
  before the server noticed): then the new one replaces it.
- Viewers attach to the unit's relay channel and stay attached when the publisher leaves; frames
  resume on the same peer connection when it returns. A viewer can only start while the unit
  publishes (``409 not_publishing`` otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

from media.errors import CodecMismatch, SdpError
from media.session import END_SETTLE_S
from recordings.source import FrameSource

from .auth import Person
from .config import MediaConfig
from .errors import BadSdp, Conflict, Forbidden, NotFound, Unavailable
from .media_host import HostedPublisher, HostedViewer, MediaHost
from .pulls import Pulls
from .revocation import Grant, Revocation
from .roster import Roster
from .stopping import Stopping
from .stores.accounts import Accounts

logger = logging.getLogger(__name__)

ViewerClosed = Callable[[dict[str, Any]], Awaitable[None]]
MediaLost = Callable[[str, str], Awaitable[None]]


class Recorder(Protocol):
    """What the live path tells the evidence archive (``recordings.archive.ArchiveService``)."""

    async def publish_started(self, unit_id: str, channel: FrameSource, video_codec: str | None,
                              audio_codec: str | None, failover: tuple[str, float] | None = None) -> Any: ...

    def publish_ended(self, unit_id: str, cause: str) -> None: ...


def ice_servers(config: MediaConfig) -> list[dict[str, Any]]:
    """The STUN/TURN servers handed to WebRTC peers (WHIP/WHEP ``Link`` headers, console config)."""
    return [s.as_rtc_dict() for s in config.ice_servers]


def gap_cause(reason: str) -> str:
    """Why a publisher ended, as a recording gap cause."""
    if reason.startswith("ended by the publisher"):
        return "unit_stopped"
    if reason.startswith("server shutting down"):
        return "server_stopped"
    if reason.startswith("credentials revoked"):
        return "access_revoked"
    if reason.startswith(WORKER_DIED):
        return "worker_restarted"
    return "link_lost"  # silence, failed connection, replaced after silence


TOUCH_INTERVAL_S = 5.0
WORKER_DIED = "media worker died"  # how a session ends when its media worker process dies (media_workers)


class LiveService:
    def __init__(self, accounts: Accounts, media: MediaHost, roster: Roster, config: MediaConfig, node_id: str,
                 on_viewer_closed: ViewerClosed, recorder: Recorder | None, revocation: Revocation,
                 stopping: Stopping | None = None, pulls: Pulls | None = None,
                 on_media_lost: MediaLost | None = None) -> None:
        self._on_media_lost = on_media_lost  # the unit is told to publish again (its media worker died)
        self._stopping = stopping
        self._pulls = pulls
        self._accounts = accounts
        self._revocation = revocation
        self._grants: dict[str, Grant] = {}  # by session id: what ends a session when its credential goes
        self._media = media
        self.relay = media.relay  # this process's own channels (pulled units; every unit without workers)
        self.roster = roster
        self._config = config
        self.node_id = node_id
        self._on_viewer_closed = on_viewer_closed
        self.publishers: dict[str, HostedPublisher] = {}
        self.viewers: dict[str, HostedViewer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._toucher: asyncio.Task[None] | None = None
        self.accepting = True
        self._recorder = recorder
        self.ice_servers = ice_servers(config)

    def relay_counters(self) -> dict[str, dict[str, int]]:
        """The relay counters of every process that carries this node's media (``Relay.counters``)."""
        return self._media.counters()

    def take_first_frames(self) -> list[float]:
        return self._media.take_first_frames()

    def start(self) -> None:
        self._toucher = asyncio.get_running_loop().create_task(self._touch_loop(), name="live-touch")

    async def _touch_loop(self) -> None:
        """Keep ``last_seen`` of publishing units fresh without flooding consoles with events."""
        while True:
            await asyncio.sleep(TOUCH_INTERVAL_S)
            for unit_id in list(self.publishers):
                try:
                    await self.roster.mark(unit_id, emit=False)
                except Exception as exc:
                    logger.warning("unit %s: last-seen update failed: %s", unit_id, exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _require_unit(self, unit_id: str) -> None:
        if await self._accounts.db.run(self._accounts.get_unit, unit_id) is None:
            raise NotFound(f"unknown unit {unit_id!r}", code="unknown_unit")

    # publishing --------------------------------------------------------------------------
    async def publish(self, unit_id: str, offer_sdp: str, via: str, credential: str) -> tuple[str, str]:
        """Accept an offer from an authenticated unit; answer ``(session_id, answer_sdp)``.

        ``credential`` is the hash of the token the unit authenticated with: when it is rotated
        or the unit disabled, the session ends (:mod:`dispatch_server.revocation`)."""
        if not self.accepting:
            raise Unavailable("server is shutting down; retry on another node or later", code="shutting_down")
        lock = self._locks.setdefault(unit_id, asyncio.Lock())
        async with lock:
            if self._pulls is not None:
                await self._pulls.stop(unit_id)  # the unit publishes here now: its media comes from here
            current = self.publishers.get(unit_id)
            if current is not None and current.ended_reason is None:
                silent = current.media_silence_s()
                if silent < self._config.publisher_timeout_s:
                    raise Conflict(
                        f"unit {unit_id!r} is already publishing (session {current.id}); "
                        f"a publisher silent for {self._config.publisher_timeout_s:g} s is replaced",
                        code="already_publishing",
                    )
                await current.close(f"replaced by a new publisher after {silent:.1f} s of silence")
            try:
                session, answer = await self._media.publish(unit_id, unit_id, offer_sdp,
                                                            self._config.publisher_timeout_s, self._publisher_ended)
            except SdpError as exc:
                raise BadSdp(str(exc)) from exc
            self.publishers[unit_id] = session
            self._grants[session.id] = self._revocation.unit_opened(unit_id, credential, f"{via} publish",
                                                                    session.close)
        logger.info("unit %s: publishing via %s, session %s", unit_id, via, session.id)
        failover = await self._failover(unit_id)
        if self._recorder is not None:
            try:
                await self._recorder.publish_started(unit_id, session.channel, _codec_name(session.codecs.get("video")),
                                                    _codec_name(session.codecs.get("audio")), failover)
            except Exception:  # live view goes on; the archive raises its own alarm
                logger.exception("unit %s: recording could not start", unit_id)
        await self.roster.mark(
            unit_id,
            publishing=True,
            video_codec=_codec_name(session.codecs.get("video")),
            audio_codec=_codec_name(session.codecs.get("audio")),
            lost_publish_node="",
            lost_publish_at=None,
        )
        return session.id, answer

    async def _failover(self, unit_id: str) -> tuple[str, float] | None:
        """``(node, since)`` when the unit's last publish, on another node, was never ended there:
        that node is gone (presence reads its publish as lost), or the unit linked here first
        (:meth:`Roster.link_opened` noted it), or presence still shows it publishing there."""
        try:
            p = await self.roster.presence.get(unit_id)
        except Exception as exc:  # Redis hiccup: the recording starts without the fail-over gap
            logger.warning("unit %s: presence read failed: %s", unit_id, exc)
            return None
        if p is None:
            return None
        if p.lost_publish_node and p.lost_publish_node != self.node_id:
            node, since = p.lost_publish_node, p.lost_publish_at
        elif p.publishing and p.node != self.node_id:  # that node looks alive still, but the unit is here
            node, since = p.node, p.last_seen
        else:
            return None
        logger.info("unit %s: fail-over from node %s", unit_id, node)
        return node, since or time.time()

    def _publisher_ended(self, session: HostedPublisher, reason: str) -> None:
        self._revocation.released(self._grants.pop(session.id, None))
        if self.publishers.get(session.unit_id) is session:
            del self.publishers[session.unit_id]
            if self._recorder is not None:
                # During a planned stop every publisher ends because of it, whichever way its link went.
                planned = self._stopping is not None and self._stopping.planned
                self._recorder.publish_ended(session.unit_id, "server_stopped" if planned else gap_cause(reason))
            self._spawn(self.roster.mark(session.unit_id, publishing=False))
            if reason.startswith(WORKER_DIED) and self._on_media_lost is not None:
                self._spawn(self._on_media_lost(session.unit_id, reason))

    async def unpublish(self, unit_id: str, session_id: str) -> None:
        session = self.publishers.get(unit_id)
        if session is None or session.id != session_id:
            raise NotFound(f"no publishing session {session_id!r} for unit {unit_id!r}", code="unknown_session")
        # Its last frames may still be being recovered: the WHIP client keeps its peer connection
        # until the DELETE is answered, and answers NACKs meanwhile.
        await session.close("ended by the publisher", settle_s=END_SETTLE_S)

    # viewing -----------------------------------------------------------------------------
    async def watch(self, unit_id: str, offer_sdp: str, person: Person) -> tuple[str, str]:
        """A person watches a unit: from this node's channel, fed by the unit's publisher here or
        by a pull from the node it publishes on (:mod:`dispatch_server.pulls`)."""
        person.require("live.watch")
        if not self.accepting:
            raise Unavailable("server is shutting down", code="shutting_down")
        await self._require_unit(unit_id)
        if unit_id not in self.publishers and not (self._pulls is not None and self._pulls.running(unit_id)):
            presence = await self.roster.presence.get(unit_id)
            if presence is not None and presence.publishing and presence.node != self.node_id:
                if self._pulls is None:
                    raise Conflict(
                        f"unit {unit_id!r} publishes on node {presence.node!r}; watch it there",
                        code="publishing_elsewhere",
                    )
                await self._pulls.ensure(unit_id, presence.node)
            else:
                raise Conflict(f"unit {unit_id!r} is not publishing", code="not_publishing")
        session, answer = await self._attach_viewer(unit_id, offer_sdp, person.username)
        self._grants[session.id] = self._revocation.person_opened(person.token_hash, person.role, "viewer",
                                                                  session.close)
        return session.id, answer

    async def watch_for_node(self, unit_id: str, offer_sdp: str, node: str) -> tuple[str, str]:
        """Another node (authenticated by a node token at the edge) pulls a unit publishing here.
        Only the unit's own publisher here is served: a node never passes on what it pulled, so
        pulls cannot chain or loop."""
        if not self.accepting:
            raise Unavailable("server is shutting down", code="shutting_down")
        if unit_id not in self.publishers:
            raise Conflict(f"unit {unit_id!r} is not publishing on node {self.node_id!r}", code="not_publishing")
        session, answer = await self._attach_viewer(unit_id, offer_sdp, f"node:{node}")
        logger.info("unit %s: node %s pulls it, session %s", unit_id, node, session.id)
        return session.id, answer

    async def _attach_viewer(self, unit_id: str, offer_sdp: str, viewer: str) -> tuple[HostedViewer, str]:
        try:
            session, answer = await self._media.watch(unit_id, unit_id, offer_sdp, self._viewer_ended, viewer)
        except (SdpError, CodecMismatch) as exc:
            raise BadSdp(str(exc)) from exc
        self.viewers[session.id] = session
        return session, answer

    def _viewer_ended(self, session: HostedViewer, reason: str) -> None:
        self._revocation.released(self._grants.pop(session.id, None))
        if self.viewers.pop(session.id, None) is not None:
            self._spawn(
                self._on_viewer_closed({"session_id": session.id, "unit_id": session.unit_id, "reason": reason})
            )

    async def unwatch(self, unit_id: str | None, session_id: str, person: Person) -> None:
        session = self.viewers.get(session_id)
        if session is None or (unit_id is not None and session.unit_id != unit_id):
            raise NotFound(f"no viewing session {session_id!r}", code="unknown_session")
        if session.viewer != person.username and person.role != "admin":
            raise Forbidden("that viewing session belongs to someone else")
        await session.close("ended by the viewer")

    async def unwatch_for_node(self, unit_id: str, session_id: str, node: str) -> None:
        """A node ends its pull (its last viewer left)."""
        session = self.viewers.get(session_id)
        if session is None or session.unit_id != unit_id or session.viewer != f"node:{node}":
            raise NotFound(f"no pull session {session_id!r} of node {node!r}", code="unknown_session")
        await session.close(f"pull of node {node} ended")

    # lifecycle ---------------------------------------------------------------------------
    async def close(self) -> None:
        """Drain: refuse new sessions, end every session (the media host closes after). Idempotent."""
        self.accepting = False
        if self._toucher is not None:
            self._toucher.cancel()
            await asyncio.gather(self._toucher, return_exceptions=True)
            self._toucher = None
        if self._pulls is not None:
            await self._pulls.close()
        sessions: list[Any] = [*self.viewers.values(), *self.publishers.values()]
        await asyncio.gather(*(s.close("server shutting down") for s in sessions), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()


def _codec_name(mime: str | None) -> str | None:
    return mime.split("/", 1)[1] if mime else None

