"""A fix's ISO time: the per-second cache gives exactly what ``datetime`` gives."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from utctime import iso_seconds as iso
from geo.fix import Fix, iso_utc


def reference(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@settings(max_examples=3000)
@given(st.one_of(
    st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
    st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000).map(lambda ms: ms / 1000),  # whole ms, as units send
    st.sampled_from([0.0, -0.5, 0.9999996, 1.0000004, 1_764_201_600.0, 1_764_201_600.9999999, -86_400.25]),
))
def test_iso_time_of_a_fix_is_what_datetime_gives(ts: float) -> None:
    assert iso_utc(ts) == reference(ts)
    assert Fix(0.0, 0.0, ts).as_dict()["ts"] == reference(ts)
    # A cached second must not leak into the next call for another second.
    assert iso_utc(ts + 1.0) == reference(ts + 1.0)


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
def test_last_seen_is_iso_to_the_second(ts: float) -> None:
    assert iso(ts) == dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert iso(None) is None
