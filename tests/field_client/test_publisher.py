"""The publishing peer connection: codec choice, and no socket left behind when cancelled."""

from __future__ import annotations

import asyncio
import os

import pytest

from field_client.publisher import MediaPublisher, preferred_codecs
from field_client.sources import MediaSources
from media.pattern import EncodedAudioTrack, EncodedVideoTrack, LoopCache, VideoLoopSpec


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
async def test_cancelled_offer_leaves_no_socket_open() -> None:
    loop = await LoopCache().video(VideoLoopSpec(width=160, height=120, frame_count=5))
    before = open_sockets()
    for steps in range(0, 60, 3):  # cancel at many points, including in the middle of gathering
        publisher = MediaPublisher("bc-01", MediaSources(video=EncodedVideoTrack(loop)), "vp8")
        offer = asyncio.ensure_future(publisher.create_offer())
        for _ in range(steps):
            await asyncio.sleep(0)  # let gathering advance by one step
        offer.cancel()
        await asyncio.gather(offer, return_exceptions=True)
        await publisher.close()
        assert open_sockets() <= before, f"socket left open after cancelling at step {steps}"
