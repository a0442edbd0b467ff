"""One unit's settings, typed and frozen; built by the CLI, the fleet runner or the server's demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .codec import normalize_codec
from .gps import GpsSpec
from .sources import SourceSpec

SIGNALLING = ("sio", "whip")
ANSWERS = ("none", "auto-ack", "terminal")  # who answers human orders (field_client.officer)
MAX_POSITIONS_BATCH = 500  # the server's limit per ``positions`` event (docs/api.md)


@dataclass(frozen=True)
class UnitConfig:
    """Everything :func:`field_client.run_unit` needs for one unit. Times are in seconds.

    ``server`` is the base URL (``http://host:port``); Socket.IO lives at ``/socket.io`` and
    WHIP at ``/whip/{unit_id}`` under it. ``other_servers`` are the other nodes of the same
    cluster, tried in turn when ``server`` cannot be reached (:mod:`field_client.nodes`).
    ``token`` never appears in ``repr``.
    """

    server: str
    unit_id: str
    token: str = field(repr=False)
    video: SourceSpec = SourceSpec("test-pattern")
    audio: SourceSpec = SourceSpec("tone")
    codec: str = "vp8"
    gps: GpsSpec = GpsSpec()
    signalling: str = "sio"
    answers: str = "none"
    applied_log: Path | None = None
    # Test-pattern look; units with equal values share one pre-encoded loop.
    width: int = 640
    height: int = 480
    fps: int = 30
    pattern_label: str | None = None  # None: the unit id
    position_interval_s: float = 1.0
    # Fixes kept while the link is down (default 24 h at 1 Hz; the oldest go first when full)
    # and the most sent in one ``positions`` event (the server takes up to 500).
    position_buffer_size: int = 86_400
    position_batch_max: int = 100
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0
    connect_timeout_s: float = 10.0  # Socket.IO connect, WHIP request
    ack_timeout_s: float = 10.0  # Socket.IO acknowledgements
    ice_connect_timeout_s: float = 20.0  # publish answered but media never flows: retry
    ice_servers: tuple[str, ...] = ()  # none by default: aiortc would otherwise try Google STUN
    other_servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for server in (self.server, *self.other_servers):
            url = urlsplit(server)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ValueError(f"server must be an http(s) URL like http://host:8080, got {server!r}")
        if not self.unit_id or "/" in self.unit_id:
            raise ValueError(f"unit_id must be non-empty and contain no '/', got {self.unit_id!r}")
        if not self.token:
            raise ValueError(f"unit {self.unit_id}: token must not be empty")
        object.__setattr__(self, "codec", normalize_codec(self.codec))
        object.__setattr__(self, "server", self.server.rstrip("/"))
        others = tuple(dict.fromkeys(u.rstrip("/") for u in self.other_servers if u.rstrip("/") != self.server))
        object.__setattr__(self, "other_servers", others)
        if self.answers not in ANSWERS:
            raise ValueError(f"answers must be one of {', '.join(ANSWERS)}, got {self.answers!r}")
        if self.signalling not in SIGNALLING:
            raise ValueError(f"signalling must be one of {', '.join(SIGNALLING)}, got {self.signalling!r}")
        for name in ("position_interval_s", "backoff_base_s", "connect_timeout_s", "ack_timeout_s",
                     "ice_connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.position_buffer_size < 1:
            raise ValueError(f"position_buffer_size must be at least 1, got {self.position_buffer_size}")
        if not 1 <= self.position_batch_max <= MAX_POSITIONS_BATCH:
            raise ValueError(f"position_batch_max must be 1..{MAX_POSITIONS_BATCH}, got {self.position_batch_max}")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must not be below backoff_base_s")

    @property
    def servers(self) -> tuple[str, ...]:
        """Every node the unit knows, ``server`` first."""
        return (self.server, *self.other_servers)

    @property
    def publishes_media(self) -> bool:
        return self.video.kind != "none" or self.audio.kind != "none"

    @property
    def label(self) -> str:
        return self.pattern_label if self.pattern_label is not None else self.unit_id
