"""A stream pulled from another node: this node's peer connection offers to receive a unit's
media from the node it publishes on (a WHEP client), and the received tracks become the sources of
this node's channel for the unit, attached exactly as a publisher's are (:func:`attach_sources`).

The session is a publisher as far as the channel is concerned: it ends when its connection fails
or its media stops for ``timeout_s`` (the owner died, or the unit stopped publishing there), and
keyframe requests of this node's viewers become PLIs to the owner, which hands them on to the unit.
How the offer travels (HTTP, credentials) is the caller's: ``post_offer(sdp)`` answers the
owner's answer SDP, or raises.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from .errors import SdpError
from .relay import Channel
from .session import PublisherSession, _close_refused, _negotiated_codecs, _rtc_config, attach_sources

logger = logging.getLogger(__name__)

PostOffer = Callable[[str], Awaitable[str]]


class UpstreamSession(PublisherSession):
    """This node receiving one unit's media from the node that owns it."""

    role = "upstream"

    @classmethod
    async def connect(
        cls,
        *,
        unit_id: str,
        channel: Channel,
        ice_servers: list[dict[str, Any]],
        timeout_s: float,
        post_offer: PostOffer,
        on_end: Callable[[Any, str], None],
    ) -> "UpstreamSession":
        """Offer to receive video and audio, hand the offer to ``post_offer`` and attach what the
        answer carries. Raises :class:`SdpError` for an answer without forwardable media; what
        ``post_offer`` raises passes through (the peer is closed either way)."""
        pc = RTCPeerConnection(_rtc_config(ice_servers))
        session = cls(unit_id, pc, channel, timeout_s, on_end)
        remote: list[MediaStreamTrack] = []
        pc.on("track", remote.append)  # must be registered before setRemoteDescription
        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            answer = await post_offer(pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except BaseException:
            await _close_refused(pc)
            raise
        attached = attach_sources(channel, session.id, pc, remote, _negotiated_codecs(answer))
        session.codecs, session.receivers, session.ingress = attached.codecs, attached.receivers, attached.ingress
        if not session.codecs:
            await session.close("the owner's answer has no media the relay can forward")
            raise SdpError("the owner's answer has no audio or video the relay can forward")
        session._start_watch()
        logger.info("unit %s: upstream %s attached (%s)", unit_id, session.id, session.codecs)
        return session
