"""UTC time text: each precision exactly as ``datetime`` writes it, cache or no cache; the
archive's milliseconds with Z, and its strict parser."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utctime import iso_micro, iso_millis, iso_seconds, parse_iso, parse_iso_millis


def test_iso_millis_has_milliseconds_and_z() -> None:
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(1795815600.1234) == "2026-11-27T21:40:00.123Z"
    assert iso_millis(1795815600.9996) == "2026-11-27T21:40:01.000Z"  # rounds, never prints 1000 ms


def test_parse_iso_millis_is_the_inverse_and_strict() -> None:
    assert parse_iso_millis("2026-11-27T21:40:00.123Z") == pytest.approx(1795815600.123)
    for bad in ("2026-11-27T21:40:00Z", "2026-11-27T21:40:00.123+00:00", "2026-11-27 21:40:00.123Z", ""):
        with pytest.raises(ValueError):
            parse_iso_millis(bad)


def datetime_micro(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def datetime_seconds(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@settings(max_examples=3000)
@given(st.one_of(
    st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
    # Whole milliseconds, as units send them.
    st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000).map(lambda ms: ms / 1000),
    st.sampled_from([0.0, -0.5, 0.9999996, 1.0000004, 1_764_201_600.0, 1_764_201_600.9999999, -86_400.25]),
))
def test_micro_is_what_datetime_gives(ts: float) -> None:
    assert iso_micro(ts) == datetime_micro(ts)
    # A cached second must not leak into the next call for another second.
    assert iso_micro(ts + 1.0) == datetime_micro(ts + 1.0)


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
def test_seconds_is_what_datetime_gives(ts: float) -> None:
    assert iso_seconds(ts) == datetime_seconds(ts)
    assert iso_seconds(ts + 1.0) == datetime_seconds(ts + 1.0)


def test_seconds_of_none_is_none() -> None:
    assert iso_seconds(None) is None


def test_parse_iso_needs_a_zone_and_names_the_problem() -> None:
    assert parse_iso("2026-11-27T10:00:00Z") == parse_iso("2026-11-27T18:00:00+08:00") == 1795773600.0
    with pytest.raises(ValueError, match="no time zone"):
        parse_iso("2026-11-27T10:00:00")
    with pytest.raises(ValueError, match="not ISO 8601"):
        parse_iso("yesterday")
