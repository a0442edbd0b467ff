"""The relay's channel is the archive's frame source: taps get every frame, keyframe requests reach
the publisher. The assignment to :class:`FrameSource` is what mypy checks; the rest runs it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.stream import Stream

from field_client.encoded_loop import EncodedLoop
from media.relay import Channel, RelayConfig
from recordings.source import EncodedFrame, FrameSource


@dataclass(frozen=True)
class _Codec:
    mimeType: str = "video/VP8"
    clockRate: int = 90_000


class _Track(MediaStreamTrack):
    """A publisher's remote track as the passthrough decoder makes it: ``av.Packet`` per frame."""

    kind = "video"

    def __init__(self, frames: list[tuple[bytes, bool]]) -> None:
        super().__init__()
        self._frames = list(frames)

    async def recv(self) -> av.Packet[Stream]:
        if not self._frames:
            raise MediaStreamError
        data, _ = self._frames.pop(0)
        packet = av.Packet(data)
        packet.pts = 3000 * (10 - len(self._frames))
        return packet


async def test_a_relay_channel_feeds_taps_and_forwards_keyframe_requests(vp8_loop: EncodedLoop) -> None:
    channel = Channel("bc-src", RelayConfig(pli_min_interval_s=0.0), time.monotonic)
    source: FrameSource = channel
    got: list[tuple[bytes, int | None, bool]] = []
    ended = asyncio.Event()
    asked: list[str] = []
    asked_again = asyncio.Event()
    frames = [(key if i == 0 else delta, i == 0) for i, (delta, key) in enumerate(vp8_loop.frames[:10])]

    def tap(frame: EncodedFrame, keyframe: bool) -> None:
        got.append((bytes(frame), frame.pts, keyframe))
        if len(got) == len(frames):
            ended.set()

    async def request_keyframe() -> None:
        asked.append("pli")
        if len(asked) == 2:
            asked_again.set()

    source.add_tap("video", tap)
    channel.video.attach_source("pub-1", _Track(frames), _Codec(), request_keyframe)
    await asyncio.wait_for(ended.wait(), 10)
    assert [(data, keyframe) for data, _, keyframe in got] == frames
    pts = [p for _, p, _ in got if p is not None]
    assert len(pts) == len(got) and pts == sorted(pts)

    source.request_keyframe("recording")  # the first request was the new publisher's
    await asyncio.wait_for(asked_again.wait(), 10)

    source.remove_tap("video", tap)
    source.remove_tap("video", tap)  # a second removal is ignored
    assert channel.video.taps == []
    await channel.close()
