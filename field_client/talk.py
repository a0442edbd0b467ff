"""Talk-back: the command room speaks to this unit. The unit joins the operator's audio as a
listener (``talk_join``) and plays it out, or with no audio device counts the frames it hears."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .errors import LinkError
from .link import UnitLink

logger = logging.getLogger(__name__)


class TalkListener:
    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.frames_heard = 0
        self._talks: dict[str, tuple[RTCPeerConnection, list[asyncio.Task[None]]]] = {}

    async def on_talk(self, link: UnitLink, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("talk_id"), str):
            return
        talk_id = data["talk_id"]
        pc = RTCPeerConnection()
        tasks: list[asyncio.Task[None]] = []
        self._talks[talk_id] = (pc, tasks)
        pc.on("track", lambda track: tasks.append(asyncio.ensure_future(self._listen(track))))
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        try:
            ack = await link.call("talk_join", {"talk_id": talk_id, "sdp": pc.localDescription.sdp})
            await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
            logger.info("unit %s: talk-back from %s: listening", self.unit_id, data.get("from", "?"))
        except LinkError as exc:
            logger.warning("unit %s: could not join talk-back %s: %s", self.unit_id, talk_id, exc)
            await self._end(talk_id)

    async def _listen(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames_heard += 1
        except MediaStreamError:
            return

    async def on_talk_end(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("talk_id"), str):
            await self._end(data["talk_id"])
            logger.info("unit %s: talk-back ended (%d audio frames heard)", self.unit_id, self.frames_heard)

    async def _end(self, talk_id: str) -> None:
        entry = self._talks.pop(talk_id, None)
        if entry is None:
            return
        pc, tasks = entry
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pc.close()

    async def close(self) -> None:
        for talk_id in list(self._talks):
            await self._end(talk_id)
