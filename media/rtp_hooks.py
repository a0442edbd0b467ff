"""The packet engine's reliance on aiortc internals, all of it (pinned by tests/media/test_rtp_hooks.py).

Beside :mod:`media.passthrough` (the frame engine's hooks), this is the only module of the packet
engine that touches aiortc beyond its public API. Each hook checks that what it replaces or
calls is still there and raises a ``RuntimeError`` naming this module otherwise.

- Ingress: ``RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)`` receives every unprotected
  RTP packet of a transport before aiortc parses it; :func:`intercept_rtp` replaces it on one
  transport instance, so a publisher's packets never reach ``RTCRtpReceiver`` (no bandwidth
  estimator, statistics, NACK generator, jitter buffer or decoder thread).
  ``RTCDtlsTransport._handle_rtcp_data(data)`` is wrapped by :func:`observe_rtcp` (the publisher's
  sender reports), and aiortc still routes the RTCP as before.
- Egress: ``RTCDtlsTransport._send_rtp(data)`` protects (SRTP or SRTCP) and sends one packet;
  :func:`rtp_sender_of` hands out the bound method, used for RTP to viewers and RTCP to publishers.
- Viewer senders: ``RTCRtpSender._ssrc`` / ``_rtx_ssrc`` (the SSRCs announced in the answer),
  ``RTCRtpSender._retransmit(seq)`` (called for each NACKed sequence number; replaced per instance
  by :func:`on_retransmit`) and ``RTCRtpSender._send_rtcp(packets)`` (its periodic SR and SDES; the
  SR's sender info is rewritten per instance by :func:`on_sender_report`).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiortc import RTCDtlsTransport, RTCRtpSender
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

RtpSend = Callable[[bytes], Awaitable[None]]


def _require(obj: object, name: str, what: str) -> Any:
    attr = getattr(obj, name, None)
    if attr is None:
        raise RuntimeError(f"{what} is gone: media/rtp_hooks.py needs updating")
    return attr


def _replace(obj: object, name: str, value: object) -> None:
    """Shadow method ``name`` on this one instance."""
    setattr(obj, name, value)


def intercept_rtp(transport: RTCDtlsTransport, handler: Callable[[bytes, int], Awaitable[None]]) -> None:
    """Hand every unprotected RTP packet of ``transport`` to ``handler(data, arrival_time_ms)``
    instead of aiortc's receivers (this instance only)."""
    if not callable(_require(transport, "_handle_rtp_data", "RTCDtlsTransport._handle_rtp_data")):
        raise RuntimeError("RTCDtlsTransport._handle_rtp_data is not callable: media/rtp_hooks.py needs updating")
    _replace(transport, "_handle_rtp_data", handler)


def observe_rtcp(transport: RTCDtlsTransport, observer: Callable[[bytes], None]) -> None:
    """Show every unprotected RTCP compound packet of ``transport`` to ``observer`` first; aiortc
    then handles it as before."""
    original = _require(transport, "_handle_rtcp_data", "RTCDtlsTransport._handle_rtcp_data")
    if not callable(original):
        raise RuntimeError("RTCDtlsTransport._handle_rtcp_data is not callable: media/rtp_hooks.py needs updating")

    async def handle(data: bytes) -> None:
        observer(data)
        await original(data)

    _replace(transport, "_handle_rtcp_data", handle)


def rtp_sender_of(transport: RTCDtlsTransport) -> RtpSend:
    """``send(data)``: protect one RTP or RTCP packet and send it on ``transport``; raises
    ``ConnectionError`` while the transport is not connected."""
    send = _require(transport, "_send_rtp", "RTCDtlsTransport._send_rtp")
    if not callable(send):
        raise RuntimeError("RTCDtlsTransport._send_rtp is not callable: media/rtp_hooks.py needs updating")
    return send  # type: ignore[no-any-return]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) of ``sender``, as announced in its SDP."""
    ssrc = _require(sender, "_ssrc", "RTCRtpSender._ssrc")
    rtx = _require(sender, "_rtx_ssrc", "RTCRtpSender._rtx_ssrc")
    if not isinstance(ssrc, int) or not isinstance(rtx, int):
        raise RuntimeError("RTCRtpSender SSRCs changed type: media/rtp_hooks.py needs updating")
    return ssrc, rtx


def on_retransmit(sender: RTCRtpSender, callback: Callable[[int], Awaitable[None]]) -> None:
    """``await callback(seq)`` for each sequence number the viewer of ``sender`` NACKs."""
    if not callable(_require(sender, "_retransmit", "RTCRtpSender._retransmit")):
        raise RuntimeError("RTCRtpSender._retransmit is not callable: media/rtp_hooks.py needs updating")
    _replace(sender, "_retransmit", callback)


def on_sender_report(sender: RTCRtpSender, sender_info: Callable[[], RtcpSenderInfo | None]) -> None:
    """Replace the sender info of each SR that ``sender`` sends by ``sender_info()`` (unless None)."""
    original = _require(sender, "_send_rtcp", "RTCRtpSender._send_rtcp")
    if not callable(original):
        raise RuntimeError("RTCRtpSender._send_rtcp is not callable: media/rtp_hooks.py needs updating")

    async def send_rtcp(packets: list[Any]) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == sender._ssrc:
                info = sender_info()
                if info is not None:
                    packet.sender_info = info
        await original(packets)

    _replace(sender, "_send_rtcp", send_rtcp)
