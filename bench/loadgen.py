"""Load generator for ``bench.relay``: publishers of pre-encoded video and the viewers watching them.

Runs as a subprocess driven by one JSON command per line on stdin; answers one JSON line per
command on stdout (logs go to stderr). Nothing is encoded or decoded here: publishers replay one
shared :class:`media.pattern.EncodedLoop` (VP8 640x480@30, ~1 Mbit/s) and viewers run with the
pass-through decoder installed, so they count encoded frames (re-encoded VP8 when the server is
the ``MediaRelay`` baseline). Commands, handled one at a time:

- ``{"cmd": "add", "base": URL, "person_token": T, "units": [[id, unit_token], ...], "viewers": 2}``
  publishes each unit over WHIP, attaches the viewers over WHEP and waits for every viewer's first
  frame; answers ``{"ok", "added", "failed": [reasons], "connect_s"}``.
- ``{"cmd": "mark"}`` answers cumulative counters: ``{"t", "sent": {unit: frames},
  "received": {unit: [frames per viewer]}, "max_gap_s": {unit: [longest gap since last mark]}}``.
  The driver takes two marks and differences them.
- ``{"cmd": "late", "base", "person_token", "unit", "trials", "timeout_s"}`` runs viewers that join
  the running publisher of ``unit`` one after another and answers the seconds from WHEP answer
  (and from the POST) to their first frame, and whether that frame was a keyframe.
- ``{"cmd": "clear"}`` ends every session (WHEP/WHIP DELETE, then close); ``{"cmd": "stop"}`` also exits.

Every wait is bounded; only the URLs given in commands are contacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from media import passthrough
from media.pattern import LoopCache, VideoLoopSpec
from tests.support.peers import Publisher, Viewer, make_publisher, make_viewer, whep_view, whip_publish

logger = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT_S = 20.0
CONNECT_CONCURRENCY = 4
DELETE_TIMEOUT_S = 5.0


@dataclass
class UnitLoad:
    """One published unit and its viewers, with counters that survive trimming the frame lists."""

    unit: str
    token: str
    base: str
    person_token: str
    publisher: Publisher
    viewers: list[Viewer] = field(default_factory=list)
    sent_before: int = 0
    received_before: list[int] = field(default_factory=list)

    def snapshot(self) -> tuple[int, list[int], list[float]]:
        """Cumulative counters; trims the recorded frame lists so a long run stays small."""
        self.sent_before += len(self.publisher.sent)
        self.publisher.sent.clear()
        gaps = []
        for k, viewer in enumerate(self.viewers):
            times = [f[0] for f in viewer.frames]
            gaps.append(max((b - a for a, b in zip(times, times[1:])), default=0.0))
            self.received_before[k] += len(viewer.frames)
            viewer.frames.clear()
        return self.sent_before, list(self.received_before), gaps


class LoadGenerator:
    def __init__(self, http: aiohttp.ClientSession, loops: LoopCache, spec: VideoLoopSpec) -> None:
        self.http = http
        self.loops = loops
        self.spec = spec
        self.units: dict[str, UnitLoad] = {}
        self._gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def _delete(self, base: str, location: str, token: str) -> None:
        if not location:
            return
        try:
            async with self.http.delete(
                base + location, headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=DELETE_TIMEOUT_S),
            ):
                pass
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("DELETE %s failed: %s", location, exc)

    async def _close_viewer(self, base: str, person_token: str, viewer: Viewer) -> None:
        await self._delete(base, viewer.location, person_token)
        await viewer.close()

    async def _add_one(self, base: str, person_token: str, unit: str, token: str, viewers: int) -> None:
        loop = await self.loops.video(self.spec)
        async with self._gate:
            pub = await make_publisher(loop)
            load = UnitLoad(unit, token, base, person_token, pub)
            self.units[unit] = load  # registered first so that clear() also ends a half-built unit
            await whip_publish(self.http, base, unit, token, pub)
            for _ in range(viewers):
                viewer = await make_viewer(video=True, audio=False)
                load.viewers.append(viewer)
                load.received_before.append(0)
                await whep_view(self.http, base, unit, person_token, viewer)
        await asyncio.gather(*(v.wait_frames(1, FIRST_FRAME_TIMEOUT_S) for v in load.viewers))

    async def add(self, cmd: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        units = [(u, t) for u, t in cmd["units"] if u not in self.units]
        results = await asyncio.gather(
            *(self._add_one(cmd["base"], cmd["person_token"], u, t, int(cmd.get("viewers", 2))) for u, t in units),
            return_exceptions=True,
        )
        failed = [f"{u}: {type(r).__name__}: {r}" for (u, _), r in zip(units, results) if isinstance(r, BaseException)]
        return {"ok": not failed, "added": len(units) - len(failed), "failed": failed,
                "connect_s": round(time.monotonic() - started, 3)}

    def mark(self) -> dict[str, Any]:
        t = time.monotonic()
        sent: dict[str, int] = {}
        received: dict[str, list[int]] = {}
        gaps: dict[str, list[float]] = {}
        for unit, load in self.units.items():
            sent[unit], received[unit], gaps[unit] = load.snapshot()
        return {"ok": True, "t": t, "sent": sent, "received": received, "max_gap_s": gaps}

    async def late(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Viewers joining a running publisher one at a time: seconds to their first frame."""
        rng = random.Random(7)
        trials: list[dict[str, Any]] = []
        for _ in range(int(cmd.get("trials", 20))):
            await asyncio.sleep(rng.uniform(0.2, 0.8))  # land at different points of the stream
            viewer = await make_viewer(video=True, audio=False)
            posted = time.monotonic()
            try:
                await whep_view(self.http, cmd["base"], cmd["unit"], cmd["person_token"], viewer)
                await viewer.wait_frames(1, float(cmd.get("timeout_s", 5.0)))
                first_at, _, keyframe = viewer.frames[0]
                trials.append({"from_answer_s": round(first_at - viewer.answered_at, 4),
                               "from_post_s": round(first_at - posted, 4), "keyframe": keyframe})
            except (asyncio.TimeoutError, AssertionError, aiohttp.ClientError) as exc:
                trials.append({"error": f"{type(exc).__name__}: {exc}"})
            finally:
                await self._close_viewer(cmd["base"], cmd["person_token"], viewer)
        return {"ok": True, "trials": trials}

    async def clear(self) -> dict[str, Any]:
        units, self.units = list(self.units.values()), {}

        async def end(load: UnitLoad) -> None:
            await asyncio.gather(*(self._close_viewer(load.base, load.person_token, v) for v in load.viewers))
            await self._delete(load.base, load.publisher.location, load.token)
            await load.publisher.close()

        await asyncio.gather(*(end(u) for u in units), return_exceptions=True)
        return {"ok": True, "cleared": len(units)}


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run() -> None:
    passthrough.install()  # viewers count encoded frames and decode nothing
    spec = VideoLoopSpec(codec="vp8", width=640, height=480, fps=30, bitrate=1_000_000)
    loops = LoopCache()
    encoded = await loops.video(spec)  # built before "ready", so it does not land in a measurement
    reader = await _stdin_lines()
    async with aiohttp.ClientSession() as http:
        gen = LoadGenerator(http, loops, spec)
        _reply({"ok": True, "ready": True, "bitrate": round(encoded.bitrate)})
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                name = cmd.get("cmd")
                try:
                    if name == "add":
                        _reply(await gen.add(cmd))
                    elif name == "mark":
                        _reply(gen.mark())
                    elif name == "late":
                        _reply(await gen.late(cmd))
                    elif name == "clear":
                        _reply(await gen.clear())
                    elif name == "stop":
                        _reply(await gen.clear())
                        return
                    else:
                        _reply({"ok": False, "error": f"unknown command {name!r}"})
                except Exception as exc:  # report and keep serving: the driver decides what to do
                    logger.exception("command %s failed", name)
                    _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            await gen.clear()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s loadgen %(levelname)s %(name)s: %(message)s")
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
