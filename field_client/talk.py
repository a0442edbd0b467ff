"""Talk-back: the command room speaks to this unit. The unit joins the operator's audio as a
listener (``talk_join``), decodes it, counts the frames it hears and measures the loudest
frequency of the last second (logged when the talk ends: proof the voice arrived, not silence)."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .errors import LinkError
from .link import UnitLink

logger = logging.getLogger(__name__)


class TalkListener:
    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.frames_heard = 0
        self.loudest_hz: float | None = None  # of the last second heard, at the last talk's end
        self._samples: collections.deque[np.ndarray] = collections.deque()
        self._sample_count = 0
        self._rate = 48_000
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
                frame = await track.recv()
                self.frames_heard += 1
                if isinstance(frame, av.AudioFrame):
                    self._keep(frame)
        except MediaStreamError:
            return

    async def on_talk_end(self, link: UnitLink, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("talk_id"), str):
            await self._end(data["talk_id"])
            self.loudest_hz = self._loudest()
            loudest = f", loudest at {self.loudest_hz:.0f} Hz" if self.loudest_hz is not None else ""
            logger.info("unit %s: talk-back ended (%d audio frames heard%s)", self.unit_id, self.frames_heard, loudest)

    def _keep(self, frame: av.AudioFrame) -> None:
        """Keep the last second of what was heard, as mono samples."""
        self._rate = frame.sample_rate
        data = frame.to_ndarray().astype(np.float32)
        channels = len(frame.layout.channels)
        mono = data.reshape(-1, channels).mean(axis=1) if frame.format.is_packed else data.mean(axis=0)
        self._samples.append(mono)
        self._sample_count += len(mono)
        while self._sample_count - len(self._samples[0]) >= self._rate:
            self._sample_count -= len(self._samples.popleft())

    def _loudest(self) -> float | None:
        """The frequency with the most energy in the last second heard (None for silence)."""
        if not self._samples:
            return None
        samples = np.concatenate(list(self._samples))
        self._samples.clear()
        self._sample_count = 0
        if not np.any(samples):
            return None
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        spectrum[0] = 0.0
        return float(np.fft.rfftfreq(len(samples), 1 / self._rate)[int(np.argmax(spectrum))])

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
