"""UTC time text: the archive's milliseconds with Z, and its strict parser."""

from __future__ import annotations

import pytest

from utctime import iso_millis, parse_iso_millis


def test_iso_millis_has_milliseconds_and_z() -> None:
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(1795815600.1234) == "2026-11-27T21:40:00.123Z"
    assert iso_millis(1795815600.9996) == "2026-11-27T21:40:01.000Z"  # rounds, never prints 1000 ms


def test_parse_iso_millis_is_the_inverse_and_strict() -> None:
    assert parse_iso_millis("2026-11-27T21:40:00.123Z") == pytest.approx(1795815600.123)
    for bad in ("2026-11-27T21:40:00Z", "2026-11-27T21:40:00.123+00:00", "2026-11-27 21:40:00.123Z", ""):
        with pytest.raises(ValueError):
            parse_iso_millis(bad)
