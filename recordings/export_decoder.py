"""The first thread of an export: the segments in its window demuxed and decoded in file
order, video as yuv420p arrays of the export's frame size, audio as packets (copied, not decoded).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from .export_timeline import ExportTimeline, Window, open_segment, seconds


def decode(tl: ExportTimeline, window: Window, include_audio: bool, q: queue.Queue[tuple[Any, ...]],
           stop: threading.Event, timings: dict[str, float]) -> None:
    """Producer thread: ("v", t, yuv) and ("a", t, packet) in file order (``t`` recording time),
    then ("end",); ("error", exception) if it fails. Stops early once ``stop`` is set; its
    decoding time goes into ``timings["decode"]``."""

    def put(item: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        last_v = -1e18
        spent = 0.0
        for seg in tl.segments:
            if seg.last_s < window.start or seg.first_s >= window.end:
                continue
            with open_segment(seg.path) as c:
                v = c.streams.video[0]
                v.thread_type = "AUTO"
                a = c.streams.audio[0] if include_audio and c.streams.audio else None
                for pkt in c.demux(*[s for s in (v, a) if s is not None]):
                    if pkt.stream.type == "audio":
                        if pkt.pts is None:
                            continue
                        t = seg.offset + seconds(pkt.pts, pkt.time_base) - tl.origin
                        if window.start <= t < window.end and not put(("a", t, pkt)):
                            return
                        continue
                    t0 = time.perf_counter()
                    frames = pkt.decode()
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        t = seg.offset + seconds(frame.pts, frame.time_base) - tl.origin
                        if not window.start <= t < window.end or t <= last_v:
                            continue
                        last_v = t
                        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (tl.width, tl.height):
                            frame = frame.reformat(tl.width, tl.height, "yuv420p")
                        yuv = frame.to_ndarray()
                        spent += time.perf_counter() - t0
                        if not put(("v", t, yuv)):
                            return
                        t0 = time.perf_counter()
                    spent += time.perf_counter() - t0
        timings["decode"] = spent
        put(("end",))
    except Exception as exc:  # handed to the consumer, which raises it
        put(("error", exc))
