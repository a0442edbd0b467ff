"""Types of media/_dataplane.c (the packet engine's per-datagram work in C; see media/rtp_hooks.py)."""

from typing import Any, Callable

def bind(protect: int, unprotect: int, protect_rtcp: int, rtp_trailer: int, rtcp_trailer: int,
         error_class: type[Exception], messages: list[str], connected: Any, /) -> None: ...

class Outbound:
    def __init__(self, transport: Any, nominated: dict[int, Any], resolve: Callable[[Any], int],
                 rtcp: bool = False) -> None: ...
    def __call__(self, data: bytes, /) -> None: ...
    def rtp(self, payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
            extension: bytes, /) -> None: ...

class Inbound:
    def __init__(self, transport: Any, original: Callable[[bytes, int], None], handler: Callable[[bytes], None],
                 on_error: Callable[[BaseException], None], resolve: Callable[[Any], int]) -> None: ...
    def __call__(self, data: bytes, component: int, /) -> None: ...

LATE_LIMIT: int

class ViewerCore:
    """The per-packet state of media.packets.PacketViewer, in C fields."""

    plan: Any
    fanout: Any
    packets: int
    octets: int
    frames: int
    _delta: int
    payload_type: int
    ssrc: int
    waiting: bool
    video: bool
    _epoch: int | None
    _next_seq: int | None
    _send: Any
    @property
    def _send_rtp(self) -> Callable[[int, bool, int, int, int, bytes, bytes], None]: ...

def fan_out(viewers: tuple[Any, ...], out_seq: int, out_ts: int, marker: bool, payload: bytes, starts: bool,
            level: bytes | None, send_time: bytes | None = None, /) -> None: ...
