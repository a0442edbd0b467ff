"""UTC time as text: the one place that formats and parses ISO 8601 times.

Every layer (``geo``, ``recordings``, ``field_client``, the server) writes times as UTC with a
``Z``; only the precision differs, and it is part of each wire or file format, so it is named
here rather than re-derived:

- :func:`iso_seconds` ``2026-11-27T10:00:00Z``: ``last_seen``, API times, instructions.
- :func:`iso_micro` ``2026-11-27T10:00:00.250000Z`` (fraction left out when zero): GPS fix times,
  exact to the microsecond as ``datetime.fromtimestamp(ts, utc).isoformat()`` gives it.
- :func:`iso_millis` ``2026-11-27T10:00:00.250Z``, always 24 characters so the text sorts like
  the time: the evidence archive (ledger entries, ``recording.json``, packages).
- :func:`iso_millis_trimmed` milliseconds only when there is a fraction: GPX files.

Parsers: :func:`parse_iso` takes any ISO 8601 time with a zone (``Z`` or an offset) and refuses
one without; :func:`parse_iso_millis` is the strict inverse of :func:`iso_millis`, used by the
archive verifier, which must refuse every other shape of text.

Fix times are formatted thousands of times a second, so the date and time of the current whole
second is cached (one entry: fixes arrive in time order).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import overload

__all__ = [
    "iso_micro",
    "iso_millis",
    "iso_millis_trimmed",
    "iso_seconds",
    "parse_iso",
    "parse_iso_millis",
]

_UTC = dt.timezone.utc
_MILLIS_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
_second_text: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _split(ts: float) -> tuple[int, int]:
    """``(second, microsecond)`` of epoch seconds, rounded as ``datetime.fromtimestamp`` rounds."""
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        return second + 1, us - 1_000_000
    if us < 0:
        return second - 1, us + 1_000_000
    return second, us


def _second(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole epoch second; the last one is kept."""
    global _second_text
    cached = _second_text
    if cached[0] != second:
        cached = (second, dt.datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second_text = cached
    return cached[1]


@overload
def iso_seconds(ts: float) -> str: ...
@overload
def iso_seconds(ts: None) -> None: ...
def iso_seconds(ts: float | None) -> str | None:
    """Epoch seconds to the whole second (``isoformat(timespec="seconds")`` rounding), with ``Z``;
    ``None`` stays ``None`` (a time that has not happened yet, such as ``acknowledged_at``)."""
    return None if ts is None else f"{_second(_split(ts)[0])}Z"


def iso_micro(ts: float) -> str:
    """Epoch seconds with microseconds, the fraction left out when it is zero, with ``Z``."""
    second, us = _split(ts)
    return f"{_second(second)}.{us:06d}Z" if us else f"{_second(second)}Z"


def iso_millis(ts: float) -> str:
    """Epoch seconds rounded to the nearest millisecond, always with three digits and ``Z``."""
    ms = round(ts * 1000)
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def iso_millis_trimmed(ts: float) -> str:
    """Milliseconds (truncated, as ``isoformat(timespec="milliseconds")``) only when the time has
    a fraction of a second; otherwise whole seconds."""
    t = dt.datetime.fromtimestamp(ts, _UTC)
    spec = "milliseconds" if t.microsecond else "seconds"
    return t.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_iso(text: str) -> float:
    """Any ISO 8601 time with a zone (``Z`` or ``±HH:MM``) as epoch seconds.

    Raises ``ValueError`` naming the problem: not ISO 8601, or no zone (a time without one
    would silently be read in the server's own zone).
    """
    if not isinstance(text, str):
        raise ValueError(f"expected ISO 8601 text, got {type(text).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no time zone (use UTC, e.g. 2026-11-27T10:00:00Z)")
    return parsed.timestamp()


def parse_iso_millis(text: str) -> float:
    """Strict inverse of :func:`iso_millis`; ``ValueError`` for any other shape of text."""
    if not isinstance(text, str) or not _MILLIS_RE.match(text):
        raise ValueError(f"not a UTC ISO 8601 time with milliseconds and Z: {text!r}")
    try:  # int() fields instead of strptime: the verifier parses every entry's time
        d = dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), tzinfo=_UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid time: {text!r} ({exc})") from None
    return d.timestamp() + int(text[20:23]) / 1000
