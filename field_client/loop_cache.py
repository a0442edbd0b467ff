"""Encoded loops built once per spec and shared by every track of a process."""

from __future__ import annotations

import asyncio

from .encoded_loop import AudioLoopSpec, EncodedAudioLoop, EncodedLoop, VideoLoopSpec


class LoopCache:
    """Builds each loop once per spec and hands the same object to every caller.

    Owned by whoever runs the tracks (one per field-client process or per fleet), never global.
    Builds run one at a time in a worker thread, so concurrent callers wait for the first build.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._video: dict[VideoLoopSpec, EncodedLoop] = {}
        self._audio: dict[AudioLoopSpec, EncodedAudioLoop] = {}

    async def video(self, spec: VideoLoopSpec | None = None) -> EncodedLoop:
        """The loop of ``spec`` (default: :class:`VideoLoopSpec` defaults), built on first use."""
        spec = spec or VideoLoopSpec()
        async with self._lock:
            loop = self._video.get(spec)
            if loop is None:
                loop = await asyncio.to_thread(EncodedLoop.build, spec)
                self._video[spec] = loop
            return loop

    async def audio(self, spec: AudioLoopSpec | None = None) -> EncodedAudioLoop:
        """The loop of ``spec`` (default: :class:`AudioLoopSpec` defaults), built on first use."""
        spec = spec or AudioLoopSpec()
        async with self._lock:
            loop = self._audio.get(spec)
            if loop is None:
                loop = await asyncio.to_thread(EncodedAudioLoop.build, spec)
                self._audio[spec] = loop
            return loop
