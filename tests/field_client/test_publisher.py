"""The publishing peer connection: codec choice, and no socket left behind when cancelled."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from field_client.encoded_loop import VideoLoopSpec
from field_client.encoded_track import EncodedAudioTrack, EncodedVideoTrack
from field_client.loop_cache import LoopCache
from field_client.publisher import MediaPublisher, preferred_codecs
from field_client.sources import MediaSources


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed while listing
            pass
    return count


def test_preferences_name_one_codec_and_its_rtx() -> None:
    vp8 = preferred_codecs("video", "vp8")
    assert [c.mimeType for c in vp8] == ["video/VP8", "video/rtx"]
    h264 = preferred_codecs("video", "h264")
    assert {c.mimeType for c in h264} == {"video/H264", "video/rtx"}
    assert [c.mimeType for c in preferred_codecs("audio")] == ["audio/opus"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_offer_carries_only_the_chosen_codec_and_all_candidates(codec: str) -> None:
    loops = LoopCache()
    video = EncodedVideoTrack(await loops.video(VideoLoopSpec(codec=codec, width=160, height=120, frame_count=5)))
    audio = EncodedAudioTrack(await loops.audio())
    publisher = MediaPublisher("bc-01", MediaSources(video=video, audio=audio), codec)
    try:
        sdp = await publisher.create_offer()
    finally:
        await publisher.close()
    rtpmap = [line.split(" ", 1)[1].split("/")[0] for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
    assert set(rtpmap) == {"VP8" if codec == "vp8" else "H264", "rtx", "opus"}
    assert "a=candidate:" in sdp and "a=sendonly" in sdp
    assert "a=end-of-candidates" in sdp


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step", ["offer", "answer"])
async def test_cancelled_negotiation_leaves_no_socket_open(step: str) -> None:
    """Cancelling mid-gathering or mid-``setRemoteDescription`` (which closes the transports
    BUNDLE makes redundant) must not leave UDP sockets to the garbage collector."""
    loops = LoopCache()
    loop = await loops.video(VideoLoopSpec(width=160, height=120, frame_count=5))
    audio_loop = await loops.audio()
    before = open_sockets()
    for steps in range(0, 60):  # cancel at many points of the step
        sources = MediaSources(video=EncodedVideoTrack(loop), audio=EncodedAudioTrack(audio_loop))
        publisher = MediaPublisher("bc-01", sources, "vp8")
        remote = RTCPeerConnection()
        try:
            call: asyncio.Future[Any]
            if step == "offer":
                call = asyncio.ensure_future(publisher.create_offer())
            else:
                await remote.setRemoteDescription(
                    RTCSessionDescription(await publisher.create_offer(), "offer"))
                await remote.setLocalDescription(await remote.createAnswer())
                call = asyncio.ensure_future(publisher.accept_answer(remote.localDescription.sdp))
            for _ in range(steps):
                await asyncio.sleep(0)  # let the step advance by one hop of the event loop
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        finally:
            await publisher.close()
            await remote.close()
        assert open_sockets() <= before, f"socket left open after cancelling the {step} at hop {steps}"
