"""Pins the aiortc (and aioice) internals media/rtp_hooks.py relies on: an upgrade that changes any
of them fails here, before the packet engine silently stops receiving, sending, retransmitting or
reporting."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from aioice import ice
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from media import _dataplane, rtp_hooks
from media.packets import IdleTrack
from media.rtpwire import build_rtp, parse_rtp
from tests.support.waits import until


def test_dtls_transport_hands_unprotected_packets_to_the_hooked_methods() -> None:
    src = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "data = await self.transport._recv()" in src
    assert "self._rx_srtp.unprotect(data)" in src
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in src
    assert "await self._handle_rtcp_data(data)" in src
    assert "self.__rx_bytes += len(data)" in src and "self.__rx_packets += 1" in src
    send = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "protect_rtcp(data)" in send and "self._tx_srtp.protect(data)" in send
    assert "self._state != State.CONNECTED" in send and "ConnectionError" in send
    assert "await self.transport._send(data)" in send
    assert "self.__tx_bytes += len(data)" in send and "self.__tx_packets += 1" in send


def test_aioice_delivers_datagrams_and_sends_through_the_nominated_pair() -> None:
    received = inspect.getsource(ice.StunProtocol.datagram_received)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(ice.Connection.data_received)
    sendto = inspect.getsource(ice.Connection.sendto)
    assert "self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(ice.StunProtocol.send_data)


def test_sender_routes_nacks_and_reports_through_the_hooked_methods() -> None:
    handle = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "await self._retransmit(seq)" in handle and "self._send_keyframe()" in handle
    rtcp = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in rtcp and "ssrc=self._ssrc" in rtcp and "await self._send_rtcp(packets)" in rtcp
    init = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init


def test_a_receiver_without_its_bandwidth_estimator_still_takes_packets() -> None:
    assert "if self.__remote_bitrate_estimator is not None:" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    class Transport:
        state = "new"

    receiver = RTCRtpReceiver("video", transport=Transport())  # type: ignore[arg-type]
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is not None  # type: ignore[attr-defined]
    rtp_hooks.drop_bandwidth_estimator(receiver)
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is None  # type: ignore[attr-defined]


async def test_hooks_shadow_one_instance_and_refuse_objects_without_the_internals() -> None:
    class Transport:
        state = "new"

    sender = RTCRtpSender("video", transport=Transport())  # type: ignore[arg-type]
    asked: list[int] = []
    rtp_hooks.on_retransmit(sender, asked.append)
    await sender._retransmit(7)
    assert asked == [7]
    assert "_retransmit" in vars(sender) and vars(RTCRtpSender)["_retransmit"] is not vars(sender)["_retransmit"]
    ssrc, rtx = rtp_hooks.sender_ssrcs(sender)
    assert ssrc == sender._ssrc and rtx == sender._rtx_ssrc

    class Bare:
        pass

    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.intercept_rtp(Bare(), asked.append)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.rtp_sender_of(Bare())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.rtcp_sender_of(Bare())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.on_sender_report(Bare(), lambda: None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.sender_ssrcs(Bare())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="media/rtp_hooks.py"):
        rtp_hooks.drop_bandwidth_estimator(Bare())  # type: ignore[arg-type]


async def _offer_video(sending: RTCPeerConnection, receiving: RTCPeerConnection) -> None:
    """A send-only video offer from ``sending`` and ``receiving``'s answer, set on ``receiving``
    (``sending`` still has to take the answer)."""
    sending.addTransceiver(IdleTrack("video"), direction="sendonly")
    await sending.setLocalDescription(await sending.createOffer())
    await receiving.setRemoteDescription(sending.localDescription)
    await receiving.setLocalDescription(await receiving.createAnswer())


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_packets_sent_synchronously_arrive_at_the_intercepting_peer_and_are_counted(native: bool) -> None:
    """Two real peers: RTP and RTCP sent with the hooks' synchronous senders are unprotected by the
    other side and reach its handler (RTP, as sent) or aiortc (RTCP, seen by the observer); the
    transports' statistics count them as aiortc's own send path does. Both the native data plane
    (media._dataplane) and the Python reference."""
    sending, receiving = RTCPeerConnection(), RTCPeerConnection()
    try:
        await _offer_video(sending, receiving)
        out = sending.getSenders()[0].transport
        inbound = receiving.getReceivers()[0].transport
        got: list[bytes] = []
        rtcp: list[bytes] = []
        rtp_hooks.intercept_rtp(inbound, got.append, native)
        rtp_hooks.observe_rtcp(inbound, rtcp.append)
        connection = inbound.transport._connection
        srtp_below: list[bytes] = []  # SRTP that reached aioice's Connection.data_received
        if native:  # the native hook takes SRTP at the sockets' protocols, before aioice's Python
            protocols = [p for p in connection._protocols if type(p) is ice.StunProtocol]
            assert protocols and all(isinstance(vars(p)["datagram_received"], _dataplane.Inbound) for p in protocols)
            below = connection.data_received

            def spy(data: bytes, component: int) -> None:
                if len(data) > 1 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                    srtp_below.append(data)
                below(data, component)

            connection.data_received = spy  # type: ignore[method-assign]
        send_rtp, send_rtcp = rtp_hooks.rtp_sender_of(out, native), rtp_hooks.rtcp_sender_of(out, native)
        with pytest.raises(ConnectionError):
            send_rtp(build_rtp(96, True, 1, 1, 1, b"x"))  # not connected yet
        await sending.setRemoteDescription(receiving.localDescription)
        await until(lambda: out.state == "connected" and inbound.state == "connected", timeout=20,
                    what="DTLS up on both sides")
        before = out._get_stats()
        sent = [build_rtp(96, k % 2 == 0, 1000 + k, 90 * k, 0x1234, bytes([k]) * (100 + k)) for k in range(20)]
        for packet in sent[:10]:
            send_rtp(packet)
        for k in range(10, 20):  # built by the sender: the same packets
            send_rtp.rtp(96, k % 2 == 0, 1000 + k, 90 * k, 0x1234, bytes([k]) * (100 + k), b"")
        pli = bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=0x1234))
        send_rtcp(pli)
        await until(lambda: len(got) == len(sent) and rtcp, timeout=10, what="RTP and RTCP at the other peer")
        assert got == sent  # in order, byte for byte
        assert srtp_below == []
        assert parse_rtp(got[0]) is not None
        assert isinstance(RtcpPacket.parse(rtcp[0])[0], RtcpPsfbPacket)
        after = out._get_stats()
        (b,), (a,) = before.values(), after.values()
        assert a.packetsSent - b.packetsSent == len(sent) + 1
        assert a.bytesSent - b.bytesSent > sum(len(p) for p in sent)  # SRTP adds its tag
        assert list(inbound._get_stats().values())[0].packetsReceived >= len(sent)
        # A handler that raises loses its packet, not the socket.
        broken = [0]

        def fail(data: bytes) -> None:
            broken[0] += 1
            raise ValueError("a bug in the handler")

        more = [build_rtp(96, True, 2000 + k, 0, 0x1234, b"y") for k in range(2)]  # SRTP drops replays
        rtp_hooks.intercept_rtp(inbound, fail, native)
        send_rtp(more[0])
        await until(lambda: broken[0] == 1, timeout=10, what="the failing handler called")
        rtp_hooks.intercept_rtp(inbound, got.append, native)
        send_rtp(more[1])
        await until(lambda: got[-1] == more[1], timeout=10, what="packets still arriving after the failure")
    finally:
        await asyncio.gather(sending.close(), receiving.close())


def test_the_native_ingress_takes_datagrams_at_aioices_protocols() -> None:
    """Where the native hook sits: uvloop (and asyncio) look ``datagram_received`` up on the
    protocol for each datagram, and aioice's passes every non-STUN one to ``data_received``."""
    received = inspect.getsource(ice.StunProtocol.datagram_received)
    assert "stun.parse_message(data)" in received and "except ValueError:" in received
    assert "self._protocols: list[StunProtocol] = []" in inspect.getsource(ice.Connection.__init__)


async def test_sender_reports_go_through_the_given_sender_with_their_info_replaced() -> None:
    """on_sender_report with a sender: the SR's info is the viewer's, the compound packet goes out
    in one call, and a sender that is not connected (ConnectionError) is no error, as in aiortc."""

    class Sender:
        _ssrc = 1234

        async def _send_rtcp(self, packets: list[object]) -> None:
            raise AssertionError("aiortc's own path is not taken")

    sent: list[bytes] = []
    info = RtcpSenderInfo(ntp_timestamp=1 << 40, rtp_timestamp=9000, packet_count=7, octet_count=700)
    sender = Sender()
    rtp_hooks.on_sender_report(sender, lambda: info, sent.append)  # type: ignore[arg-type]
    stale = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    await sender._send_rtcp([RtcpSrPacket(ssrc=1234, sender_info=stale), RtcpByePacket(sources=[1234])])
    (packet,) = sent
    sr, bye = RtcpPacket.parse(packet)
    assert isinstance(sr, RtcpSrPacket) and sr.sender_info == info and isinstance(bye, RtcpByePacket)

    def not_connected(data: bytes) -> None:
        raise ConnectionError("Cannot send encrypted RTCP, not connected")

    rtp_hooks.on_sender_report(sender, lambda: None, not_connected)  # type: ignore[arg-type]
    await sender._send_rtcp([RtcpByePacket(sources=[1234])])


async def test_run_now_runs_a_coroutine_that_never_waits_in_the_callers_frame_and_a_task_finishes_one_that_does(
        caplog: pytest.LogCaptureFixture) -> None:
    steps: list[str] = []

    async def quick() -> None:
        steps.append("quick")

    async def slow() -> None:
        steps.append("slow: before")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "result")
        steps.append(f"slow: {await fut}")

    async def broken() -> None:
        raise KeyError("a bug")

    async def broken_later() -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, None)
        await fut
        raise KeyError("a later bug")

    rtp_hooks.run_now(quick())
    assert steps == ["quick"]
    rtp_hooks.run_now(slow())
    assert steps == ["quick", "slow: before"]
    await until(lambda: steps[-1] == "slow: result", timeout=10, what="the task finishing the coroutine")
    with caplog.at_level("ERROR", logger="media.rtp_hooks"):
        rtp_hooks.run_now(broken())
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
    caplog.clear()
    with caplog.at_level("ERROR", logger="media.rtp_hooks"):
        rtp_hooks.run_now(broken_later())
        await until(lambda: not rtp_hooks._finishing, timeout=10, what="the tasks done")
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == ["'a later bug'"]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_srtcp_reaches_aiortcs_handling_as_it_arrives_not_through_its_receive_task(native: bool) -> None:
    """Two real peers, the receiving side hooked for its RTCP alone (a viewer's transport): a PLI
    and a NACK reach aiortc's ``_handle_rtcp_data`` from the datagram callback (no task is
    running), and the sender's handlers act on them; RTP still goes aiortc's way."""
    sending, receiving = RTCPeerConnection(), RTCPeerConnection()
    try:
        await _offer_video(sending, receiving)
        await sending.setRemoteDescription(receiving.localDescription)
        out = sending.getSenders()[0].transport
        sender = sending.getSenders()[0]
        await until(lambda: out.state == "connected", timeout=20, what="DTLS up")
        rtp_hooks.intercept_rtp(out, None, native)
        in_task: list[bool] = []
        original = out._handle_rtcp_data

        async def spy(data: bytes) -> None:
            in_task.append(asyncio.current_task() is not None)
            await original(data)

        out._handle_rtcp_data = spy  # type: ignore[method-assign]
        nacked: list[int] = []
        rtp_hooks.on_retransmit(sender, nacked.append)
        keyframes = [0]
        sender._send_keyframe = lambda: keyframes.__setitem__(0, keyframes[0] + 1)  # type: ignore[method-assign]
        back = rtp_hooks.rtcp_sender_of(receiving.getReceivers()[0].transport, native)
        ssrc = rtp_hooks.sender_ssrcs(sender)[0]
        back(bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=ssrc)))
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=ssrc)
        nack.lost = [7, 9]
        back(bytes(nack))
        await until(lambda: keyframes[0] == 1 and nacked == [7, 9], timeout=10, what="the PLI and the NACK handled")
        assert in_task and not any(in_task), in_task
    finally:
        await asyncio.gather(sending.close(), receiving.close())

