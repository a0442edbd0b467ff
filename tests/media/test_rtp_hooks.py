"""Pins the aiortc internals media/rtp_hooks.py relies on: an aiortc upgrade that changes any of
them fails here, before the packet engine silently stops receiving, retransmitting or reporting."""

from __future__ import annotations

import inspect

import pytest
from aiortc import RTCDtlsTransport, RTCRtpSender

from media import rtp_hooks


def test_dtls_transport_hands_unprotected_packets_to_the_hooked_methods() -> None:
    src = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self._rx_srtp.unprotect(data)" in src
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in src
    assert "await self._handle_rtcp_data(data)" in src
    send = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "protect_rtcp(data)" in send and "self._tx_srtp.protect(data)" in send
    assert "ConnectionError" in send


def test_sender_routes_nacks_and_reports_through_the_hooked_methods() -> None:
    handle = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "await self._retransmit(seq)" in handle and "self._send_keyframe()" in handle
    rtcp = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in rtcp and "ssrc=self._ssrc" in rtcp and "await self._send_rtcp(packets)" in rtcp
    init = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init


async def test_hooks_shadow_one_instance_and_refuse_objects_without_the_internals() -> None:
    class Transport:
        state = "new"

    sender = RTCRtpSender("video", transport=Transport())  # type: ignore[arg-type]

    async def retransmit(seq: int) -> None:
        return None

    rtp_hooks.on_retransmit(sender, retransmit)
    assert sender._retransmit is retransmit
    assert vars(RTCRtpSender)["_retransmit"] is not retransmit  # the class is untouched
    ssrc, rtx = rtp_hooks.sender_ssrcs(sender)
    assert ssrc == sender._ssrc and rtx == sender._rtx_ssrc

    class Bare:
        pass

    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.intercept_rtp(Bare(), retransmit)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.rtp_sender_of(Bare())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.on_sender_report(Bare(), lambda: None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.sender_ssrcs(Bare())  # type: ignore[arg-type]
