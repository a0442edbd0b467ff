"""The forwarding relay end to end: aiortc publisher → real server → aiortc viewers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from dispatch_server.appkeys import LIVE
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from media.relay import Fanout, RelayConfig
from tests.conftest import LiveServer
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish


def assert_forwarded_unchanged(sent: list[tuple[str, bool]], received: list[tuple[float, str, bool]]) -> None:
    """Every received frame is byte-identical to a sent one, in the publisher's order, starting at a keyframe."""
    sent_digests = [d for d, _ in sent]
    got = [d for _, d, _ in received]
    assert received[0][2], "the first forwarded frame must be a keyframe"
    start = sent_digests.index(got[0])
    window = sent_digests[start : start + len(got) + 5]
    unknown = [d for d in got if d not in set(sent_digests)]
    assert not unknown, f"{len(unknown)} received frames were never sent (altered in transit)"
    # In order: each received frame appears after the previous one in the send sequence.
    pos = 0
    for d in got:
        pos = window.index(d, pos) + 1 if d in window[pos:] else -1
        assert pos > 0, "frames arrived out of the publisher's order"


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_two_viewers_get_the_publishers_encoded_frames_unchanged(
    make_live: Any, mode: dict[str, Any], http: aiohttp.ClientSession, codec: str, request: pytest.FixtureRequest,
    opus_loop: EncodedAudioLoop,
) -> None:
    live: LiveServer = await make_live(**mode)
    loop = request.getfixturevalue(f"{codec}_loop")
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")

    pub = await make_publisher(loop, opus_loop, codec=codec)
    await whip_publish(http, live.url, "bc-01", token, pub)
    viewers = [await make_viewer(), await make_viewer()]
    try:
        for v in viewers:
            await whep_view(http, live.url, "bc-01", op, v)
        for v in viewers:
            await v.wait_frames(60, timeout=20)
        for v in viewers:
            assert v.mime.lower() == f"video/{codec}"
            assert_forwarded_unchanged(pub.sent, v.frames)
            assert v.audio_frames > 0, "Opus audio must be forwarded too"

        # A viewer that joins late sees a keyframe within 1 s of its WHEP answer.
        late = await make_viewer()
        viewers.append(late)
        await whep_view(http, live.url, "bc-01", op, late)
        await late.wait_frames(1, timeout=5)
        first_at, _, keyframe = late.frames[0]
        assert keyframe
        assert first_at - late.answered_at < 1.0, f"late viewer waited {first_at - late.answered_at:.2f} s"
        await late.wait_frames(30, timeout=10)
        assert_forwarded_unchanged(pub.sent, late.frames)
    finally:
        for v in viewers:
            await v.close()
        await pub.close()


async def test_viewer_stays_attached_when_publisher_returns(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    token = live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop)
    await whip_publish(http, live.url, "bc-02", token, pub)
    viewer = await make_viewer()
    try:
        await whep_view(http, live.url, "bc-02", op, viewer)
        await viewer.wait_frames(20, timeout=10)
        await pub.close()  # the unit vanishes without a DELETE

        async def status() -> bool:
            async with http.get(f"{live.url}/api/units", headers={"Authorization": f"Bearer {op}"}) as r:
                return bool((await r.json())["units"][0]["publishing"])

        deadline = time.monotonic() + 10
        while await status():
            assert time.monotonic() < deadline, "a silent publisher must show as not publishing"
            await asyncio.sleep(0.2)

        before = len(viewer.frames)
        pub2 = await make_publisher(vp8_loop)
        await whip_publish(http, live.url, "bc-02", token, pub2)
        await viewer.wait_frames(before + 20, timeout=10)
        resumed = viewer.frames[before:]
        # The viewer's own jitter buffer releases the old stream's last frame only when the next
        # packet arrives, so at most one old frame may precede the new publisher's first frame.
        first_new = next(i for i, r in enumerate(resumed) if r[1] == pub2.sent[0][0])
        assert first_new <= 1
        assert resumed[first_new][2], "after the publisher returns the viewer restarts on a keyframe"
        times = [t for t, _, _ in viewer.frames]
        assert times == sorted(times)
        await pub2.close()
    finally:
        await viewer.close()


async def test_frame_engine_still_forwards_the_publishers_frames_unchanged(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop
) -> None:
    """``[media] engine = "frames"`` (aiortc receives and re-packetises) stays usable."""
    live: LiveServer = await make_live(media={"engine": "frames"})
    assert live.app is not None and live.settings.media.engine == "frames"
    token = live.add_unit("bc-03")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-03", token, pub)
    viewer = await make_viewer()
    try:
        await whep_view(http, live.url, "bc-03", op, viewer)
        await viewer.wait_frames(30, timeout=20)
        await viewer.wait_audio(10, timeout=10)
        assert_forwarded_unchanged(pub.sent, viewer.frames)
        video = live.app[LIVE].relay.channel("bc-03").video
        assert video.viewers and not video.stream.viewers, "frames went through ForwardTracks, not packets"
    finally:
        await viewer.close()
        await pub.close()


async def test_a_keyframe_request_is_sent_again_until_a_keyframe_arrives() -> None:
    """A PLI, or the keyframe it brings, may be lost on the way: while media arrives without a
    keyframe, the request goes out again every KEYFRAME_RETRY_S, and stops once one arrives."""
    now = [100.0]
    fanout = Fanout("bc-01", "video", RelayConfig(pli_min_interval_s=0.3), lambda: now[0])
    sent: list[float] = []

    async def pli() -> None:
        sent.append(now[0])

    fanout.attach_packets("pub-1", RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96), pli)
    try:
        assert sent == [] and fanout.keyframe_awaited  # the new publisher's request went out at once
        await asyncio.sleep(0)
        assert sent == [100.0]
        for t in (100.2, 100.4, 100.49):
            now[0] = t
            fanout.keyframe_overdue(t)
        now[0] = 100.5
        fanout.keyframe_overdue(100.5)
        await asyncio.sleep(0)
        assert sent == [100.0, 100.5]
        fanout.keyframe_arrived()
        for t in (101.0, 102.0):
            now[0] = t
            if fanout.keyframe_awaited:
                fanout.keyframe_overdue(t)
        await asyncio.sleep(0)
        assert sent == [100.0, 100.5] and fanout.keyframes_in == 1
    finally:
        await fanout.close()
