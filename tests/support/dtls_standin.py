"""Stand-ins for the parts of aiortc's RTCDtlsTransport (and the aioice connection and socket under
it) that media/rtp_hooks.py and media/_dataplane.c use, around real pylibsrtp sessions: what is
sent and passed on is kept. For tests/media/test_dataplane.py and bench/dataplane.py; the real
aiortc peers are in tests/media/test_rtp_hooks.py."""

from __future__ import annotations

from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State

PROFILES = {
    "aes128-cm-sha1-80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "aead-aes128-gcm": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
}


def srtp_session(profile: str, direction: int) -> pylibsrtp.Session:
    srtp_profile, key_len = PROFILES[profile]
    return pylibsrtp.Session(pylibsrtp.Policy(key=bytes(range(7, 7 + key_len)), ssrc_type=direction,
                                              srtp_profile=srtp_profile))


class Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class Protocol:
    def __init__(self) -> None:
        self.transport = Udp()


class Pair:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.protocol = Protocol()
        self.remote_addr = addr


class Connection:
    def __init__(self) -> None:
        self._nominated: dict[int, Pair] = {1: Pair(("192.0.2.7", 5004))}
        self.passed_on: list[tuple[bytes, int]] = []
        self._protocols: list[Any] = []  # aioice's StunProtocol objects: see test_rtp_hooks.py

    def data_received(self, data: bytes, component: int) -> None:
        self.passed_on.append((data, component))


class Ice:
    def __init__(self) -> None:
        self._connection = Connection()


class Dtls:
    """The parts of aiortc's RTCDtlsTransport the hooks use."""

    def __init__(self, profile: str) -> None:
        self.transport = Ice()
        self._state = State.CONNECTED
        self._tx_srtp: pylibsrtp.Session | None = srtp_session(profile, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._rx_srtp: pylibsrtp.Session | None = srtp_session(profile, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._RTCDtlsTransport__rx_bytes = 0
        self._RTCDtlsTransport__rx_packets = 0
        self._RTCDtlsTransport__tx_bytes = 0
        self._RTCDtlsTransport__tx_packets = 0
        self.rtcp: list[bytes] = []  # unprotected RTCP handed to aiortc's handling

    async def _send_rtp(self, data: bytes) -> None:
        raise AssertionError("the hooks send without aiortc's coroutine")

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        raise AssertionError("RTP is taken at the datagram")

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.rtcp.append(data)  # aiortc's RTCP routing: nothing to route to here

    @property
    def sent(self) -> list[tuple[bytes, Any]]:
        return self.transport._connection._nominated[1].protocol.transport.sent

    def counters(self) -> tuple[int, int, int, int]:
        return (self._RTCDtlsTransport__rx_bytes, self._RTCDtlsTransport__rx_packets,
                self._RTCDtlsTransport__tx_bytes, self._RTCDtlsTransport__tx_packets)
