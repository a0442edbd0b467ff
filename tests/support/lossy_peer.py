"""A unit and its viewer behind a lossy link: ``python -m tests.support.lossy_peer`` (run inside a
:class:`tests.support.impair.LossyNetwork` namespace), and the frame matching its report needs.

The process publishes pre-encoded VP8 640x480@30 (~1 Mbit/s) and Opus over WHIP, watches the same
unit over WHEP (tokens from ``LOSSY_UNIT_TOKEN`` and ``LOSSY_PERSON_TOKEN``), prints ``READY``
once the viewer has its first frame, runs ``--seconds`` more (less if it gets SIGUSR1), ends both
sessions with DELETE, writes a JSON report to ``--report`` (every video frame sent: send time,
digest, keyframe; every frame the viewer got: arrival time, digest, keyframe; times on this
machine's monotonic clock, which the test process shares), prints ``REPORTED`` and exits. Nothing
is encoded or decoded.

Before the DELETEs the publisher goes quiet for ``--quiet-s`` (it sends no more media, but still
answers NACKs and PLIs): the last frames sent, still crossing the wire or being repaired, then
reach the server and the recording, as when an officer stops a camera and its link stays up. A
DELETE right after the last frame cut the recording short by whatever was still being repaired
(5-19 frames in 12 runs), which measured the test's ending, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration

from field_client.encoded_loop import VideoLoopSpec
from field_client.loop_cache import LoopCache
from media import passthrough
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish

FIRST_FRAME_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sent:
    at: float
    digest: str
    keyframe: bool


@dataclass(frozen=True)
class Got:
    """A frame the viewer got: which publisher frame it is (``n``, None if none), and whether a
    decoder could show it: a keyframe, or the frame right after one it could show."""

    at: float
    n: int | None
    keyframe: bool
    decodable: bool


def match(sent: list[Sent], received: list[tuple[float, str, bool]]) -> list[Got]:
    """Which publisher frame each received frame is. The loop repeats, so bytes alone are ambiguous:
    a frame with a receive time is the publisher's *latest* frame with its bytes sent before it
    arrived (a viewer gets live frames, never one a whole loop old; the first frame of a late
    viewer would otherwise be taken for the first frame ever sent, and every frame after it for
    the wrong one until the next keyframe); a frame without one (``at`` infinite: a recording) is
    the first with its bytes after the one matched before it. Either way it comes after the frame
    matched before it."""
    by_digest: dict[str, list[int]] = {}
    for n, s in enumerate(sent):
        by_digest.setdefault(s.digest, []).append(n)
    times = {digest: [sent[n].at for n in numbers] for digest, numbers in by_digest.items()}
    out: list[Got] = []
    last_n = -1
    shown: int | None = None  # the last frame a decoder could show
    for at, digest, keyframe in received:
        numbers = by_digest.get(digest, [])
        if math.isinf(at):
            k = bisect.bisect_right(numbers, last_n)
        else:
            k = bisect.bisect_right(times.get(digest, []), at) - 1
        if k < 0 or k == len(numbers) or numbers[k] <= last_n or sent[numbers[k]].at > at:
            out.append(Got(at, None, keyframe, False))
            shown = None
            continue
        n = last_n = numbers[k]
        decodable = keyframe or (shown is not None and n == shown + 1)
        shown = n if decodable else None
        out.append(Got(at, n, keyframe, decodable))
    return out


def _quiet_when(track: Any, quiet: asyncio.Event) -> None:
    """From when ``quiet`` is set, ``track`` hands its sender no more frames (it waits until the
    sender stops)."""
    recv = track.recv

    async def quiet_recv() -> Any:
        if quiet.is_set():
            await asyncio.Future()  # cancelled when the peer connection closes
        return await recv()

    track.recv = quiet_recv


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    quiet = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    loops = LoopCache()
    video = await loops.video(VideoLoopSpec(codec="vp8", width=640, height=480, fps=30, bitrate=1_000_000))
    audio = await loops.audio()
    no_stun = RTCConfiguration(iceServers=[])  # host candidates only: nothing to look up in the namespace
    pub = await make_publisher(video, audio, config=no_stun)
    send_times: list[float] = []
    assert pub.video is not None
    inner = pub.video.on_packet

    def on_packet(data: bytes, keyframe: bool) -> None:
        if inner is not None:
            inner(data, keyframe)
        send_times.append(time.monotonic())

    pub.video.on_packet = on_packet
    for track in (pub.video, pub.audio):
        if track is not None:
            _quiet_when(track, quiet)
    viewer = await make_viewer(video=True, audio=True, config=no_stun)
    # The viewer reassembles frames as the server does (a 128-packet buffer completing frames at the
    # marker, dropping frames it could not decode and asking for a keyframe), not with aiortc's
    # default 512-packet buffer, which stalls ~3.5 s on one packet lost for good and hands on the
    # tail of a frame as a frame: the test measures the server, not that.
    for transceiver in viewer.pc.getTransceivers():
        if transceiver.kind == "video":
            passthrough.shorten_jitter_buffer(transceiver.receiver)
    base = args.base
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as http:
        try:
            await whip_publish(http, base, args.unit, args.unit_token, pub)
            await whep_view(http, base, args.unit, args.person_token, viewer)
            await viewer.wait_frames(1, FIRST_FRAME_TIMEOUT_S)
            print("READY", flush=True)
            with contextlib.suppress(TimeoutError):  # the measured run: the test watches, the wire impairs
                await asyncio.wait_for(stop.wait(), args.seconds)
            quiet.set()
            await asyncio.sleep(args.quiet_s)  # the last frames' repair (the NACK tracker gives up after 1 s)
        finally:
            for location, token in ((viewer.location, args.person_token), (pub.location, args.unit_token)):
                if location:
                    async with http.delete(base + location, headers={"Authorization": f"Bearer {token}"}):
                        pass
            await viewer.close()
            await pub.close()
    # After the sessions ended: every frame sent is listed, including those the recording got last.
    return {
        "sent": [[t, d, k] for t, (d, k) in zip(send_times, pub.sent, strict=True)],
        "received": [list(f) for f in viewer.frames],
        "audio_frames": viewer.audio_frames,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.lossy_peer")
    parser.add_argument("--base", required=True)
    parser.add_argument("--unit", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    parser.add_argument("--quiet-s", type=float, default=1.5,
                        help="seconds without media before the sessions end (their last frames' repair)")
    args = parser.parse_args()
    args.unit_token, args.person_token = os.environ["LOSSY_UNIT_TOKEN"], os.environ["LOSSY_PERSON_TOKEN"]
    report = asyncio.run(run(args))
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(report, f)
    print("REPORTED", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
