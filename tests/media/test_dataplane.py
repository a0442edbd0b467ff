"""media/_dataplane.c against its reference, the Python hooks of media/rtp_hooks.py: the same
SRTP bytes, counters, routing and errors, packet for packet.

Each side gets its own pylibsrtp session with the same key, so identical inputs must give
identical ciphertext (SRTP is deterministic per key, SSRC and index). The DTLS transport, ICE
connection and socket around them are stand-ins that record what is sent and passed on; the real
aiortc peers are in tests/media/test_rtp_hooks.py (both paths) and the whole packet engine runs on
the native path in tests/media/test_packets.py and tests/media/test_lossy.py.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import State

from media import _dataplane, rtp_hooks
from media.packets import LATE_LIMIT, PacketViewer, fan_out
from media.relay import Fanout, RelayConfig
from media.rtpext import ExtensionPlan, abs_send_time
from media.rtpwire import build_rtp
from tests.support.dtls_standin import PROFILES, Dtls, Pair, srtp_session


def _packets() -> list[tuple[int, bool, int, int, int, bytes, bytes]]:
    plan = ExtensionPlan("0", 1, 3, 2)
    out = []
    for k in range(40):
        ext = plan.block(abs_send_time(1_700_000_000 + k / 30), b"\x8a" if k % 3 else None) if k % 2 else b""
        out.append((96 + k % 3, k % 4 == 3, (65530 + k) & 0xFFFF, (4_294_967_000 + 3000 * k) & 0xFFFFFFFF,
                    0x1234_5678 + k % 2, bytes([k]) * (1 + 29 * k), ext))
    return out


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_native_sender_sends_the_bytes_the_python_reference_sends(profile: str) -> None:
    native, python = Dtls(profile), Dtls(profile)
    send_n, send_p = rtp_hooks.rtp_sender_of(native, True), rtp_hooks.rtp_sender_of(python, False)  # type: ignore[arg-type]
    assert isinstance(send_n, _dataplane.Outbound) and not isinstance(send_p, _dataplane.Outbound)
    for args in _packets():
        send_n.rtp(*args)
        send_p.rtp(*args)
    for args in _packets()[:5]:  # whole packets too (retransmissions of the same index are new SRTP packets)
        packet = build_rtp(*args[:5], args[5], args[6])
        packet = packet[:2] + ((int.from_bytes(packet[2:4], "big") + 100) & 0xFFFF).to_bytes(2, "big") + packet[4:]
        send_n(packet)
        send_p(packet)
    assert len(native.sent) == 45
    assert native.sent == python.sent
    assert native.counters() == python.counters()
    assert native.counters()[3] == 45
    rx = srtp_session(profile, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    first = _packets()[1]
    assert rx.unprotect(native.sent[1][0]) == build_rtp(*first[:5], first[5], first[6])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_native_rtcp_sender_matches_the_python_reference(profile: str) -> None:
    native, python = Dtls(profile), Dtls(profile)
    send_n, send_p = rtp_hooks.rtcp_sender_of(native, True), rtp_hooks.rtcp_sender_of(python, False)  # type: ignore[arg-type]
    pli = bytes([0x81, 206, 0, 2]) + (1).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
    for _ in range(3):
        send_n(pli)
        send_p(pli)
    assert native.sent == python.sent and len(native.sent) == 3
    assert native.counters() == python.counters()


def test_both_senders_refuse_the_same_way() -> None:
    for native in (True, False):
        dtls = Dtls("aead-aes128-gcm")
        send = rtp_hooks.rtp_sender_of(dtls, native)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="packet is too long"):
            send(bytes([0x80, 96]) + bytes(1500 - 144 - 1))
        with pytest.raises(ValueError, match="packet is too long"):
            send.rtp(96, False, 1, 1, 1, bytes(1500 - 144 - 11), b"")
        send.rtp(96, False, 1, 1, 1, bytes(1500 - 144 - 12), b"")  # the longest that fits
        with pytest.raises(TypeError):
            send("not bytes")  # type: ignore[arg-type]
        dtls._state = State.CLOSED
        with pytest.raises(ConnectionError, match="not connected"):
            send.rtp(96, False, 2, 1, 1, b"x", b"")
        dtls._state = State.CONNECTED
        pair = dtls.transport._connection._nominated.pop(1)
        with pytest.raises(ConnectionError, match="not connected"):
            send.rtp(96, False, 3, 1, 1, b"x", b"")
        # a new pair and new keys (ICE restart, a new DTLS session) are picked up at once
        moved = Pair(("198.51.100.9", 6000))
        dtls.transport._connection._nominated[1] = moved
        dtls._tx_srtp = srtp_session("aes128-cm-sha1-80", pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        send.rtp(96, True, 4, 1, 1, b"moved", b"")
        assert [addr for _, addr in moved.protocol.transport.sent] == [("198.51.100.9", 6000)]
        plain = srtp_session("aes128-cm-sha1-80", pylibsrtp.Policy.SSRC_ANY_INBOUND).unprotect(
            moved.protocol.transport.sent[0][0])
        assert plain == build_rtp(96, True, 4, 1, 1, b"moved")
        assert len(pair.protocol.transport.sent) == 1
        assert dtls.counters()[3] == 2, native


RTCP_SR = bytes([0x80, 200, 0, 6]) + bytes(range(24))
RTCP_PLI = bytes([0x81, 206, 0, 2]) + (1).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")


def _datagrams(profile: str) -> list[bytes]:
    """What arrives on a publisher's socket: SRTP, SRTCP, STUN, DTLS, garbage in the RTP and RTCP
    ranges, a replay, one too long for any packet of ours."""
    tx = srtp_session(profile, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    srtp = [tx.protect(build_rtp(*args[:5], args[5][:1200], args[6])) for args in _packets()]
    return [
        srtp[0], srtp[1],
        tx.protect_rtcp(RTCP_SR), tx.protect_rtcp(RTCP_PLI),
        bytes([0x80, 200]) + bytes(30),  # RTCP-range garbage: not authentic
        bytes([0x00, 0x01, 0x00, 0x00]) + bytes(16),  # STUN binding request
        bytes([22, 254, 253]) + bytes(20),  # DTLS record
        bytes([0x80, 96]) + bytes(40),  # RTP-range garbage: not authentic
        srtp[1],  # a replay
        bytes([0x80, 96]) + bytes(1600),  # too long
        b"\x80",  # too short to tell
        *srtp[2:],
    ]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_native_ingress_passes_on_what_the_python_reference_passes_on(profile: str) -> None:
    got: dict[bool, list[bytes]] = {True: [], False: []}
    dtls = {native: Dtls(profile) for native in (True, False)}
    for native, transport in dtls.items():
        rtp_hooks.intercept_rtp(transport, got[native].append, native)  # type: ignore[arg-type]
        hook = transport.transport._connection.data_received
        assert isinstance(hook, _dataplane.Inbound) == native
        for data in _datagrams(profile):
            hook(data, 1)
    assert len(got[True]) == len(_packets())
    assert got[True] == got[False]
    assert got[True][0] == build_rtp(*_packets()[0][:5], _packets()[0][5][:1200], _packets()[0][6])
    passed = {native: t.transport._connection.passed_on for native, t in dtls.items()}
    assert passed[True] == passed[False]
    assert [d[:2] for d, _ in passed[True]] == [bytes([0x00, 0x01]), bytes([22, 254]), b"\x80"]
    assert dtls[True].rtcp == dtls[False].rtcp == [RTCP_SR, RTCP_PLI]  # to aiortc's handling, at once
    assert dtls[True].counters() == dtls[False].counters()
    assert dtls[True].counters()[1] == len(_packets()) + 2


def test_before_the_keys_exist_every_datagram_goes_the_usual_way() -> None:
    for native in (True, False):
        dtls = Dtls("aead-aes128-gcm")
        dtls._rx_srtp = None
        got: list[bytes] = []
        rtp_hooks.intercept_rtp(dtls, got.append, native)  # type: ignore[arg-type]
        datagrams = _datagrams("aead-aes128-gcm")
        for data in datagrams:
            dtls.transport._connection.data_received(data, 1)
        assert got == []
        assert [d for d, _ in dtls.transport._connection.passed_on] == datagrams


def test_a_failing_handler_is_logged_and_the_next_packet_still_arrives(caplog: pytest.LogCaptureFixture) -> None:
    for native in (True, False):
        caplog.clear()
        dtls = Dtls("aead-aes128-gcm")
        seen: list[bytes] = []

        def handler(data: bytes, seen: list[bytes] = seen) -> None:
            seen.append(data)
            if len(seen) == 1:
                raise KeyError("a bug in the handler")

        rtp_hooks.intercept_rtp(dtls, handler, native)  # type: ignore[arg-type]
        tx = srtp_session("aead-aes128-gcm", pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        with caplog.at_level(logging.ERROR, logger="media.rtp_hooks"):
            for seq in (1, 2):
                dtls.transport._connection.data_received(tx.protect(build_rtp(96, False, seq, 0, 5, b"p")), 1)
        assert len(seen) == 2
        records = [r for r in caplog.records if "could not be handled" in r.getMessage()]
        assert len(records) == 1 and records[0].exc_info is not None
        assert records[0].exc_info[0] is KeyError


def test_the_native_plane_is_bound_to_the_libsrtp_pylibsrtp_loaded() -> None:
    rtp_hooks._bind_native()
    rtp_hooks._bind_native()  # idempotent
    with pytest.raises(RuntimeError, match="another libsrtp"):
        _dataplane.bind(1, 2, 3, 4, 144, 148, pylibsrtp.Error, pylibsrtp.ERRORS, State.CONNECTED)


def test_the_native_plane_holds_no_memory_per_packet_on_any_path() -> None:
    """Reference counts in C: 3,000 rounds of every path (sent, received, passed on, refused,
    failed) leave nothing behind in Python's allocator."""
    import gc
    import tracemalloc

    dtls = Dtls("aead-aes128-gcm")
    send = rtp_hooks.rtp_sender_of(dtls, True)  # type: ignore[arg-type]
    rtcp = rtp_hooks.rtcp_sender_of(dtls, True)  # type: ignore[arg-type]
    got: list[bytes] = []

    def handler(data: bytes) -> None:
        if data[1] & 0x7F == 97:
            raise KeyError("a bug in the handler")
        got.append(data)

    rtp_hooks.intercept_rtp(dtls, handler, True)  # type: ignore[arg-type]
    hook = dtls.transport._connection.data_received
    tx = srtp_session("aead-aes128-gcm", pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    logger = logging.getLogger("media.rtp_hooks")
    logger.disabled = True  # the failing handler's log lines are not what is measured

    def round_trip(k: int) -> None:
        send.rtp(96, bool(k & 1), k & 0xFFFF, k * 3000, 7, b"v" * 900, b"\xbe\xde\x00\x01\x22\x01\x02\x03")
        send(build_rtp(96, False, (k + 30000) & 0xFFFF, 0, 8, b"a" * 100))
        rtcp(bytes([0x81, 206, 0, 2]) + bytes(8))
        with contextlib.suppress(ValueError):
            send(bytes(1500))
        with contextlib.suppress(ValueError):
            send.rtp(200, False, 1, 1, 1, b"", b"")
        hook(tx.protect(build_rtp(96, False, k & 0xFFFF, 0, 9, b"p" * 800)), 1)
        hook(tx.protect(build_rtp(97, False, k & 0xFFFF, 0, 10, b"q")), 1)  # the handler raises
        hook(bytes([0x80, 96]) + bytes(40), 1)  # not authentic
        hook(bytes([0x00, 0x01]) + bytes(18), 1)  # STUN: passed on
        got.clear()
        dtls.transport._connection.passed_on.clear()
        dtls.sent.clear()

    try:
        for k in range(300):  # warm: caches, interned objects, free lists
            round_trip(k)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for k in range(300, 3300):
            round_trip(k)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        logger.disabled = False
    assert grown < 32_000, f"{grown} bytes held after 3,000 rounds"


def _fan_scenario(native: bool, outbound: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """Viewers of one video stream with every kind of plan, some waiting, one not yet connected,
    one whose transport fails now and then; a packet sequence with keyframes, markers, gaps, late
    packets, a jump of more than a quarter of the sequence space and audio levels. Answers what
    each viewer sent, its state after each packet, and the fanout's counters and requests."""
    fanout = Fanout("bc-fan", "video", RelayConfig(native_dataplane=native), lambda: 0.0)
    asked: list[str] = []
    fanout.request_keyframe = asked.append  # type: ignore[method-assign, assignment]
    stream = fanout.stream
    plans = [None, ExtensionPlan("0", 1, None, None), ExtensionPlan("video", 4, 3, 2),
             ExtensionPlan("a-mid-longer-than-16", 1, 3, None), ExtensionPlan(None, None, 20, 21)]
    wires: list[list[bytes]] = []
    up = {"connected": False, "fail": False}
    viewers = []
    for k, plan in enumerate(plans * 2):
        wire: list[bytes] = []
        wires.append(wire)
        dtls = Dtls("aead-aes128-gcm")
        if outbound:  # the native side's Outbound is called from C; the Python side's reference sender
            send = rtp_hooks.rtp_sender_of(dtls, native)  # type: ignore[arg-type]
            wire_of: list[Any] = dtls.sent
        else:
            def capture(data: bytes, wire: list[bytes] = wire) -> None:
                if up["fail"] and len(wire) % 2:
                    raise ConnectionError("Cannot send encrypted RTP, not connected")
                wire.append(data)

            send = rtp_hooks.FunctionSend(capture)
            wire_of = wire
        connected = (lambda: up["connected"]) if k == 3 else (lambda: True)
        viewer = PacketViewer(stream, send, connected, ssrc=0x1000 + k, payload_type=96 + k % 3, rtx_ssrc=0x2000 + k,
                              rtx_payload_type=None, plan=plan)
        if k % 4 == 1:  # audio-like: no wait for a keyframe
            viewer.waiting = False
            viewer.video = False
        viewers.append((viewer, wire_of))
        stream.subscribe(viewer)
    fan = tuple(v for v, _ in viewers)
    step = _dataplane.fan_out if native else fan_out
    states: list[Any] = []
    seq, ts = 65000, 4_294_960_000
    skipped: list[int] = []
    for n in range(400):
        if n == 40:
            up["connected"] = True
        up["fail"] = 100 <= n < 110
        if n == 200:
            seq = (seq + 0x5000) & 0xFFFF  # far ahead: epochs are moved along
        if n % 23 == 5 or n == 7:  # a gap (never a duplicate: SRTP refuses to protect an index twice)
            skipped.append(seq)
            seq = (seq + 1) & 0xFFFF
        # late: at 8, the packet just before the keyframe at 7, one older than the video viewers' start
        late = (n % 23 == 9 or n == 8) and bool(skipped)
        out_seq = skipped.pop() if late else seq
        starts = n % 60 == 7
        marker = n % 3 == 2
        level = bytes([0x80 | n % 127]) if n % 5 else None
        step(fan, out_seq, ts, marker, bytes([n & 0xFF]) * (20 + n % 50), starts, level, bytes([1, 2, n & 0xFF]))
        if not late:
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 3000 * marker) & 0xFFFFFFFF
        states.append([(v.packets, v.octets, v.frames, v._epoch, v._next_seq, v._delta, v.waiting) for v, _ in viewers])
    sent = [list(wire_of) for _, wire_of in viewers]
    return sent, states, [fanout.frames_out, len(fanout.first_frames), asked]


@pytest.mark.parametrize("outbound", [False, True], ids=["function-send", "outbound"])
def test_the_native_fan_out_forwards_what_the_python_reference_forwards(outbound: bool) -> None:
    sent_n, states_n, counters_n = _fan_scenario(True, outbound)
    sent_p, states_p, counters_p = _fan_scenario(False, outbound)
    assert all(sent_n), "every viewer got packets"
    assert [len(s) for s in sent_n] == [len(s) for s in sent_p]
    assert sent_n == sent_p
    for n, (a, b) in enumerate(zip(states_n, states_p, strict=True)):
        assert a == b, f"after packet {n}"
    assert counters_n == counters_p
    assert counters_n[2] == ["viewer connected"] * 7, "each waiting video viewer asked once, when connected"


def test_the_native_plane_knows_the_late_limit() -> None:
    assert _dataplane.LATE_LIMIT == LATE_LIMIT


def test_viewer_fields_take_only_what_they_can_hold() -> None:
    viewer = _dataplane.ViewerCore()
    assert viewer._epoch is None and viewer._next_seq is None and viewer.plan is None
    viewer._epoch = 0xFFFF
    assert viewer._epoch == 0xFFFF
    with pytest.raises(ValueError, match=r"_epoch must be an int in 0\.\.65535 or None"):
        viewer._epoch = 0x10000
    with pytest.raises(AttributeError):
        del viewer._next_seq
    with pytest.raises(AttributeError):
        viewer._send = object()  # no .rtp
    with pytest.raises(TypeError, match="ViewerCore"):
        _dataplane.fan_out((object(),), 1, 1, False, b"x", True, None)
    with pytest.raises(TypeError, match="send_time"):
        _dataplane.fan_out((), 1, 1, False, b"x", True, None, "now")  # type: ignore[arg-type]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_viewers_transport_gives_up_its_srtcp_alone(native: bool) -> None:
    """No RTP handler (a viewer's transport): its SRTCP is taken as it arrives and handed to
    aiortc's handling at once; everything else, RTP included, goes the usual way."""
    dtls = Dtls("aead-aes128-gcm")
    rtp_hooks.intercept_rtp(dtls, None, native)  # type: ignore[arg-type]
    datagrams = _datagrams("aead-aes128-gcm")
    for data in datagrams:
        dtls.transport._connection.data_received(data, 1)
    assert dtls.rtcp == [RTCP_SR, RTCP_PLI]
    taken = set(datagrams[2:5])  # the two SRTCP packets, and the unauthentic one dropped
    assert [d for d, _ in dtls.transport._connection.passed_on] == [d for d in datagrams if d not in taken]
    assert dtls.counters()[1] == 2
