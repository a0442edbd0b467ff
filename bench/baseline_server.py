"""Baseline for ``bench.relay``: WHIP in, WHEP out, the ordinary aiortc way.

Every published track (VP8 video, Opus audio) is decoded once and handed to
``aiortc.contrib.media.MediaRelay``; every viewer gets a relay subscription per track, so its
``RTCRtpSender`` encodes VP8 and Opus again. This is what
``media/relay.py`` avoids; the process exists only to be measured against it. No authentication
(any bearer is accepted), no trickle ICE, 127.0.0.1 only.

With ``--passthrough`` the process installs :mod:`media.passthrough` first, so ``MediaRelay``
hands the same encoded ``av.Packet`` to every viewer's sender, which only packetizes it: the
cheapest forwarding aiortc allows (no keyframe handling, no auth, no bookkeeping). The benchmark
uses it as the floor that ``dispatch_server`` cannot beat without changing aiortc.

    python -m bench.baseline_server [--port 0] [--passthrough]

prints ``baseline-server listening on http://127.0.0.1:PORT`` once it accepts requests and runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"


@dataclass
class BaselineState:
    relay: MediaRelay = field(default_factory=MediaRelay)
    sources: dict[tuple[str, str], MediaStreamTrack] = field(default_factory=dict)  # (unit, kind) -> remote track
    pcs: dict[str, RTCPeerConnection] = field(default_factory=dict)  # resource path -> peer
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


STATE = web.AppKey("baseline_state", BaselineState)


async def _drain(track: MediaStreamTrack) -> None:
    """Keep one unbuffered subscriber on every source: an unread remote track grows without bound."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return


def _own(state: BaselineState, pc: RTCPeerConnection, path: str) -> None:
    state.pcs[path] = pc

    @pc.on("connectionstatechange")
    async def _changed() -> None:
        if pc.connectionState in ("failed", "closed"):
            state.pcs.pop(path, None)
            await pc.close()


async def whip(request: web.Request) -> web.Response:
    state = request.app[STATE]
    unit = request.match_info["unit_id"]
    pc = RTCPeerConnection()
    path = f"/whip/{unit}/{id(pc):x}"

    def on_track(track: MediaStreamTrack) -> None:
        state.sources[(unit, track.kind)] = track
        task = asyncio.ensure_future(_drain(state.relay.subscribe(track, buffered=False)))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    pc.on("track", on_track)  # before setRemoteDescription: the event fires inside it
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    _own(state, pc, path)
    return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP_TYPE, headers={"Location": path})


async def whep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    unit = request.match_info["unit_id"]
    source = state.sources.get((unit, "video"))
    if source is None or source.readyState != "live":
        error = {"code": "not_publishing", "message": f"unit {unit} is not publishing"}
        return web.json_response({"error": error}, status=409)
    pc = RTCPeerConnection()
    path = f"/whep/{unit}/{id(pc):x}"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
    pc.addTrack(state.relay.subscribe(source))  # decoded frames; this sender encodes them again
    audio = state.sources.get((unit, "audio"))
    if audio is not None and audio.readyState == "live":
        pc.addTrack(state.relay.subscribe(audio))
    await pc.setLocalDescription(await pc.createAnswer())
    _own(state, pc, path)
    return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP_TYPE, headers={"Location": path})


async def delete(request: web.Request) -> web.Response:
    pc = request.app[STATE].pcs.pop(request.path, None)
    if pc is None:
        return web.json_response({"error": {"code": "unknown_session", "message": request.path}}, status=404)
    await pc.close()
    return web.Response(status=200)


def create_app() -> web.Application:
    app = web.Application()
    app[STATE] = BaselineState()
    app.router.add_post("/whip/{unit_id}", whip)
    app.router.add_post("/whep/{unit_id}", whep)
    app.router.add_delete("/whip/{unit_id}/{session}", delete)
    app.router.add_delete("/whep/{unit_id}/{session}", delete)

    async def close_peers(app: web.Application) -> None:
        state = app[STATE]
        await asyncio.gather(*(pc.close() for pc in list(state.pcs.values())), return_exceptions=True)
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)

    app.on_shutdown.append(close_peers)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    print(f"baseline-server listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--passthrough", action="store_true", help="forward encoded packets (no decode, no encode)")
    args = parser.parse_args()
    if args.passthrough:
        from media import passthrough

        passthrough.install()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
