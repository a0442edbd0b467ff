"""Media sources: the pre-encoded pattern and tone, files through MediaPlayer, and ``none``."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import av
import pytest

from field_client.encoded_track import EncodedAudioTrack, EncodedVideoTrack
from field_client.errors import SourceError
from field_client.loop_cache import LoopCache
from field_client.sources import (
    PatternOptions,
    SourceSpec,
    open_sources,
    parse_audio_source,
    parse_video_source,
)

PATTERN = PatternOptions(codec="h264", width=160, height=120, label="bc-01")


@pytest.fixture
async def clip(tmp_path: Path) -> Path:
    """One second of colour bars and a tone, made by ffmpeg."""
    path = tmp_path / "clip.mp4"
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "1", "-pix_fmt", "yuv420p",
        "-c:v", "libx264", "-c:a", "aac", str(path),
    )
    async with asyncio.timeout(60):
        assert await proc.wait() == 0
    return path


def test_source_specs_parse() -> None:
    assert parse_video_source("test-pattern") == SourceSpec("test-pattern")
    assert parse_video_source("device:/dev/video0") == SourceSpec("device", "/dev/video0")
    assert parse_audio_source("device:hw:0,1") == SourceSpec("device", "hw:0,1")
    assert parse_audio_source("none") == SourceSpec("none")
    for bad in ("tone", "file", "file:", "test-pattern:x", "webcam"):
        with pytest.raises(ValueError, match="--video"):
            parse_video_source(bad)
    with pytest.raises(ValueError, match="--audio"):
        parse_audio_source("test-pattern")


@pytest.mark.timeout(60)
async def test_pattern_and_tone_are_pre_encoded_tracks_on_shared_loops() -> None:
    loops = LoopCache()
    first = await open_sources(SourceSpec("test-pattern"), SourceSpec("tone"), PATTERN, loops, rng=random.Random(1))
    second = await open_sources(SourceSpec("test-pattern"), SourceSpec("tone"), PATTERN, loops)
    try:
        assert isinstance(first.video, EncodedVideoTrack) and isinstance(first.audio, EncodedAudioTrack)
        assert isinstance(second.video, EncodedVideoTrack)
        assert first.video.loop is second.video.loop
        assert first.video.loop.spec.codec == "h264" and first.video.loop.spec.label == "bc-01"
        packet = await first.video.recv()
        assert isinstance(packet, av.Packet) and first.video.keyframe_requests == 0
    finally:
        await first.close()
        await second.close()
    assert first.video.readyState == "ended" and first.audio.readyState == "ended"


@pytest.mark.timeout(60)
async def test_none_opens_nothing() -> None:
    sources = await open_sources(SourceSpec("none"), SourceSpec("none"), PATTERN, LoopCache())
    assert sources.video is None and sources.audio is None and not sources.players
    await sources.close()


@pytest.mark.timeout(60)
async def test_file_video_with_tone_drains_the_unused_file_audio(clip: Path) -> None:
    sources = await open_sources(SourceSpec("file", str(clip)), SourceSpec("tone"), PATTERN, LoopCache())
    try:
        assert len(sources.players) == 1
        assert isinstance(sources.audio, EncodedAudioTrack)
        assert sources.drain is not None  # the file's own audio is read and dropped
        async with asyncio.timeout(20):
            assert sources.video is not None
            frame = await sources.video.recv()
        assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (160, 120)
    finally:
        await sources.close()
        await sources.close()  # idempotent


@pytest.mark.timeout(60)
async def test_one_file_for_both_kinds_is_opened_once(clip: Path) -> None:
    spec = SourceSpec("file", str(clip))
    sources = await open_sources(spec, spec, PATTERN, LoopCache())
    try:
        assert len(sources.players) == 1 and sources.drain is None
        player = sources.players[0]
        assert sources.video is player.video and sources.audio is player.audio
    finally:
        await sources.close()


@pytest.mark.timeout(60)
async def test_missing_file_fails_to_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="absent.mp4"):
        await open_sources(SourceSpec("file", str(tmp_path / "absent.mp4")), SourceSpec("none"), PATTERN, LoopCache())
