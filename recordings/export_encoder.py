"""The last thread of an export: H.264 encoding (libx264) and muxing into an MP4 with
``+faststart``, the copied Opus packets alongside.
"""

from __future__ import annotations

import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.stream import AudioStream

from .export_errors import ExportError
from .export_timeline import ExportTimeline, open_segment

VIDEO_TB = Fraction(1, 90_000)
AUDIO_TB = Fraction(1, 48_000)
QUEUE_FRAMES = 24  # frames between the export's threads


class Encoder:
    """Writer thread: turns yuv420p arrays into H.264, muxes them and the copied Opus packets
    into the MP4 at ``path``, in the order they were handed over. The container is opened in
    the constructor (errors raise there) and closed by :meth:`finish` or :meth:`abort`."""

    def __init__(self, path: Path, tl: ExportTimeline, audio: bool, preset: str, crf: int, threads: int) -> None:
        self.frames = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._aborted = False
        self._q: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_FRAMES)
        self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            fps = max(1, round(1 / tl.step))
            self._video = self._out.add_stream("libx264", rate=fps)
            self._video.width, self._video.height, self._video.pix_fmt = tl.width, tl.height, "yuv420p"
            self._video.time_base = VIDEO_TB
            self._video.codec_context.time_base = VIDEO_TB
            self._video.codec_context.thread_count = threads
            self._video.options = {"preset": preset, "crf": str(crf), "g": str(2 * fps), "keyint_min": str(fps)}
            self._audio = None
            if audio:
                assert tl.audio_template is not None
                with open_segment(tl.audio_template) as c:
                    self._audio = self._out.add_stream_from_template(c.streams.audio[0])
        except BaseException:
            self._out.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"export-encode-{path.name}", daemon=True)
        self._thread.start()

    def video(self, yuv: np.ndarray, pts: int) -> None:
        self._put(("v", yuv, pts))

    def audio(self, packet: av.Packet[AudioStream], pts: int, duration: int) -> None:
        self._put(("a", packet, pts, duration))

    def _put(self, item: tuple[Any, ...]) -> None:
        while True:
            if self.error is not None:
                raise ExportError(f"encoding failed: {self.error}") from self.error
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise ExportError("the encoder thread stopped") from None

    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                t0 = time.perf_counter()
                if self._aborted:
                    item = ("abort",)
                if item[0] == "v":
                    frame = av.VideoFrame.from_ndarray(item[1], format="yuv420p")
                    frame.pts, frame.time_base = item[2], VIDEO_TB
                    self._out.mux(self._video.encode(frame))
                    self.frames += 1
                elif item[0] == "a":
                    packet = item[1]
                    packet.stream = self._audio
                    packet.time_base = AUDIO_TB
                    packet.pts = packet.dts = item[2]
                    packet.duration = item[3]
                    self._out.mux(packet)
                else:
                    if item[0] == "end":
                        self._out.mux(self._video.encode(None))
                    self._out.close()
                    self.seconds += time.perf_counter() - t0
                    return
                self.seconds += time.perf_counter() - t0
        except BaseException as exc:  # reported to the exporting thread by _put / finish
            self.error = exc
            try:
                self._out.close()
            except Exception:  # the export fails anyway; the file is removed
                pass

    def finish(self) -> None:
        """Flush the encoder, write the index (``+faststart`` moves it to the front), close."""
        self._put(("end",))
        self._thread.join()
        if self.error is not None:
            raise ExportError(f"encoding failed: {self.error}") from self.error

    def abort(self) -> None:
        """Stop without flushing (idempotent); the caller removes the file."""
        self._aborted = True
        while self._thread.is_alive():
            try:
                self._q.put(("abort",), timeout=0.2)
                break
            except queue.Full:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass
        self._thread.join()
