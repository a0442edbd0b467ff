"""Which media a unit publishes: the pre-encoded test pattern and tone, a file, a device, none.

The test pattern and tone come from :mod:`field_client.encoded_loop` and are never encoded in real
time: the loops are shared through a :class:`~field_client.loop_cache.LoopCache`, and each publish attempt gets
fresh tracks on them. Files and capture devices go through aiortc's ``MediaPlayer``, whose
decoded frames the sender encodes (acceptable for a single real unit).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import av
from aiortc.contrib.media import MediaBlackhole, MediaPlayer
from aiortc.mediastreams import MediaStreamTrack

from .encoded_loop import AudioLoopSpec, VideoLoopSpec
from .encoded_track import EncodedAudioTrack, EncodedVideoTrack
from .errors import SourceError
from .loop_cache import LoopCache

logger = logging.getLogger(__name__)

VIDEO_KINDS = ("test-pattern", "file", "device", "none")
AUDIO_KINDS = ("tone", "file", "device", "none")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--video``/``--audio`` value: ``kind`` plus the path or device after ``:``."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def _parse(text: str, kinds: tuple[str, ...], synthetic: str, option: str) -> SourceSpec:
    kind, sep, target = text.partition(":")
    if kind in (synthetic, "none") and not sep:
        return SourceSpec(kind)
    if kind in ("file", "device") and target:
        return SourceSpec(kind, target)
    choices = "|".join(f"{k}:PATH" if k in ("file", "device") else k for k in kinds)
    raise ValueError(f"{option} must be one of {choices}, got {text!r}")


def parse_video_source(text: str) -> SourceSpec:
    """``test-pattern``, ``file:PATH``, ``device:/dev/video0`` or ``none``."""
    return _parse(text, VIDEO_KINDS, "test-pattern", "--video")


def parse_audio_source(text: str) -> SourceSpec:
    """``tone``, ``file:PATH``, ``device:NAME`` (ALSA, e.g. ``device:hw:0``) or ``none``."""
    return _parse(text, AUDIO_KINDS, "tone", "--audio")


class FrameTap(MediaStreamTrack):
    """Passes a decoded video track through, showing each frame to ``on_frame`` (the still camera)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, on_frame: Callable[[av.VideoFrame], None]) -> None:
        super().__init__()
        self.source = source
        self._on_frame = on_frame

    async def recv(self) -> Any:
        frame = await self.source.recv()
        if isinstance(frame, av.VideoFrame):
            self._on_frame(frame)
        return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()


@dataclass
class MediaSources:
    """The tracks of one publish attempt; :meth:`close` ends them and any player behind them."""

    video: MediaStreamTrack | None = None
    audio: MediaStreamTrack | None = None
    players: list[MediaPlayer] = field(default_factory=list)
    # A player decodes every stream of its file and queues frames for each of its tracks, read
    # or not; the tracks we do not publish are drained here so their queues stay empty.
    drain: MediaBlackhole | None = None

    async def close(self) -> None:
        """Idempotent: ends the tracks, which also stops the players' reader threads."""
        if self.drain is not None:
            await self.drain.stop()
            self.drain = None
        tracks = [self.video, self.audio]
        for player in self.players:
            tracks += [player.video, player.audio]
        for track in tracks:
            if track is not None:
                track.stop()


@dataclass(frozen=True)
class PatternOptions:
    """Test-pattern settings; units with equal options share one encoded loop."""

    codec: str = "vp8"
    width: int = 640
    height: int = 480
    fps: int = 30
    label: str = "FIELD TEST"

    def video_spec(self) -> VideoLoopSpec:
        return VideoLoopSpec(codec=self.codec, width=self.width, height=self.height,
                             fps=self.fps, label=self.label)


async def _player(target: str, *, device_format: str | None = None,
                  options: dict[str, str] | None = None, loop: bool = False) -> MediaPlayer:
    # MediaPlayer opens the container or device synchronously; keep that off the event loop.
    return await asyncio.to_thread(MediaPlayer, target, format=device_format, options=options, loop=loop)


async def open_sources(
    video: SourceSpec,
    audio: SourceSpec,
    pattern: PatternOptions,
    loops: LoopCache,
    *,
    rng: random.Random | None = None,
    on_video_packet: Callable[[bytes, bool], None] | None = None,
    on_video_frame: Callable[[av.VideoFrame], None] | None = None,
) -> MediaSources:
    """Open the tracks for one publish attempt. A file named for both kinds is opened once."""
    sources = MediaSources()
    try:
        shared_file: MediaPlayer | None = None
        if video.kind == "file" and audio.kind == "file" and video.target == audio.target:
            assert video.target is not None
            shared_file = await _player(video.target, loop=True)
            sources.players.append(shared_file)

        if video.kind == "test-pattern":
            loop = await loops.video(pattern.video_spec())
            sources.video = EncodedVideoTrack(loop, rng=rng, on_packet=on_video_packet)
        elif video.kind in ("file", "device"):
            assert video.target is not None
            player = shared_file
            if player is None:
                if video.kind == "file":
                    player = await _player(video.target, loop=True)
                else:
                    player = await _player(video.target, device_format="v4l2", options={
                        "video_size": f"{pattern.width}x{pattern.height}",
                        "framerate": str(pattern.fps),
                    })
                sources.players.append(player)
            if player.video is None:
                raise ValueError(f"--video {video}: no video stream found")
            sources.video = player.video if on_video_frame is None else FrameTap(player.video, on_video_frame)

        if audio.kind == "tone":
            sources.audio = EncodedAudioTrack(await loops.audio(AudioLoopSpec()), rng=rng)
        elif audio.kind in ("file", "device"):
            assert audio.target is not None
            player = shared_file
            if player is None:
                if audio.kind == "file":
                    player = await _player(audio.target, loop=True)
                else:
                    player = await _player(audio.target, device_format="alsa")
                sources.players.append(player)
            if player.audio is None:
                raise ValueError(f"--audio {audio}: no audio stream found")
            sources.audio = player.audio

        published = {id(sources.video), id(sources.audio),
                     id(sources.video.source) if isinstance(sources.video, FrameTap) else 0}
        unused = [t for p in sources.players for t in (p.video, p.audio) if t is not None and id(t) not in published]
        if unused:
            sources.drain = MediaBlackhole()
            for track in unused:
                sources.drain.addTrack(track)
            await sources.drain.start()
        return sources
    except BaseException as exc:
        await sources.close()
        if isinstance(exc, (av.FFmpegError, OSError, ValueError)):
            raise SourceError(f"cannot open --video {video} / --audio {audio}: {exc}") from exc
        raise
