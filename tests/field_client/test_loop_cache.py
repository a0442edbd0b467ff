"""Loops are built once per spec and shared."""

from __future__ import annotations

import asyncio

from field_client.encoded_loop import EncodedAudioLoop, VideoLoopSpec
from field_client.loop_cache import LoopCache


async def test_loop_cache_builds_each_spec_once() -> None:
    cache = LoopCache()
    spec = VideoLoopSpec(codec="h264", width=160, height=120, frame_count=4)
    first, second = await asyncio.gather(cache.video(spec), cache.video(spec))
    assert first is second
    assert await cache.audio() is await cache.audio()
    assert isinstance(await cache.audio(), EncodedAudioLoop)
