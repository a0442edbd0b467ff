"""UTC time text: each precision exactly as ``datetime`` writes it, cache or no cache."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from utctime import iso_micro, iso_seconds


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
