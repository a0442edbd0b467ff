"""A GPS fix in WGS-84 as a unit reports it, validated before anything stores or shows it."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from utctime import iso_micro, parse_iso

MAX_FUTURE_S = 60.0  # device clocks drift; further ahead than this is a wrong clock
MAX_AGE_S = 7 * 86400.0  # back-filled fixes older than a week are refused


class FixError(ValueError):
    """The fix is malformed or implausible; the message names the field."""


@dataclass(frozen=True)
class Fix:
    """WGS-84 degrees, metres, m/s, degrees from north; ``ts`` is the device's fix time (epoch s)."""

    lat: float
    lon: float
    ts: float
    alt: float | None = None
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lat": self.lat, "lon": self.lon, "ts": iso_micro(self.ts)}
        for k in ("alt", "accuracy", "speed", "heading"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


def _num(d: dict[str, Any], key: str, lo: float, hi: float, required: bool) -> float | None:
    v = d.get(key)
    if v is None:
        if required:
            raise FixError(f"field {key!r} is required")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise FixError(f"field {key!r} must be a finite number")
    if not lo <= v <= hi:
        raise FixError(f"field {key!r}={v} is outside {lo}..{hi}")
    return float(v)


def parse_time(raw: Any) -> float:
    """ISO 8601 with a zone (:func:`utctime.parse_iso`), or epoch seconds."""
    if isinstance(raw, str):
        try:
            return parse_iso(raw)
        except ValueError:
            pass
        # Which of parse_iso's two reasons it was, in the words API clients have always seen.
        try:
            dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise FixError(f"ts {raw[:40]!r} is not ISO 8601") from None
        raise FixError("ts needs a time zone (use UTC, e.g. 2026-11-27T10:00:00Z)")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    raise FixError("field 'ts' must be ISO 8601 text or epoch seconds")


def parse_fix(data: Any, now: float) -> Fix:
    """Validate one fix reported at server time ``now`` (epoch seconds)."""
    if not isinstance(data, dict):
        raise FixError(f"expected an object, got {type(data).__name__}")
    lat = _num(data, "lat", -90, 90, True)
    lon = _num(data, "lon", -180, 180, True)
    ts = parse_time(data.get("ts"))
    if ts > now + MAX_FUTURE_S:
        raise FixError(f"ts is {ts - now:.0f} s in the future (device clock wrong?)")
    if ts < now - MAX_AGE_S:
        raise FixError(f"ts is {(now - ts) / 86400:.1f} days old")
    assert lat is not None and lon is not None
    return Fix(
        lat, lon, ts,
        alt=_num(data, "alt", -1000, 20000, False),
        accuracy=_num(data, "accuracy", 0, 100000, False),
        speed=_num(data, "speed", 0, 200, False),
        heading=_num(data, "heading", 0, 360, False),
    )
