"""Timestamps of the evidence archive: UTC ISO 8601 with milliseconds and ``Z``.

``2026-11-27T21:40:00.123Z`` — always 24 characters, so the text sorts like the time it names.
"""

from __future__ import annotations

import datetime as dt
import re

_ISO_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")


def utc_iso(ts: float) -> str:
    """POSIX seconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ``, rounded to the nearest millisecond."""
    ms = round(ts * 1000)
    d = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return f"{d:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def parse_utc_iso(text: str) -> float:
    """Inverse of :func:`utc_iso`; raises ``ValueError`` for any other shape of text."""
    if not isinstance(text, str) or not _ISO_RE.match(text):
        raise ValueError(f"not a UTC ISO 8601 time with milliseconds and Z: {text!r}")
    try:  # int() fields instead of strptime: the verifier parses every entry's time
        d = dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise ValueError(f"not a valid time: {text!r} ({exc})") from None
    return d.timestamp() + int(text[20:23]) / 1000
