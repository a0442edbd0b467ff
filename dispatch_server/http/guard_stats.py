"""What the connection guard (:mod:`.connection_guard`) did since the server started: made by
``create_app``, filled by the runner's server, reported by ``/api/health``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GuardStats:
    """Counters of the guard (and how many connections it has open now)."""

    refused: int = 0  # connections closed at once: their address had max_per_address open
    head_timeouts: int = 0  # closed without a complete first request head in time
    body_timeouts: int = 0  # cancelled and closed by the backstop
    open: int = 0  # connections open now (counted or not)
