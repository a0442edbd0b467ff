"""A stream pulled from another relay (``media.upstream``) feeds a channel as a publisher does: its
viewers get the owner's encoded frames, their keyframe requests reach the owner's channel, and
they stay attached when the pulled source ends. Real aiortc peers, two relays in one process."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from field_client.encoded_loop import EncodedLoop
from media.relay import Relay, RelayConfig
from media.session import PublisherSession, ViewerSession
from media.upstream import UpstreamSession
from tests.support.peers import Viewer, make_publisher, make_viewer
from tests.support.waits import until

CONFIG = RelayConfig(pli_min_interval_s=0.1, keyframe_interval_s=0)  # no periodic keyframe request


def ended(session: Any, reason: str) -> None:
    return None


async def view(relay: Relay, unit_id: str, viewer: Viewer) -> ViewerSession:
    session, answer = await ViewerSession.accept(unit_id=unit_id, offer_sdp=viewer.pc.localDescription.sdp,
                                                 channel=relay.channel(unit_id), ice_servers=[], on_end=ended)
    viewer.mime = "video/VP8"
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return session


@pytest.mark.timeout(60)
async def test_a_pulled_stream_feeds_viewers_and_their_keyframe_requests_reach_the_owner(
    vp8_loop: EncodedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    owner, puller = Relay(CONFIG), Relay(CONFIG)
    pub = await make_publisher(vp8_loop)
    viewers = [await make_viewer(audio=False), await make_viewer(audio=False)]
    pulled_by: list[ViewerSession] = []
    sessions: list[Any] = []
    try:
        publisher, answer = await PublisherSession.accept(
            unit_id="owner-01", offer_sdp=pub.pc.localDescription.sdp, channel=owner.channel("owner-01"),
            ice_servers=[], timeout_s=3.0, on_end=ended)
        sessions.append(publisher)
        await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        async def post_offer(sdp: str) -> str:  # what the owner's WHEP route does for a node
            session, answer = await ViewerSession.accept(unit_id="owner-01", offer_sdp=sdp,
                                                         channel=owner.channel("owner-01"), ice_servers=[],
                                                         on_end=ended, viewer="node:puller")
            pulled_by.append(session)
            return answer

        upstream = await UpstreamSession.connect(unit_id="pull-01", channel=puller.channel("pull-01"),
                                                 ice_servers=[], timeout_s=3.0, post_offer=post_offer, on_end=ended)
        sessions.append(upstream)
        assert upstream.codecs == {"video": "video/VP8"}
        assert puller.channel("pull-01").video.owner == upstream.id

        sessions.append(await view(puller, "pull-01", viewers[0]))
        await viewers[0].wait_frames(5, timeout=30)
        assert viewers[0].frames[0][2], "the first frame is a keyframe"
        sent = {digest for digest, _ in pub.sent}
        assert {digest for _, digest, _ in viewers[0].frames} <= sent, "frames pass through unchanged"

        # A second viewer's keyframe request goes upstream: the owner's channel hears a viewer PLI.
        caplog.set_level(logging.DEBUG, logger="media.relay")
        caplog.clear()
        sessions.append(await view(puller, "pull-01", viewers[1]))
        await viewers[1].wait_frames(5, timeout=30)
        asked = [r.getMessage() for r in caplog.records if r.name == "media.relay"]
        assert "unit pull-01: keyframe requested (new viewer)" in asked
        assert "unit owner-01: keyframe requested (viewer PLI/FIR)" in asked, asked

        # The owner ends the pull's session: the pulled source ends, the viewers stay subscribed.
        await pulled_by[0].close("owner gone")
        await until(lambda: upstream.ended_reason is not None, 30, "the upstream session ending")
        channel = puller.channel("pull-01")
        assert channel.video.owner is None and len(channel.video.viewers) == 2
    finally:
        for session in reversed(sessions):
            await session.close()
        for viewer in viewers:
            await viewer.close()
        await pub.close()
        await owner.close()
        await puller.close()
