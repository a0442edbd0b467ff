"""One publishing peer connection: send-only transceivers, codec choice, state watching.

A :class:`MediaPublisher` lives for one publish attempt. ``ended`` is set when the connection
goes ``failed`` or ``closed``, or does not reach ``connected`` within the ICE timeout; the unit
then closes it and publishes again on a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, TypeVar

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from .codec import video_mime_type
from .encoded_track import EncodedVideoTrack, attach_keyframe_requests
from .sources import MediaSources

logger = logging.getLogger(__name__)

T = TypeVar("T")

def preferred_codecs(kind: str, codec: str | None = None) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities narrowed to ``codec`` (video, with its RTX) or Opus (audio)."""
    wanted = video_mime_type(codec or "vp8") if kind == "video" else "audio/opus"
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in caps if c.mimeType.lower() == wanted.lower()]
    if not chosen:
        raise ValueError(f"aiortc offers no {wanted}")
    return chosen + [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]


class MediaPublisher:
    """Publishes ``sources`` on a new ``RTCPeerConnection``; negotiate, watch, :meth:`close`."""

    def __init__(self, unit_id: str, sources: MediaSources, codec: str,
                 ice_servers: tuple[str, ...] = (), ice_connect_timeout_s: float = 20.0) -> None:
        self.unit_id = unit_id
        self.sources = sources
        self.codec = codec
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self._ice_connect_timeout_s = ice_connect_timeout_s
        self._watchdog: asyncio.Task[None] | None = None
        self._steps: list[asyncio.Future[Any]] = []
        self._answered = False
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in ice_servers]))
        self._pc.on("connectionstatechange", self._on_state)

    @property
    def state(self) -> str:
        return self._pc.connectionState

    async def _on_state(self) -> None:
        state = self._pc.connectionState
        logger.info("unit %s: peer connection %s", self.unit_id, state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.ended.set()

    async def _uninterrupted(self, aw: Awaitable[T]) -> T:
        """Run one negotiation step to its end even if the caller is cancelled.

        aioice registers a gathering round's sockets only when the round ends, and aiortc's
        ``setRemoteDescription`` closes the ICE transports BUNDLE makes redundant; cancelled
        half-way, either leaves UDP sockets open. :meth:`close` waits for these steps.
        """
        step = asyncio.ensure_future(aw)
        self._steps.append(step)
        return await asyncio.shield(step)

    async def create_offer(self) -> str:
        """A complete offer: aiortc gathers every candidate before ``localDescription``."""
        return await self._uninterrupted(self._make_offer())

    async def _make_offer(self) -> str:
        if self.sources.video is not None:
            transceiver = self._pc.addTransceiver(self.sources.video, direction="sendonly")
            transceiver.setCodecPreferences(preferred_codecs("video", self.codec))
            if isinstance(self.sources.video, EncodedVideoTrack):
                # Pre-encoded frames bypass aiortc's encoder, so its keyframe flag would be lost.
                attach_keyframe_requests(transceiver.sender, self.sources.video)
        if self.sources.audio is not None:
            transceiver = self._pc.addTransceiver(self.sources.audio, direction="sendonly")
            transceiver.setCodecPreferences(preferred_codecs("audio"))
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return self._pc.localDescription.sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the server's answer and start the ICE watchdog."""
        await self._uninterrupted(self._apply_answer(answer_sdp))
        self._watchdog = asyncio.create_task(self._watch_ice(), name=f"ice-watchdog-{self.unit_id}")

    async def _apply_answer(self, answer_sdp: str) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        self._answered = True

    async def _watch_ice(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), self._ice_connect_timeout_s)
        except TimeoutError:
            logger.warning("unit %s: peer connection not connected after %.0f s",
                           self.unit_id, self._ice_connect_timeout_s)
            self.ended.set()

    async def _settle(self, timeout_s: float) -> None:
        """Wait until the connection is connected or ended, at most ``timeout_s`` seconds."""
        waiters = [asyncio.create_task(self.connected.wait()), asyncio.create_task(self.ended.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def close(self) -> None:
        """Idempotent: stops the watchdog, closes the connection and the sources.

        Waits for a negotiation step still running first (see :meth:`_uninterrupted`).
        """
        if self._steps:
            await asyncio.wait(self._steps)
            for step in self._steps:
                if not step.cancelled():
                    step.exception()  # retrieved: the caller saw it, or was cancelled
            self._steps.clear()
        if self._answered and not self.connected.is_set() and not self.ended.is_set():
            # aiortc starts ICE in a task of its own after setRemoteDescription; closing before
            # that task reaches the transport makes it die with an unretrieved InvalidStateError.
            await self._settle(timeout_s=2.0)
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        await self._pc.close()
        await self.sources.close()
        self.ended.set()
