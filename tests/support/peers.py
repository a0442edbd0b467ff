"""Real aiortc peers for tests and benchmarks: a WHIP publisher of pre-encoded media and a WHEP
viewer that records the encoded frames it receives (:func:`make_viewer` installs the pass-through
decoder for the whole process, as the server does)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from field_client.encoded_track import EncodedAudioTrack, EncodedVideoTrack, attach_keyframe_requests
from media import passthrough
from media.keyframes import is_keyframe


def frame_digest(mime: str, data: bytes) -> str:
    """Hash of an encoded frame; H.264 is compared NAL by NAL (start-code lengths may differ)."""
    if mime.lower() == "video/h264":
        nals = [n.lstrip(b"\x00") for n in data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")]
        data = b"|".join(n for n in nals if n)
    return hashlib.sha256(data).hexdigest()


@dataclass
class Publisher:
    pc: RTCPeerConnection
    video: EncodedVideoTrack | None
    audio: EncodedAudioTrack | None
    mime: str
    location: str = ""
    sent: list[tuple[str, bool]] = field(default_factory=list)  # (digest, keyframe) in send order
    sent_audio: list[str] = field(default_factory=list)  # digests of Opus packets in send order

    async def close(self) -> None:
        await self.pc.close()


def codec_preferences(kind: str, codec: str) -> list[Any]:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() == f"{kind}/{codec}".lower()]


async def make_publisher(
    loop: EncodedLoop | None, audio_loop: EncodedAudioLoop | None = None, codec: str = "vp8",
    config: RTCConfiguration | None = None,
) -> Publisher:
    """``config``: aiortc's default asks a public STUN server during ICE gathering (~5 s where DNS
    times out, as in a network namespace); ``RTCConfiguration(iceServers=[])`` does not."""
    pc = RTCPeerConnection(config)
    mime = f"video/{codec.upper()}"
    pub = Publisher(pc, None, None, mime)
    if loop is not None:
        pub.video = EncodedVideoTrack(
            loop, start_index=0, on_packet=lambda d, k: pub.sent.append((frame_digest(mime, d), k))
        )
        t = pc.addTransceiver(pub.video, direction="sendonly")
        t.setCodecPreferences(codec_preferences("video", codec))
        attach_keyframe_requests(t.sender, pub.video)
    if audio_loop is not None:
        pub.audio = EncodedAudioTrack(audio_loop, start_index=0,
                                      on_packet=lambda d, k: pub.sent_audio.append(hashlib.sha256(d).hexdigest()))
        pc.addTransceiver(pub.audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pub


async def whip_publish(http: aiohttp.ClientSession, base: str, unit: str, token: str, pub: Publisher,
                       answer_filter: Callable[[str], str] | None = None) -> None:
    async with http.post(
        f"{base}/whip/{unit}", data=pub.pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as resp:
        body = await resp.text()
        assert resp.status == 201, f"WHIP answered {resp.status}: {body}"
        pub.location = resp.headers["Location"]
    if answer_filter is not None:
        body = answer_filter(body)
    await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))


@dataclass
class Viewer:
    pc: RTCPeerConnection
    location: str = ""
    answered_at: float = 0.0
    frames: list[tuple[float, str, bool]] = field(default_factory=list)  # (arrival, digest, keyframe)
    audio_frames: int = 0
    mime: str = ""
    got_frames: asyncio.Event = field(default_factory=asyncio.Event)
    got_audio: asyncio.Event = field(default_factory=asyncio.Event)
    want: int = 1
    want_audio: int = 1
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reader: Any = None  # what reads its RTP instead of aiortc's receivers, if anything (bench.loadgen)

    async def wait_frames(self, n: int, timeout: float) -> None:
        self.want = n
        if len(self.frames) >= n:
            return
        self.got_frames.clear()
        await asyncio.wait_for(self.got_frames.wait(), timeout)

    async def wait_audio(self, n: int, timeout: float) -> None:
        self.want_audio = n
        if self.audio_frames >= n:
            return
        self.got_audio.clear()
        await asyncio.wait_for(self.got_audio.wait(), timeout)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


async def make_viewer(video: bool = True, audio: bool = True, config: RTCConfiguration | None = None) -> Viewer:
    """``config`` as for :func:`make_publisher`."""
    viewer = _recording_viewer(config)
    if video:
        viewer.pc.addTransceiver("video", direction="recvonly")
    if audio:
        viewer.pc.addTransceiver("audio", direction="recvonly")
    await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
    return viewer


async def make_answering_viewer(offer_sdp: str) -> Viewer:
    """A viewer of a server that makes the offer (Janus's VideoRoom): the answer is its local description."""
    from aiortc.sdp import SessionDescription

    viewer = _recording_viewer()
    for media in SessionDescription.parse(offer_sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            viewer.mime = media.rtp.codecs[0].mimeType
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    return viewer


def _recording_viewer(config: RTCConfiguration | None = None) -> Viewer:
    """A peer whose remote tracks are read into :class:`Viewer`'s frame log."""
    passthrough.install()  # viewers record encoded frames (idempotent)
    pc = RTCPeerConnection(config)
    viewer = Viewer(pc)

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                packet = await track.recv()
                if track.kind == "video":
                    assert isinstance(packet, av.Packet), "the pass-through decoder hands on encoded packets"
                    data = bytes(packet)
                    viewer.frames.append(
                        (time.monotonic(), frame_digest(viewer.mime, data), is_keyframe(viewer.mime, data))
                    )
                    if len(viewer.frames) >= viewer.want:
                        viewer.got_frames.set()
                else:
                    viewer.audio_frames += 1
                    if viewer.audio_frames >= viewer.want_audio:
                        viewer.got_audio.set()
        except MediaStreamError:
            return

    pc.on("track", lambda track: viewer.tasks.append(asyncio.ensure_future(consume(track))))
    return viewer


async def whep_view(http: aiohttp.ClientSession, base: str, unit: str, token: str, viewer: Viewer,
                    answer_filter: Callable[[str], str] | None = None,
                    offer_filter: Callable[[str], str] | None = None) -> None:
    offer = viewer.pc.localDescription.sdp
    async with http.post(
        f"{base}/whep/{unit}", data=offer_filter(offer) if offer_filter is not None else offer,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as resp:
        body = await resp.text()
        assert resp.status == 201, f"WHEP answered {resp.status}: {body}"
        viewer.location = resp.headers["Location"]
    if answer_filter is not None:
        body = answer_filter(body)
    from aiortc.sdp import SessionDescription

    for media in SessionDescription.parse(body).media:
        if media.kind == "video" and media.rtp.codecs:
            viewer.mime = media.rtp.codecs[0].mimeType
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    viewer.answered_at = time.monotonic()

