"""The unit telemetry channel: GPS fix batches over a plain websocket (route in ``api_telemetry``),
its frames, their replies and the hub of open channels.

Why a channel of its own next to the unit's Socket.IO link: positions are the one message every
unit sends every second. Through python-socketio each one-fix batch costs the server about
0.5 ms of CPU in the Engine.IO/Socket.IO machinery alone (a task and a ``wait_for`` per frame, a
placeholder frame plus a binary frame per binary event, a queue and a writer task per
acknowledgement), which caps one process near 1,500 fixes/s on the 2-core reference machine
(``docs/benchmarks.md``, "Geo"). Here a batch is one binary websocket frame read straight from
aiohttp and answered with one frame, for a fraction of that. The Socket.IO ``positions`` and
``position`` events stay (browsers cannot set the header this channel authenticates with, and
older units use them); both paths end in the same :meth:`PositionService.ingest`.

Protocol (``docs/api.md``, "Telemetry channel"):

* Upgrade with ``Authorization: Bearer <unit token>``; refusals are ordinary JSON errors before
  the upgrade (401 ``bad_token``, 403 ``unit_disabled``, 404 ``unknown_unit``).
* Unit → server: binary frames, each a msgpack map ``{"seq": int, "fixes": [fix, ...]}``
  (fields of a fix as for ``positions``, at most ``MAX_BATCH`` fixes).
* Server → unit: one binary msgpack frame per batch, in order, sent once the batch is stored:
  ``{"seq", "ok": true, "accepted", "duplicates", "rejected": [{"index", "error"}]}``, or
  ``{"seq", "ok": false, "error": {"code", "message"}}`` for a frame that is not a batch (text,
  not msgpack, wrong shape: ``bad_message``; ``seq`` is null when it could not be read) or one
  the server could not store (``internal``: send it again). A bad frame never closes the
  channel; it is counted (``/healthz`` ``telemetry.bad_frames``).
* A frame larger than ``server.max_message_bytes`` closes the channel with 1009 (message too
  big), the websocket's own answer to it. The server pings every ``geo.telemetry_heartbeat_s``
  and closes a channel that stops answering; at shutdown it closes every channel with 1001.

Presence (online, stale) follows the unit's Socket.IO link, which also carries instructions:
a unit is reachable when that link is up. The telemetry channel only moves the unit on the map.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

from ..errors import DispatchError
from ..positions import PositionService
from ..sio.messages import unpack_msgpack

logger = logging.getLogger(__name__)


@dataclass
class TelemetryStats:
    """Counters reported by ``/healthz``."""

    channels: int = 0  # open now
    batches: int = 0  # answered with ok: true
    bad_frames: int = 0  # answered with bad_message
    failed: int = 0  # answered with internal (not stored)


class TelemetryHub:
    """The open telemetry channels of this node: counted, and closed at shutdown."""

    def __init__(self) -> None:
        self.stats = TelemetryStats()
        self._open: set[web.WebSocketResponse] = set()

    def opened(self, ws: web.WebSocketResponse) -> None:
        self._open.add(ws)
        self.stats.channels = len(self._open)

    def closed(self, ws: web.WebSocketResponse) -> None:
        self._open.discard(ws)
        self.stats.channels = len(self._open)

    async def close_all(self) -> None:
        """Close every channel with 1001 (going away): units reconnect, here or elsewhere."""
        channels = list(self._open)
        await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                               for ws in channels), return_exceptions=True)


class BadFrame(Exception):
    """A frame that is not a batch; ``seq`` is the batch number when it could be read."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


def parse_frame(data: bytes) -> tuple[int, Any]:
    """``(seq, fixes)`` of a batch frame; :class:`BadFrame` (or ``BadRequest`` for bytes that are
    not msgpack) naming what is wrong otherwise."""
    doc = unpack_msgpack(data, "positions")
    if not isinstance(doc, dict):
        raise BadFrame(f"expected a msgpack map {{seq, fixes}}, got {type(doc).__name__}")
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadFrame(f"'seq' must be a non-negative integer, got {seq!r:.40}")
    if "fixes" not in doc:
        raise BadFrame("missing 'fixes' (a list of fixes)", seq)
    unknown = set(doc) - {"seq", "fixes"}
    if unknown:
        raise BadFrame(f"unknown keys {sorted(map(str, unknown))!r:.100}; a batch is {{seq, fixes}}", seq)
    return seq, doc["fixes"]


async def answer_batch(positions: PositionService, stats: TelemetryStats, unit_id: str, data: bytes) -> dict[str, Any]:
    """The reply to one binary frame (never raises for what a unit sent)."""
    seq: int | None = None
    try:
        seq, fixes = parse_frame(data)
        result = await positions.ingest(unit_id, fixes)
    except BadFrame as exc:
        stats.bad_frames += 1
        logger.info("unit %s: telemetry frame refused: %s", unit_id, exc)
        return {"seq": exc.seq, "ok": False, "error": {"code": "bad_message", "message": f"positions: {exc}"}}
    except DispatchError as exc:
        stats.bad_frames += 1
        logger.info("unit %s: telemetry batch %s refused: %s", unit_id, seq, exc.message)
        return {"seq": seq, "ok": False, "error": {"code": exc.code, "message": exc.message}}
    except Exception:
        stats.failed += 1
        logger.exception("unit %s: telemetry batch %s could not be stored", unit_id, seq)
        return {"seq": seq, "ok": False, "error": {"code": "internal", "message": "batch not stored; send it again"}}
    stats.batches += 1
    result["seq"] = seq
    return result


def text_frame_reply(stats: TelemetryStats) -> dict[str, Any]:
    """The reply to a text frame: counted as bad, the channel stays open."""
    stats.bad_frames += 1
    return {"seq": None, "ok": False,
            "error": {"code": "bad_message", "message": "telemetry frames are binary msgpack, not text"}}
