"""Types of media/_dataplane.c (the packet engine's per-datagram work in C; see media/rtp_hooks.py)."""

from typing import Any, Callable

def bind(protect: int, unprotect: int, protect_rtcp: int, unprotect_rtcp: int, rtp_trailer: int, rtcp_trailer: int,
         error_class: type[Exception], messages: list[str], connected: Any, /) -> None: ...

class Outbound:
    def __init__(self, transport: Any, nominated: dict[int, Any], resolve: Callable[[Any], int],
                 rtcp: bool = False) -> None: ...
    def __call__(self, data: bytes, /) -> None: ...
    def rtp(self, payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
            extension: bytes, /) -> None: ...

class Inbound:
    def __init__(self, transport: Any, original: Callable[[bytes, int], None], handler: Callable[[bytes], None] | None,
                 on_error: Callable[[BaseException], None], resolve: Callable[[Any], int],
                 rtcp: Callable[[bytes], None] | None = None) -> None: ...
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

# media/_ingress.c ------------------------------------------------------------------------------
NACK_MAX_GAP: int

def use_cached_packet(packet_type: type, /) -> None: ...

class NackCore:
    """The fields of media.loss.NackTracker."""

    _missing: dict[int, list[float]]
    _lost: list[int]
    _highest: int | None
    _due_at: float
    active: bool
    nacked: int
    recovered: int
    given_up: int

class PacketCache:
    """media.loss.PacketCache in C."""

    def __init__(self, size: int = 512, max_age_s: float | None = None) -> None: ...
    def put(self, packet: Any, now: float | None = None) -> None: ...
    def get(self, sequence_number: int, /) -> Any: ...
    def clear(self) -> None: ...

class StreamCore:
    """The fields of media.packets.PacketStream; ``_on_packet_native`` is its on_packet in C."""

    fanout: Any
    cache: Any
    nacks: Any
    assembler: Any
    _fan: tuple[Any, ...]
    _seq_off: int
    _ts_off: int
    _clock_rate: int
    last_seq: int | None
    last_ts: int | None
    last_at: float | None
    _keyframe_ts: int | None
    _audio_level_id: int | None
    _fresh: bool
    _video: bool
    @property
    def _h264(self) -> bool: ...
    _sps_in_band: bool
    _assembling: bool
    _mime: str
    def _on_packet_native(self, seq: int, ts: int, marker: bool, payload: bytes, now: float, ext_profile: int = 0,
                          ext: bytes = b"", /) -> None: ...

class RouteCore:
    """The fields of media.ingress._Route that the packet path uses."""

    stream: Any
    retry: Any
    ssrc: int | None
    nack: bool
    pli_pending: bool
    base_seq: int
    max_seq: int
    cycles: int
    received: int

class IngressCore:
    """The fields of media.ingress.PublisherIngress; calling it is its ``_on_rtp`` in C."""

    _by_pt: dict[int, Any]
    _rtx_pt: dict[int, Any]
    _clock: Any
    _recovered: Any
    _next_report: float
    _closed: bool
    last_arrival: float | None
    def __call__(self, data: bytes, /) -> None: ...
