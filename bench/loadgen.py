"""Load generator for ``bench.relay``: publishers of pre-encoded video and audio and the viewers watching them.

Runs as a subprocess driven by one JSON command per line on stdin; answers one JSON line per
command on stdout (logs go to stderr). Nothing is encoded or decoded here: publishers replay one
shared :class:`field_client.encoded_loop.EncodedLoop` (VP8 640x480@30, ~1 Mbit/s) and one
:class:`~field_client.encoded_loop.EncodedAudioLoop` (Opus, :data:`AUDIO_SPEC`), and viewers read
their RTP straight off their transport (:func:`_light`, :class:`PacketReader`): encoded frames
assembled from packets (re-encoded VP8 when the server is the ``MediaRelay`` baseline), Opus
packets counted, a PLI on a lost packet, no aiortc receiver work. Commands, handled one at a time:

- ``{"cmd": "add", "base": URL, "person_token": T, "units": [[id, unit_token], ...], "viewers": 2,
  "kind": "whip"}`` publishes each unit over WHIP, attaches the viewers over WHEP and waits for
  every viewer's first frame, retrying a unit once (ended cleanly first) as a field client would;
  answers ``{"ok", "added", "failed": [units not connected], "errors": [every error seen],
  "connect_s"}``. With ``"kind": "janus"`` the base is a Janus API URL and each unit gets a
  VideoRoom of its own (:mod:`bench.janus_client`: publisher ``joinandconfigure``, subscribers
  ``join`` + ``start``), through one Janus session per load generator.
- ``{"cmd": "mark", "since": T?}`` answers cumulative counters ``{"t", "sent": {unit: frames},
  "received": {unit: [frames per viewer]}, "unmatched": {unit: [...]}}`` and, with ``since`` (the
  ``t`` of an earlier mark), ``"window": {unit: {"sent", "viewers": [{"received", "on_time",
  "latency_p95_s", "max_gap_s"}], "latencies": [every matched frame's latency]}}`` for the frames
  sent from ``since`` until 1 s before now: each viewer frame is matched to the publisher frame it
  is (see :class:`UnitLoad`); also ``"audio_sent": {unit: packets}, "audio_received": {unit:
  [packets per viewer]}``, cumulative.
- ``{"cmd": "late", "base", "person_token", "unit", "trials", "timeout_s"}`` runs viewers that join
  the running publisher of ``unit`` one after another and answers the seconds from WHEP answer
  (and from the POST) to their first keyframe, to their first frame, and whether that frame was a
  keyframe (``"kind": "janus"``: from Janus taking the subscriber's answer, and from the ``join``).
- ``{"cmd": "direct", "seconds": S}`` connects one publisher straight to one viewer (no server)
  and answers the p50 and p95 latency of its frames: the floor of the path.
- ``{"cmd": "clear"}`` ends every session (WHEP/WHIP DELETE, then close); ``{"cmd": "stop"}`` also exits.

Every wait is bounded; only the URLs given in commands are contacted.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from aiortc.sdp import SessionDescription

from bench import janus_client, janus_server
from bench.janus_client import JanusError, JanusSession
from field_client.encoded_loop import AudioLoopSpec, VideoLoopSpec
from field_client.loop_cache import LoopCache
from media import passthrough, rtp_hooks
from media.assembly import Assembler, frame_assembler
from media.rtpwire import parse_rtp
from tests.support.peers import (
    Publisher,
    Viewer,
    frame_digest,
    make_answering_viewer,
    make_publisher,
    make_viewer,
    whep_view,
    whip_publish,
)

logger = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT_S = 20.0
CONNECT_CONCURRENCY = 4
CONNECT_ATTEMPTS = 2
RETRY_DELAY_S = 1.0
DELETE_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 30.0  # any WHIP/WHEP request
# A frame counts as delivered when it reaches the viewer within this long after it was sent.
DELIVERY_DEADLINE_S = 1.0
KEEP_FRAMES_S = 60.0  # frame tables forget frames sent longer ago than this
AUDIO_SPEC = AudioLoopSpec(frequency_hz=440.0, duration_s=4.0)  # 200 Opus packets of 20 ms, replayed
CONNECT_ERRORS = (asyncio.TimeoutError, AssertionError, aiohttp.ClientError, OSError, JanusError)


@dataclass
class ViewerLog:
    """Which publisher frames one viewer received, and how late."""

    viewer: Viewer
    janus_handle: int = 0  # its VideoRoom subscriber handle (Janus only)
    received_total: int = 0
    audio_total: int = 0  # audio frames (Opus packets) received
    unmatched_total: int = 0  # frames that are no frame the publisher sent (a re-encoding server)
    last_n: int = -1
    latency: dict[int, float] = field(default_factory=dict)  # publisher frame number -> seconds
    gaps: list[float] = field(default_factory=list)  # pauses between arrivals since the last mark


@dataclass
class UnitLoad:
    """One published unit and its viewers; matches every frame a viewer gets to the frame sent.

    The publisher's frames are numbered in send order. A viewer frame is the publisher frame with
    the same bytes; the loop repeats every few seconds, so: a viewer's first frame is the latest
    such frame sent before it arrived (a viewer joins live: the first such frame ever sent made
    every frame of a viewer whose first frame came after the loop had come round look a loop or
    more late), and each later one the first such frame after the one matched before it, sent
    before it arrived. That gives per frame whether and how late it arrived, which counts alone
    cannot: a viewer catching up on a backlog receives more frames in a window than were sent in
    it.
    """

    unit: str
    token: str
    base: str
    person_token: str
    publisher: Publisher
    viewers: list[ViewerLog] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)  # aligned with publisher.sent
    sent_total: int = 0
    audio_sent_total: int = 0
    ending: bool = False
    janus: JanusSession | None = None  # set when the unit publishes into a Janus VideoRoom
    janus_handle: int = 0
    room: int = 0
    feed: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)  # frame number -> send time
    by_digest: dict[str, list[int]] = field(default_factory=dict)  # digest -> frame numbers, ascending

    def record_send_times(self) -> None:
        """Wrap the publisher's packet callback (call before it sends anything)."""
        assert self.publisher.video is not None
        inner = self.publisher.video.on_packet

        def on_packet(data: bytes, keyframe: bool) -> None:
            if inner is not None:
                inner(data, keyframe)
            self.send_times.append(time.monotonic())

        self.publisher.video.on_packet = on_packet

    def ingest(self) -> None:
        """Move what was sent and received since the last call into the frame tables."""
        for (digest, _), sent_at in zip(self.publisher.sent, self.send_times, strict=True):
            n = self.sent_total
            self.sent_total += 1
            self.sent_at[n] = sent_at
            self.by_digest.setdefault(digest, []).append(n)
        self.publisher.sent.clear()
        self.send_times.clear()
        self.audio_sent_total += len(self.publisher.sent_audio)
        self.publisher.sent_audio.clear()
        for log in self.viewers:
            log.audio_total = log.viewer.audio_frames
            frames = log.viewer.frames
            log.gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames)]
            for arrived, digest, _ in frames:
                log.received_total += 1
                numbers = self.by_digest.get(digest, [])
                if log.last_n < 0:  # its first matched frame: the latest sent before it arrived
                    k = bisect.bisect_right(numbers, arrived, key=self.sent_at.__getitem__) - 1
                else:
                    k = bisect.bisect_right(numbers, log.last_n)
                if k < 0 or k == len(numbers) or self.sent_at[numbers[k]] > arrived:
                    log.unmatched_total += 1
                    continue
                n = numbers[k]
                log.latency[n] = arrived - self.sent_at[n]
                log.last_n = n
            frames.clear()

    def trim(self, before: float) -> None:
        """Forget frames sent before ``before`` (monotonic seconds)."""
        old = [n for n, t in self.sent_at.items() if t < before]
        if not old:
            return
        for n in old:
            del self.sent_at[n]
        first = old[-1] + 1
        for digest, numbers in list(self.by_digest.items()):
            kept = numbers[bisect.bisect_left(numbers, first):]
            if kept:
                self.by_digest[digest] = kept
            else:
                del self.by_digest[digest]
        for log in self.viewers:
            log.latency = {n: v for n, v in log.latency.items() if n >= first}

    def window(self, start: float, end: float, deadline_s: float) -> dict[str, Any]:
        """Frames sent in [start, end) and, per viewer, how many arrived within ``deadline_s``."""
        sent = [n for n, t in self.sent_at.items() if start <= t < end]
        out: dict[str, Any] = {"sent": len(sent), "viewers": [], "latencies": []}
        for log in self.viewers:
            latencies = sorted(log.latency[n] for n in sent if n in log.latency)
            out["latencies"] += [round(v, 4) for v in latencies]
            out["viewers"].append({
                "received": len(latencies),
                "on_time": sum(v <= deadline_s for v in latencies),
                "latency_p95_s": (round(latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)], 4)
                                  if latencies else None),
                "max_gap_s": round(max(log.gaps, default=0.0), 3),
            })
        return out


class LoadGenerator:
    def __init__(self, http: aiohttp.ClientSession, loops: LoopCache, spec: VideoLoopSpec, host: str = "") -> None:
        self.http = http
        self.host = host  # with it, ICE uses this address only (see pin_ice_address)
        self.loops = loops
        self.spec = spec
        self.units: dict[str, UnitLoad] = {}
        self._gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.janus: dict[str, JanusSession] = {}  # Janus API URL -> this process's session there
        self._janus_lock = asyncio.Lock()
        self.janus_record_dir = ""  # Janus rooms record there ("" = not at all); set by each "add"

    async def _janus_session(self, url: str) -> JanusSession:
        async with self._janus_lock:
            session = self.janus.get(url)
            if session is None:
                session = JanusSession(self.http, url)
                await session.create()
                self.janus[url] = session
            return session

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

    async def _connect(self, base: str, person_token: str, unit: str, token: str, viewers: int, kind: str) -> None:
        loop = await self.loops.video(self.spec)
        audio = await self.loops.audio(AUDIO_SPEC)
        async with self._gate:
            pub = await make_publisher(loop, audio)
            load = UnitLoad(unit, token, base, person_token, pub)
            load.record_send_times()
            self._watch(load, pub.pc, "publisher")
            self.units[unit] = load  # registered first so that _end() also ends a half-built unit
            if kind == "janus":
                await self._janus_publish(load)
                for _ in range(viewers):
                    await self._janus_view(load)
            else:
                await whip_publish(self.http, base, unit, token, pub, self.only_host)
                for _ in range(viewers):
                    viewer = _light(await make_viewer(video=True, audio=True))
                    self._watch(load, viewer.pc, "viewer")
                    load.viewers.append(ViewerLog(viewer))
                    await whep_view(self.http, base, unit, person_token, viewer, self.only_host)
        await asyncio.gather(*(v.viewer.wait_frames(1, FIRST_FRAME_TIMEOUT_S) for v in load.viewers))

    def only_host(self, sdp: str) -> str:
        """A server's SDP without candidates on other addresses than ``host``."""
        if not self.host:
            return sdp
        return "\r\n".join(line for line in sdp.splitlines()
                           if not line.startswith("a=candidate:") or line.split()[4] == self.host) + "\r\n"

    def _watch(self, load: UnitLoad, pc: RTCPeerConnection, role: str) -> None:
        """Log a peer of a running unit that fails or closes before the unit is ended."""
        async def changed() -> None:
            ours = pc is load.publisher.pc or any(pc is v.viewer.pc for v in load.viewers)
            if pc.connectionState in ("failed", "closed") and ours and self.units.get(load.unit) is load \
                    and not load.ending:
                logger.warning("unit %s: a %s's connection is %s while the unit runs", load.unit, role,
                               pc.connectionState)

        pc.on("connectionstatechange", changed)

    async def _janus_publish(self, load: UnitLoad) -> None:
        """A VideoRoom of its own for the unit, its publisher joined, its PeerConnection up."""
        session = load.janus = await self._janus_session(load.base)
        load.janus_handle = await session.attach()
        load.room = await janus_client.create_room(session, load.janus_handle, load.unit, self.janus_record_dir)
        load.feed, answer = await janus_client.publish(session, load.janus_handle, load.room,
                                                       load.publisher.pc.localDescription.sdp, load.unit)
        await load.publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await session.wait_up(load.janus_handle)

    async def _janus_view(self, load: UnitLoad) -> ViewerLog:
        """A subscriber of the unit's feed; its ``answered_at`` is when Janus took its answer."""
        assert load.janus is not None
        handle = await load.janus.attach()
        offer = await janus_client.subscribe(load.janus, handle, load.room, load.feed)
        log = ViewerLog(_light(await make_answering_viewer(offer)), janus_handle=handle)
        self._watch(load, log.viewer.pc, "viewer")
        load.viewers.append(log)
        await janus_client.start(load.janus, handle, load.room, log.viewer.pc.localDescription.sdp)
        log.viewer.answered_at = time.monotonic()
        return log

    async def _add_one(self, base: str, person_token: str, unit: str, token: str, viewers: int,
                       kind: str) -> list[str]:
        """Connect a unit and its viewers; one retry, as a field client would. Answers the errors seen."""
        errors: list[str] = []
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                await self._connect(base, person_token, unit, token, viewers, kind)
                return errors
            except CONNECT_ERRORS as exc:
                errors.append(f"{unit} attempt {attempt + 1}: {type(exc).__name__}: {exc}")
                load = self.units.pop(unit, None)
                if load is not None:
                    await self._end(load)
                await asyncio.sleep(RETRY_DELAY_S)
        return errors

    async def add(self, cmd: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        self.janus_record_dir = str(cmd.get("record_dir") or "")
        units = [(u, t) for u, t in cmd["units"] if u not in self.units]
        results = await asyncio.gather(
            *(self._add_one(cmd["base"], cmd["person_token"], u, t, int(cmd.get("viewers", 2)),
                            str(cmd.get("kind", "whip"))) for u, t in units)
        )
        errors = [e for r in results for e in r]
        failed = [u for u, _ in units if u not in self.units]
        return {"ok": True, "added": len(units) - len(failed), "failed": failed, "errors": errors,
                "connect_s": round(time.monotonic() - started, 3)}

    def mark(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Cumulative counters now; with ``since`` (a previous mark's ``t``) also the delivery of
        the frames sent between ``since`` and ``DELIVERY_DEADLINE_S`` before now."""
        now = time.monotonic()
        answer: dict[str, Any] = {"ok": True, "t": now, "sent": {}, "received": {}, "unmatched": {},
                                  "audio_sent": {}, "audio_received": {}, "deadline_s": DELIVERY_DEADLINE_S}
        since = cmd.get("since")
        if since is not None:
            answer["window"] = {}
        for unit, load in self.units.items():
            load.ingest()
            answer["sent"][unit] = load.sent_total
            answer["received"][unit] = [v.received_total for v in load.viewers]
            answer["unmatched"][unit] = [v.unmatched_total for v in load.viewers]
            answer["audio_sent"][unit] = load.audio_sent_total
            answer["audio_received"][unit] = [v.audio_total for v in load.viewers]
            if since is not None:
                answer["window"][unit] = load.window(float(since), now - DELIVERY_DEADLINE_S, DELIVERY_DEADLINE_S)
            load.trim(now - KEEP_FRAMES_S)
        return answer

    async def late(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Viewers joining a running publisher one at a time: seconds to their first frame."""
        rng = random.Random(7)
        trials: list[dict[str, Any]] = []
        janus = cmd.get("kind") == "janus"
        for _ in range(int(cmd.get("trials", 20))):
            await asyncio.sleep(rng.uniform(0.2, 0.8))  # land at different points of the stream
            if janus:
                trials.append(await self._late_janus(self.units[cmd["unit"]], float(cmd.get("timeout_s", 5.0))))
                continue
            viewer = _light(await make_viewer(video=True, audio=False))
            posted = time.monotonic()
            try:
                await whep_view(self.http, cmd["base"], cmd["unit"], cmd["person_token"], viewer, self.only_host)
                await viewer.wait_frames(1, float(cmd.get("timeout_s", 5.0)))
                await _first_keyframe(viewer, float(cmd.get("timeout_s", 5.0)))
                trials.append(_late_trial(viewer, posted))
            except (asyncio.TimeoutError, AssertionError, aiohttp.ClientError) as exc:
                trials.append({"error": f"{type(exc).__name__}: {exc}"})
            finally:
                await self._close_viewer(cmd["base"], cmd["person_token"], viewer)
        return {"ok": True, "trials": trials}

    async def _late_janus(self, load: UnitLoad, timeout_s: float) -> dict[str, Any]:
        """One late subscriber of a unit published into Janus (from "answer": Janus took its answer)."""
        posted = time.monotonic()
        log: ViewerLog | None = None
        try:
            log = await self._janus_view(load)
            load.viewers.remove(log)  # not one of the unit's measured viewers
            await log.viewer.wait_frames(1, timeout_s)
            await _first_keyframe(log.viewer, timeout_s)
            return _late_trial(log.viewer, posted)
        except CONNECT_ERRORS as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            if log is not None:
                if log in load.viewers:
                    load.viewers.remove(log)
                await self._close_janus_viewer(load, log)

    async def _close_janus_viewer(self, load: UnitLoad, log: ViewerLog) -> None:
        if load.janus is not None and log.janus_handle:
            try:
                await load.janus.detach(log.janus_handle)
            except JanusError as exc:
                logger.warning("detach %s failed: %s", log.janus_handle, exc)
        await log.viewer.close()

    async def direct(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The path without a server: one publisher connected straight to one viewer in this
        process for ``seconds``; the latency of its frames (send -> arrival) is the floor that the
        server-added latency is measured against."""
        loop = await self.loops.video(self.spec)
        pub = await make_publisher(loop, await self.loops.audio(AUDIO_SPEC))
        load = UnitLoad("direct", "", "", "", pub)
        load.record_send_times()
        viewer: Viewer | None = None
        try:
            viewer = _light(await make_answering_viewer(pub.pc.localDescription.sdp))
            load.viewers.append(ViewerLog(viewer))
            await pub.pc.setRemoteDescription(viewer.pc.localDescription)
            await viewer.wait_frames(1, FIRST_FRAME_TIMEOUT_S)
            started = time.monotonic()
            await asyncio.sleep(float(cmd.get("seconds", 5.0)) + DELIVERY_DEADLINE_S)
            load.ingest()
            window = load.window(started, time.monotonic() - DELIVERY_DEADLINE_S, DELIVERY_DEADLINE_S)
        finally:
            if viewer is not None:
                await viewer.close()
            await pub.close()
        latencies = sorted(window["latencies"])
        if not latencies:
            return {"ok": False, "error": "no frame crossed the direct connection"}
        return {"ok": True, "frames": len(latencies), "sent": window["sent"],
                "latency_p50_s": latencies[len(latencies) // 2],
                "latency_p95_s": latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]}

    async def _end(self, load: UnitLoad) -> None:
        load.ending = True
        if load.janus is not None:
            await asyncio.gather(*(self._close_janus_viewer(load, v) for v in load.viewers))
            try:
                if load.janus_handle:
                    await load.janus.detach(load.janus_handle)
                    if load.room:
                        await janus_client.destroy_room(load.janus, await load.janus.attach(), load.room)
            except JanusError as exc:
                logger.warning("janus teardown of %s failed: %s", load.unit, exc)
            await load.publisher.close()
            return
        await asyncio.gather(*(self._close_viewer(load.base, load.person_token, v.viewer) for v in load.viewers))
        await self._delete(load.base, load.publisher.location, load.token)
        await load.publisher.close()

    async def clear(self) -> dict[str, Any]:
        units, self.units = list(self.units.values()), {}
        await asyncio.gather(*(self._end(u) for u in units), return_exceptions=True)
        sessions, self.janus = list(self.janus.values()), {}  # a restarted Janus gets new ones
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        return {"ok": True, "cleared": len(units)}


def _light(viewer: Viewer) -> Viewer:
    """A load generator's viewer that reads its RTP off its transport (:class:`PacketReader`)
    instead of aiortc's receivers. Their per-packet work (statistics, NACK generator, jitter
    buffer, depayloading, a thread hop per frame, and the receive-side bandwidth estimator once a
    server sends abs-send-time) saturated the load generators' core at 24 units, for this server
    and for Janus alike, and the on-time figure then measured them rather than the server. The
    servers' work is the same: they get the viewer's PLIs (on a lost packet), no NACKs and no
    receiver reports, from every viewer of either server."""
    reader = PacketReader(viewer)
    transports = {id(r.transport): r.transport for r in viewer.pc.getReceivers() if r.transport is not None}
    for receiver in viewer.pc.getReceivers():
        rtp_hooks.drop_bandwidth_estimator(receiver)
    for transport in transports.values():  # one with BUNDLE; each until the answer says so
        rtp_hooks.intercept_rtp(transport, reader.packet)
    reader.transports = list(transports.values())
    viewer.reader = reader
    return viewer


class PacketReader:
    """A viewer's frames from its RTP packets: video assembled by the recorder's
    :class:`~media.assembly.FrameAssembler` (the encoded frame the publisher sent, byte for byte,
    from a keyframe on), audio counted per packet (one Opus frame each). Payload types come from
    the remote description; RTX and unknown ones are ignored. A frame missing a packet for
    ``LOSS_WAIT_S`` is dropped and a PLI sent (at most every ``PLI_INTERVAL_S``): what a viewer
    without NACK does."""

    LOSS_WAIT_S = 0.1  # no reordering on loopback: a packet this late is lost
    PLI_INTERVAL_S = 0.3

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.transports: list[Any] = []
        self._routes: dict[int, Assembler | None] = {}  # payload type -> video assembler, None: audio
        self._ignored: set[int] = set()
        self._media_ssrc = 0
        self._own_ssrc = random.getrandbits(32)
        self._pli_at = 0.0

    def packet(self, data: bytes) -> None:
        rtp = parse_rtp(data)
        if rtp is None or rtp.payload_type in self._ignored:
            return
        if rtp.payload_type not in self._routes and not self._route(rtp.payload_type):
            return
        assembler = self._routes[rtp.payload_type]
        viewer = self.viewer
        if assembler is None:
            viewer.audio_frames += 1
            if viewer.audio_frames >= viewer.want_audio:
                viewer.got_audio.set()
            return
        self._media_ssrc = rtp.ssrc
        assembler.push(rtp.sequence_number, rtp.timestamp, rtp.marker, rtp.payload, time.monotonic())

    def _route(self, payload_type: int) -> bool:
        description = self.viewer.pc.remoteDescription
        if description is None:
            return False  # media before the answer: not counted
        for media in SessionDescription.parse(description.sdp).media:
            for codec in media.rtp.codecs:
                if codec.payloadType != payload_type:
                    continue
                mime = codec.mimeType.lower()
                if mime.startswith("audio/"):
                    self._routes[payload_type] = None
                elif mime in ("video/vp8", "video/h264"):
                    self._routes[payload_type] = frame_assembler(codec, self._frame, self._lost, native=True,
                                                                wait_s=self.LOSS_WAIT_S)
                else:
                    self._ignored.add(payload_type)  # RTX, RED, ...
                    return False
                return True
        self._ignored.add(payload_type)
        return False

    def _frame(self, packet: Any, keyframe: bool) -> None:
        viewer = self.viewer
        viewer.frames.append((time.monotonic(), frame_digest(viewer.mime, bytes(packet)), keyframe))
        if len(viewer.frames) >= viewer.want:
            viewer.got_frames.set()

    def _lost(self) -> None:
        now = time.monotonic()
        if now - self._pli_at < self.PLI_INTERVAL_S or not self._media_ssrc:
            return
        self._pli_at = now
        pli = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._own_ssrc, media_ssrc=self._media_ssrc))
        for transport in self.transports:
            try:
                rtp_hooks.rtcp_sender_of(transport)(pli)
                return
            except ConnectionError:
                continue  # not the bundle's transport


async def _first_keyframe(viewer: Viewer, timeout_s: float) -> None:
    """Until the viewer has a keyframe: the first picture it can show (Janus forwards from
    wherever the stream is, so its first frame may be a delta frame that cannot be decoded)."""
    async with asyncio.timeout(timeout_s):
        while not any(keyframe for _, _, keyframe in viewer.frames):
            await viewer.wait_frames(len(viewer.frames) + 1, timeout_s)


def _late_trial(viewer: Viewer, posted: float) -> dict[str, Any]:
    first_at, _, keyframe = viewer.frames[0]
    key_at = next(at for at, _, key in viewer.frames if key)
    return {"from_answer_s": round(key_at - viewer.answered_at, 4), "from_post_s": round(key_at - posted, 4),
            "first_frame_from_answer_s": round(first_at - viewer.answered_at, 4), "keyframe": keyframe}


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def pin_ice_address(address: str) -> None:
    """Make this process's ICE agents (aioice) gather host candidates on ``address`` only.

    The machine is shared with test suites that create network namespaces and veth pairs; aioice
    gathers on every interface, and a session whose ICE pair used a veth address lost its media
    when the other suite removed it (seen as a Janus unit going silent seconds after connecting).
    This patches the load generator only, never a server under test; the servers' candidates on
    other addresses are dropped from their SDP by :meth:`LoadGenerator.only_host`."""
    import aioice.ice

    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise RuntimeError("aioice.ice.get_host_addresses is gone (aioice changed): update pin_ice_address")

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address] if use_ipv4 else []

    aioice.ice.get_host_addresses = host_addresses


async def run() -> None:
    passthrough.install()  # viewers count encoded frames and decode nothing
    host = janus_server.primary_address()
    pin_ice_address(host)
    spec = VideoLoopSpec(codec="vp8", width=640, height=480, fps=30, bitrate=1_000_000)
    loops = LoopCache()
    encoded = await loops.video(spec)  # built before "ready", so it does not land in a measurement
    await loops.audio(AUDIO_SPEC)
    reader = await _stdin_lines()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as http:
        gen = LoadGenerator(http, loops, spec, host)
        _reply({"ok": True, "ready": True, "bitrate": round(encoded.bitrate)})
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                name = cmd.get("cmd")
                try:
                    if name == "add":
                        _reply(await gen.add(cmd))
                    elif name == "mark":
                        _reply(gen.mark(cmd))
                    elif name == "late":
                        _reply(await gen.late(cmd))
                    elif name == "direct":
                        _reply(await gen.direct(cmd))
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
            for session in gen.janus.values():
                await session.close()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s loadgen %(levelname)s %(name)s: %(message)s")
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
