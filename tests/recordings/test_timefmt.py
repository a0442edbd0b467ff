"""Archive timestamps: UTC, milliseconds, Z."""

from __future__ import annotations

import pytest

from recordings.timefmt import parse_utc_iso, utc_iso


def test_utc_iso_has_milliseconds_and_z() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"
    assert utc_iso(1795815600.1234) == "2026-11-27T21:40:00.123Z"
    assert utc_iso(1795815600.9996) == "2026-11-27T21:40:01.000Z"  # rounds, never prints 1000 ms


def test_parse_is_the_inverse_and_strict() -> None:
    assert parse_utc_iso("2026-11-27T21:40:00.123Z") == pytest.approx(1795815600.123)
    for bad in ("2026-11-27T21:40:00Z", "2026-11-27T21:40:00.123+00:00", "2026-11-27 21:40:00.123Z", ""):
        with pytest.raises(ValueError):
            parse_utc_iso(bad)
