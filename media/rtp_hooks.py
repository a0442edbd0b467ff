"""The packet engine's reliance on aiortc internals, all of it (pinned by tests/media/test_rtp_hooks.py).

Beside :mod:`media.passthrough` (the frame engine's hooks), this is the only module of the packet
engine that touches aiortc (and aioice) beyond their public API. Each hook checks that what it
replaces or calls is still there and raises a ``RuntimeError`` naming this module otherwise.

The packet engine's media path is synchronous, from the datagram to the viewers' sockets: a
coroutine chain per packet and a task switch per datagram cost more than the forwarding itself
(docs/benchmarks.md, "Packet engine: CPU and memory").

- Ingress: aioice's ``Connection.data_received(data, component)`` is where every datagram of a
  transport's nominated pair arrives (from the socket's ``datagram_received``); aiortc's
  ``RTCDtlsTransport`` then takes it off an ``asyncio.Queue`` in its own task, unprotects it
  (``_rx_srtp``) and hands it to ``_handle_rtp_data(data, arrival_time_ms)``.
  :func:`intercept_rtp` shadows both on one transport: SRTP datagrams are unprotected with the
  transport's ``_rx_srtp`` and handed to ``handler(data)`` as they arrive; SRTCP is unprotected
  the same way and handed to the transport's own ``_handle_rtcp_data(data)``, run to its end at
  once (:func:`run_now`); DTLS and packets that arrive before SRTP keys exist go the usual way,
  and RTP among them still reaches ``handler`` through ``_handle_rtp_data``. A publisher's RTP
  never reaches ``RTCRtpReceiver`` (no bandwidth estimator, statistics, NACK generator, jitter
  buffer or decoder thread). ``RTCDtlsTransport._handle_rtcp_data(data)`` is wrapped by
  :func:`observe_rtcp` (the publisher's sender reports), and aiortc still routes the RTCP as
  before: viewers' transports are hooked for their RTCP alone.
- Egress: :func:`rtp_sender_of` / :func:`rtcp_sender_of` return ``send(data)``, which does what
  ``RTCDtlsTransport._send_rtp`` does (state check, ``_tx_srtp.protect``/``protect_rtcp``, send
  on the ICE connection's nominated pair, the transport's byte and packet counts for its stats)
  without a coroutine.
- Receivers that never see a packet in the packet engine (a publisher's, intercepted above, and
  those of viewers' send-only transceivers) drop their ``RTCRtpReceiver.__remote_bitrate_estimator``
  (:func:`drop_bandwidth_estimator`: ~50 KB of rate buckets each; aiortc skips a None one).
- Native: with ``native=True`` (the default, ``[media] native_dataplane``) the ingress hook and
  the senders are :mod:`media._dataplane` objects doing the same in C: the same transports,
  counters and pairs, and pylibsrtp's own sessions, called through the libsrtp functions pylibsrtp
  loaded (``pylibsrtp._binding``; a ``Session``'s ``srtp_t`` is its ``_srtp[0]``). The ingress
  hook also shadows ``datagram_received`` of the connection's aioice ``StunProtocol`` objects
  (uvloop looks it up per datagram). The Python closures here are the reference;
  tests/media/test_dataplane.py checks both give the same bytes, counters and errors.
- Viewer senders: ``RTCRtpSender._ssrc`` / ``_rtx_ssrc`` (the SSRCs announced in the answer),
  ``RTCRtpSender._retransmit(seq)`` (called for each NACKed sequence number; replaced per instance
  by :func:`on_retransmit`) and ``RTCRtpSender._send_rtcp(packets)`` (its periodic SR and SDES, and
  the BYE at its end; replaced per instance by :func:`on_sender_report`, which rewrites the SR's
  sender info and sends through :func:`rtcp_sender_of`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable, Coroutine, Generator, Protocol

import pylibsrtp
from aioice import ice
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import State
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket
from pylibsrtp import _binding as _srtp_binding

from . import _dataplane
from .rtpwire import build_rtp

logger = logging.getLogger(__name__)


class RtpSend(Protocol):
    """``send(data)``: protect one packet and send it now; ``ConnectionError`` while not connected.
    ``send.rtp(payload_type, marker, sequence_number, timestamp, ssrc, payload, extension)``:
    the same for the packet :func:`media.rtpwire.build_rtp` builds of these."""

    def __call__(self, data: bytes, /) -> None: ...

    def rtp(self, payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
            extension: bytes, /) -> None: ...

_RX_BYTES, _RX_PACKETS = "_RTCDtlsTransport__rx_bytes", "_RTCDtlsTransport__rx_packets"
_TX_BYTES, _TX_PACKETS = "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets"


def _require(obj: object, name: str, what: str) -> Any:
    attr = getattr(obj, name, None)
    if attr is None:
        raise RuntimeError(f"{what} is gone: media/rtp_hooks.py needs updating")
    return attr


def _require_callable(obj: object, name: str, what: str) -> Any:
    attr = _require(obj, name, what)
    if not callable(attr):
        raise RuntimeError(f"{what} is not callable: media/rtp_hooks.py needs updating")
    return attr


def _replace(obj: object, name: str, value: object) -> None:
    """Shadow method ``name`` on this one instance."""
    setattr(obj, name, value)


def _ice_connection(transport: RTCDtlsTransport) -> Any:
    """The aioice ``Connection`` under ``transport``, checked for what this module uses."""
    ice = _require(transport, "transport", "RTCDtlsTransport.transport")
    connection = _require(ice, "_connection", "RTCIceTransport._connection")
    _require_callable(connection, "data_received", "aioice Connection.data_received")
    if not isinstance(getattr(connection, "_nominated", None), dict):
        raise RuntimeError("aioice Connection._nominated is gone: media/rtp_hooks.py needs updating")
    for name in (_RX_BYTES, _RX_PACKETS, _TX_BYTES, _TX_PACKETS, "_state"):
        if not hasattr(transport, name):
            raise RuntimeError(f"RTCDtlsTransport.{name} is gone: media/rtp_hooks.py needs updating")
    if not hasattr(transport, "_rx_srtp") or not hasattr(transport, "_tx_srtp"):
        raise RuntimeError("RTCDtlsTransport SRTP sessions are gone: media/rtp_hooks.py needs updating")
    return connection


def _srtp_context(session: pylibsrtp.Session) -> int:
    """The address of the ``srtp_t`` inside a pylibsrtp ``Session`` (for :mod:`media._dataplane`)."""
    return int(_srtp_binding.ffi.cast("uintptr_t", session._srtp[0]))


def _stun_protocols(connection: Any) -> list[Any]:
    """aioice's protocols (one per local socket) of ``connection`` that hand it their non-STUN
    datagrams; TURN relays' protocols are left alone (their data reaches ``data_received``)."""
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list):
        raise RuntimeError("aioice Connection._protocols is gone: media/rtp_hooks.py needs updating")
    return [p for p in protocols if type(p) is ice.StunProtocol]


@functools.cache
def _bind_native() -> None:
    """Give :mod:`media._dataplane` the libsrtp functions pylibsrtp loaded (checked, idempotent)."""
    ffi, lib = _srtp_binding.ffi, _srtp_binding.lib
    if not isinstance(getattr(pylibsrtp, "ERRORS", None), list) or not hasattr(pylibsrtp.Session(), "_srtp"):
        raise RuntimeError("pylibsrtp's ERRORS or Session._srtp is gone: media/rtp_hooks.py needs updating")
    names = ("srtp_protect", "srtp_unprotect", "srtp_protect_rtcp", "srtp_unprotect_rtcp")
    for name in names:
        # libsrtp 2's (srtp_t, void *header, int *len_ptr); libsrtp 3 changed it (and pylibsrtp with it)
        declared = ffi.getctype(ffi.typeof(ffi.addressof(lib, name)))
        if declared.replace("struct srtp_ctx_t_ *", "void *").replace("srtp_err_status_t", "int") != \
                "int(*)(void *, void *, int *)":
            raise RuntimeError(f"pylibsrtp's {name} is {declared}: media/_dataplane.c needs updating")
    protect, unprotect, protect_rtcp, unprotect_rtcp = (int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
                                                        for name in names)
    _dataplane.bind(protect, unprotect, protect_rtcp, unprotect_rtcp, pylibsrtp.SRTP_MAX_TRAILER_LEN,
                    pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN, pylibsrtp.Error, pylibsrtp.ERRORS, State.CONNECTED)


def _log_handler_error(exc: BaseException) -> None:
    logger.error("packet engine: an RTP or RTCP packet could not be handled", exc_info=exc)


_finishing: set[asyncio.Task[None]] = set()


class _Rest:
    """Awaitable: the future a started coroutine suspended on, then the rest of that coroutine."""

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, None, None]:
        yield self._pending  # the task resumes this once the future is done ...
        yield from self._coro.__await__()  # ... and the coroutine then reads its result, as if never moved


async def _finish(coro: Coroutine[Any, Any, None], pending: Any) -> None:
    try:
        await _Rest(coro, pending)
    except Exception as exc:
        _log_handler_error(exc)


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` (aiortc's RTCP handling, which never waits in the packet engine) to its end
    now, in the caller's frame, without a task; should it wait after all, a task takes it from
    there. An exception is logged (either way): it must not reach the socket's callback."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return
    except Exception as exc:
        _log_handler_error(exc)
        return
    task = asyncio.get_running_loop().create_task(_finish(coro, pending))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


def intercept_rtp(transport: RTCDtlsTransport, handler: Callable[[bytes], None] | None, native: bool = True) -> None:
    """Hand every unprotected RTP packet of ``transport`` to ``handler(data)`` instead of aiortc's
    receivers (this instance only), synchronously as its datagram arrives. An exception from
    ``handler`` is logged and the packet dropped: it must not close the socket under it.
    ``handler`` None: RTP goes aiortc's way (a viewer's transport, which gets none).

    SRTCP is taken as it arrives too: unprotected and handed to the transport's own
    ``_handle_rtcp_data`` at once (:func:`run_now`), not through aioice's queue and the
    transport's receive task; aiortc then routes it to its senders and receivers as before
    (viewers' NACKs, PLIs and reports, publishers' SRs).
    ``native``: the datagram hook is a :class:`media._dataplane.Inbound` (else the Python below)."""
    connection = _ice_connection(transport)
    original_datagram = connection.data_received
    _require_callable(transport, "_handle_rtp_data", "RTCDtlsTransport._handle_rtp_data")
    _require_callable(transport, "_handle_rtcp_data", "RTCDtlsTransport._handle_rtcp_data")

    def deliver(data: bytes) -> None:
        assert handler is not None
        try:
            handler(data)
        except Exception as exc:
            _log_handler_error(exc)

    def rtcp(data: bytes) -> None:
        run_now(transport._handle_rtcp_data(data))

    def data_received(data: bytes, component: int) -> None:
        # RFC 7983: 128..191 is RTP or RTCP; RTCP packet types are 192..223 (aiortc: 192..208).
        srtp = transport._rx_srtp
        if srtp is not None and len(data) > 1 and 127 < data[0] < 192:
            is_rtcp = 191 < data[1] < 224
            if is_rtcp or handler is not None:
                try:
                    plain = srtp.unprotect_rtcp(data) if is_rtcp else srtp.unprotect(data)
                except (pylibsrtp.Error, ValueError):  # not ours, replayed, or longer than any packet of ours
                    return
                setattr(transport, _RX_BYTES, getattr(transport, _RX_BYTES) + len(data))
                setattr(transport, _RX_PACKETS, getattr(transport, _RX_PACKETS) + 1)
                if is_rtcp:
                    rtcp(plain)
                else:
                    deliver(plain)
                return
        original_datagram(data, component)

    if native:
        _bind_native()
        hook: Callable[[bytes, int], None] = _dataplane.Inbound(transport, original_datagram, handler,
                                                                _log_handler_error, _srtp_context, rtcp)
        # One step earlier still: the sockets' own protocols, so an RTP datagram skips aioice's
        # ``StunProtocol.datagram_received`` (a Python frame and a STUN parse attempt that raises).
        # It passes every datagram that is not STUN to ``data_received`` whatever its sender, as
        # this does with what is not SRTP (DTLS, STUN, and all before the keys exist).
        for protocol in _stun_protocols(connection):
            _replace(protocol, "datagram_received", _dataplane.Inbound(
                transport, protocol.datagram_received, handler, _log_handler_error, _srtp_context, rtcp))
    else:
        hook = data_received

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        deliver(data)

    _replace(connection, "data_received", hook)
    if handler is not None:
        _replace(transport, "_handle_rtp_data", handle_rtp_data)


def observe_rtcp(transport: RTCDtlsTransport, observer: Callable[[bytes], None]) -> None:
    """Show every unprotected RTCP compound packet of ``transport`` to ``observer`` first; aiortc
    then handles it as before."""
    original = _require_callable(transport, "_handle_rtcp_data", "RTCDtlsTransport._handle_rtcp_data")

    async def handle(data: bytes) -> None:
        observer(data)
        await original(data)

    _replace(transport, "_handle_rtcp_data", handle)


class FunctionSend:
    """An :class:`RtpSend` around a ``send(data)`` function: the reference sender (what
    :class:`media._dataplane.Outbound` does, in Python) and the tests' stand-in for one."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send

    def __call__(self, data: bytes, /) -> None:
        self._send(data)

    def rtp(self, payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
            extension: bytes, /) -> None:
        self._send(build_rtp(payload_type, marker, sequence_number, timestamp, ssrc, payload, extension))


def _sender(transport: RTCDtlsTransport, protect_name: str, native: bool) -> RtpSend:
    connection = _ice_connection(transport)
    nominated: dict[int, Any] = connection._nominated
    if native:
        _bind_native()
        sender: RtpSend = _dataplane.Outbound(transport, nominated, _srtp_context, protect_name == "protect_rtcp")
        return sender
    cached: list[Any] = [None, None, None, None, None]  # pair, sendto, address, SRTP session, protect

    def send(data: bytes) -> None:
        if transport._state is not State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if pair is not cached[0] or transport._tx_srtp is not cached[3]:
            cached[:] = [pair, pair.protocol.transport.sendto, pair.remote_addr, transport._tx_srtp,
                         getattr(transport._tx_srtp, protect_name)]
        data = cached[4](data)
        cached[1](data, cached[2])
        setattr(transport, _TX_BYTES, getattr(transport, _TX_BYTES) + len(data))
        setattr(transport, _TX_PACKETS, getattr(transport, _TX_PACKETS) + 1)

    return FunctionSend(send)


def rtp_sender_of(transport: RTCDtlsTransport, native: bool = True) -> RtpSend:
    """``send(data)``: protect one RTP packet and send it on ``transport`` now (what
    ``RTCDtlsTransport._send_rtp`` does, without a coroutine); ``ConnectionError`` while the
    transport is not connected. ``native``: a :class:`media._dataplane.Outbound` (else Python)."""
    _require_callable(transport, "_send_rtp", "RTCDtlsTransport._send_rtp")
    return _sender(transport, "protect", native)


def rtcp_sender_of(transport: RTCDtlsTransport, native: bool = True) -> RtpSend:
    """Like :func:`rtp_sender_of`, for one RTCP compound packet."""
    _require_callable(transport, "_send_rtp", "RTCDtlsTransport._send_rtp")
    return _sender(transport, "protect_rtcp", native)


def drop_bandwidth_estimator(receiver: RTCRtpReceiver) -> None:
    """Free ``receiver``'s receive-side bandwidth estimator (a video receiver's; an audio one has
    none): for receivers that get no RTP."""
    name = "_RTCRtpReceiver__remote_bitrate_estimator"
    if not hasattr(receiver, name):
        raise RuntimeError("RTCRtpReceiver.__remote_bitrate_estimator is gone: media/rtp_hooks.py needs updating")
    setattr(receiver, name, None)


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) of ``sender``, as announced in its SDP."""
    ssrc = _require(sender, "_ssrc", "RTCRtpSender._ssrc")
    rtx = _require(sender, "_rtx_ssrc", "RTCRtpSender._rtx_ssrc")
    if not isinstance(ssrc, int) or not isinstance(rtx, int):
        raise RuntimeError("RTCRtpSender SSRCs changed type: media/rtp_hooks.py needs updating")
    return ssrc, rtx


def on_retransmit(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """``callback(seq)`` for each sequence number the viewer of ``sender`` NACKs."""
    _require_callable(sender, "_retransmit", "RTCRtpSender._retransmit")

    async def retransmit(seq: int) -> None:
        callback(seq)

    _replace(sender, "_retransmit", retransmit)


def on_sender_report(sender: RTCRtpSender, sender_info: Callable[[], RtcpSenderInfo | None],
                     send: RtpSend | None = None) -> None:
    """Replace the sender info of each SR that ``sender`` sends by ``sender_info()`` (unless None).
    ``send``: the compound packet goes out through it (:func:`rtcp_sender_of` the sender's
    transport) instead of aiortc's coroutine chain; None: through aiortc's own ``_send_rtcp``."""
    original = _require_callable(sender, "_send_rtcp", "RTCRtpSender._send_rtcp")

    async def send_rtcp(packets: list[Any]) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == sender._ssrc:
                info = sender_info()
                if info is not None:
                    packet.sender_info = info
        if send is None:
            await original(packets)
            return
        try:
            send(b"".join(bytes(packet) for packet in packets))
        except ConnectionError:
            pass  # as aiortc's: not connected (yet, or any more)

    _replace(sender, "_send_rtcp", send_rtcp)
