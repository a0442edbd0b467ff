"""Tracks that replay encoded loops as ``av.Packet`` objects, which aiortc sends without encoding.

aiortc's ``RTCRtpSender`` packetizes a packet a track returns instead of encoding a frame
(``RTCRtpSender._next_encoded_frame`` calls the encoder's ``pack`` for an ``av.Packet``).
:class:`EncodedVideoTrack` replays an :class:`~field_client.encoded_loop.EncodedLoop` and sends a
keyframe at any position when the receiver asks (:func:`attach_keyframe_requests`);
:class:`EncodedAudioTrack` replays an :class:`~field_client.encoded_loop.EncodedAudioLoop`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Callable

import av
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.stream import Stream

from media.passthrough import on_keyframe_request

from .encoded_loop import (
    AUDIO_CLOCK_RATE,
    AUDIO_TIME_BASE,
    OPUS_FRAME_SAMPLES,
    VIDEO_CLOCK_RATE,
    VIDEO_TIME_BASE,
    EncodedAudioLoop,
    EncodedLoop,
)

# A track that falls further behind its schedule than this (event loop stalled, machine
# suspended) restarts its schedule from now instead of sending a burst to catch up.
MAX_LAG_S = 1.0

PacketCallback = Callable[[bytes, bool], None]


class _Pacer:
    """Schedules item ``n`` at ``start + n * interval`` on the event loop clock (no drift)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._start: float | None = None

    async def wait(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        if self._start is None:
            self._start = now - n * self.interval_s
        delay = self._start + n * self.interval_s - now
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -MAX_LAG_S:
            self._start = now - n * self.interval_s


class EncodedVideoTrack(MediaStreamTrack):
    """Replays an :class:`EncodedLoop` as ``av.Packet`` objects at the loop's frame rate.

    ``pts`` counts 90 kHz ticks from 0 and keeps increasing across loop wraps. The first packet
    is a keyframe at ``start_index`` (random by default, so a fleet does not send keyframes in
    lockstep); afterwards keyframes come at each loop start and after :meth:`request_keyframe`.
    ``on_packet(data, is_keyframe)`` sees exactly the bytes handed to the sender.
    """

    kind = "video"

    def __init__(
        self,
        loop: EncodedLoop,
        *,
        start_index: int | None = None,
        rng: random.Random | None = None,
        on_packet: PacketCallback | None = None,
    ) -> None:
        super().__init__()
        self.loop = loop
        count = len(loop.frames)
        if start_index is None:
            start_index = (rng or random.Random()).randrange(count)
        self._offset = start_index % count
        self._sent = 0
        self._force_keyframe = True
        self._pacer = _Pacer(1 / loop.spec.fps)
        self.on_packet = on_packet
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        """Make the next returned packet a keyframe (called for a receiver's PLI or FIR)."""
        self.keyframe_requests += 1
        self._force_keyframe = True

    async def recv(self) -> av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.wait(self._sent)
        if self.readyState != "live":
            raise MediaStreamError
        index = (self._offset + self._sent) % len(self.loop.frames)
        delta, key = self.loop.frames[index]
        if self._force_keyframe:
            self._force_keyframe = False
            data, keyframe = key, True
        else:
            data, keyframe = delta, self.loop.delta_is_keyframe[index]
        packet = av.Packet(data)
        packet.pts = self._sent * VIDEO_CLOCK_RATE // self.loop.spec.fps
        packet.dts = packet.pts
        packet.time_base = VIDEO_TIME_BASE
        self._sent += 1
        if self.on_packet is not None:
            self.on_packet(data, keyframe)
        return packet


class EncodedAudioTrack(MediaStreamTrack):
    """Replays an :class:`EncodedAudioLoop`: one Opus packet per 20 ms, ``pts`` on 1/48000."""

    kind = "audio"

    def __init__(
        self,
        loop: EncodedAudioLoop,
        *,
        start_index: int | None = None,
        rng: random.Random | None = None,
        on_packet: PacketCallback | None = None,
    ) -> None:
        super().__init__()
        self.loop = loop
        count = len(loop.packets)
        if start_index is None:
            start_index = (rng or random.Random()).randrange(count)
        self._offset = start_index % count
        self._sent = 0
        self._pacer = _Pacer(OPUS_FRAME_SAMPLES / AUDIO_CLOCK_RATE)
        self.on_packet = on_packet

    async def recv(self) -> av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.wait(self._sent)
        if self.readyState != "live":
            raise MediaStreamError
        data = self.loop.packets[(self._offset + self._sent) % len(self.loop.packets)]
        packet = av.Packet(data)
        packet.pts = self._sent * OPUS_FRAME_SAMPLES
        packet.dts = packet.pts
        packet.time_base = AUDIO_TIME_BASE
        self._sent += 1
        if self.on_packet is not None:
            self.on_packet(data, True)
        return packet


def attach_keyframe_requests(sender: RTCRtpSender, track: EncodedVideoTrack) -> None:
    """Route the receiver's PLI/FIR for ``sender`` to ``track.request_keyframe``.

    aiortc's ``RTCRtpSender`` only sets a flag for PLI/FIR that its ``pack()`` path ignores;
    :func:`media.passthrough.on_keyframe_request` overrides that on this sender instance only.
    """
    on_keyframe_request(sender, track.request_keyframe)
