"""Inside one media worker process: the sessions of the units its front assigned to it.

A worker is a ``dispatch-server media-worker`` child of the front
(:mod:`dispatch_server.media_workers`). It runs peer connections and a relay in its own process
(:class:`~dispatch_server.media_host.LocalMediaHost`), answers the front's publish, watch and
close requests (``http/worker_api.py``), and tells the front over one event stream what the front
must know, in order:

- ``{"t": "ended", "session", "reason"}``: a session ended by itself (silence, failed connection);
- ``{"t": "silence", "s": {session: seconds}, "pc": {session: [lost, received]}}`` twice a second:
  each publisher's media silence and its RTP packet counts (``/metrics``' loss ratio),
  and ``{"t": "counters", "c", "ff"}``: the relay's cumulative counters and new first-frame delays;
- ``{"t": "f", "u", "k", "p", "key", "d"}``: a frame (unit, kind, pts, keyframe, bytes) of a unit
  the front taps, so that the front's archive stays the one writer of recordings and the ledger.

Events travel in batches (:meth:`MediaWorker.next_batch`): one msgpack array per websocket
message, whatever queued within ``EVENT_BATCH_S`` of the first. A recorded unit sends ~80 frames a
second; a message, a task wake-up and a write each cost the worker and the front more than the
frame's bytes (docs/benchmarks.md, "Media workers").

The front sends ``{"t": "tap", "u", "on"}`` and ``{"t": "kf", "u", "reason"}``, one per message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from media.relay import Channel, Tap

from .media_host import LocalMediaHost

logger = logging.getLogger(__name__)

SILENCE_INTERVAL_S = 0.5
EVENT_BATCH_S = 0.02  # events wait this long for others to share their message (recording takes frames every 0.1 s)
MAX_QUEUED_FRAMES = 2000  # ~10 s of one unit; frames beyond are dropped (control events never are)


class MediaWorker:
    """The sessions of this worker, by id, and the event stream to the front."""

    def __init__(self, host: LocalMediaHost, index: int) -> None:
        self.host = host
        self.index = index
        self.sessions: dict[str, Any] = {}
        self.publishers: set[str] = set()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames_dropped = 0
        self._taps: dict[str, list[tuple[Channel, str, Tap]]] = {}
        self._silence: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.host.start()
        self._silence = asyncio.get_running_loop().create_task(self._report_silence(), name="worker-silence")

    async def publish(self, unit_id: str, channel_id: str, offer_sdp: str, timeout_s: float) -> dict[str, Any]:
        session, answer = await self.host.publish(unit_id, channel_id, offer_sdp, timeout_s, self._ended)
        self.sessions[session.id] = session
        self.publishers.add(session.id)
        return {"session": session.id, "answer": answer, "codecs": session.codecs}

    async def watch(self, unit_id: str, channel_id: str, offer_sdp: str, viewer: str) -> dict[str, Any]:
        session, answer = await self.host.watch(unit_id, channel_id, offer_sdp, self._ended, viewer)
        self.sessions[session.id] = session
        return {"session": session.id, "answer": answer}

    async def close_session(self, session_id: str, reason: str, settle_s: float = 0.0) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        await session.close(reason, settle_s)
        return True

    def _ended(self, session: Any, reason: str) -> None:
        self.sessions.pop(session.id, None)
        self.publishers.discard(session.id)
        self.events.put_nowait({"t": "ended", "session": session.id, "reason": reason})

    # from the front ----------------------------------------------------------------------
    def command(self, message: dict[str, Any]) -> None:
        """One message of the front: start or stop tapping a unit's frames, or ask for a keyframe."""
        kind, unit_id = message.get("t"), str(message.get("u", ""))
        if kind == "tap":
            self._tap(unit_id, bool(message.get("on")))
        elif kind == "kf":
            self.host.relay.channel(unit_id).request_keyframe(str(message.get("reason", "front")))
        else:
            logger.warning("worker %d: unknown message from the front: %r", self.index, kind)

    def _tap(self, unit_id: str, on: bool) -> None:
        for channel, kind, tap in self._taps.pop(unit_id, []):
            channel.remove_tap(kind, tap)
        if not on:
            return
        channel = self.host.relay.channel(unit_id)
        taps: list[tuple[Channel, str, Tap]] = []
        for kind in ("video", "audio"):
            def tap(packet: Any, keyframe: bool, kind: str = kind) -> None:
                if self.events.qsize() >= MAX_QUEUED_FRAMES:
                    self.frames_dropped += 1
                    if self.frames_dropped % 100 == 1:
                        logger.warning("worker %d: unit %s: the front reads frames too slowly; %d dropped",
                                       self.index, unit_id, self.frames_dropped)
                    return
                self.events.put_nowait({"t": "f", "u": unit_id, "k": kind, "p": int(packet.pts or 0),
                                        "key": keyframe, "d": bytes(packet)})

            channel.add_tap(kind, tap)
            taps.append((channel, kind, tap))
        self._taps[unit_id] = taps

    async def next_batch(self) -> list[dict[str, Any]]:
        """The next events for the front, in order: the first to come and all queued with it
        within ``EVENT_BATCH_S``."""
        batch = [await self.events.get()]
        await asyncio.sleep(EVENT_BATCH_S)
        while not self.events.empty():
            batch.append(self.events.get_nowait())
        return batch

    async def _report_silence(self) -> None:
        while True:
            await asyncio.sleep(SILENCE_INTERVAL_S)
            publishers = [self.sessions[sid] for sid in self.publishers if sid in self.sessions]
            if publishers:
                counts = await asyncio.gather(*(s.packet_counts() for s in publishers))
                self.events.put_nowait({
                    "t": "silence", "s": {s.id: round(s.media_silence_s(), 3) for s in publishers},
                    "pc": {s.id: list(c) for s, c in zip(publishers, counts, strict=True) if c is not None}})
            relay = self.host.relay
            self.events.put_nowait({"t": "counters", "c": relay.counters(), "ff": relay.take_first_frames()})

    async def close(self) -> None:
        """End every session, then the relay. Idempotent."""
        if self._silence is not None:
            self._silence.cancel()
            await asyncio.gather(self._silence, return_exceptions=True)
            self._silence = None
        await asyncio.gather(*(s.close("media worker stopping") for s in list(self.sessions.values())),
                             return_exceptions=True)
        for unit_id in list(self._taps):
            self._tap(unit_id, False)
        await self.host.close()
