"""A fix's ISO time is exactly what ``datetime`` gives; fix times are parsed from ISO text or epoch seconds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.fix import Fix, FixError, parse_time
from utctime import iso_seconds as iso


def reference(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@settings(max_examples=3000)
@given(st.one_of(
    st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
    # Whole milliseconds, as units send them.
    st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000).map(lambda ms: ms / 1000),
    st.sampled_from([0.0, -0.5, 0.9999996, 1.0000004, 1_764_201_600.0, 1_764_201_600.9999999, -86_400.25]),
))
def test_iso_time_of_a_fix_is_what_datetime_gives(ts: float) -> None:
    assert Fix(0.0, 0.0, ts).as_dict()["ts"] == reference(ts)
    assert Fix(0.0, 0.0, ts + 1.0).as_dict()["ts"] == reference(ts + 1.0)


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
def test_last_seen_is_iso_to_the_second(ts: float) -> None:
    want = dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert iso(ts) == want
    assert iso(None) is None


def test_fix_times_are_iso_text_with_a_zone_or_epoch_seconds() -> None:
    assert parse_time("2026-11-27T10:00:00Z") == 1_795_773_600.0
    assert parse_time("2026-11-27T18:00:00.250+08:00") == 1_795_773_600.25
    assert parse_time(1_795_773_600) == 1_795_773_600.0 and isinstance(parse_time(7), float)
    assert parse_time(1_795_773_600.5) == 1_795_773_600.5


@pytest.mark.parametrize(("raw", "message"), [
    ("2026-11-27T10:00:00", "ts needs a time zone (use UTC, e.g. 2026-11-27T10:00:00Z)"),
    ("2026-11-27", "ts needs a time zone (use UTC, e.g. 2026-11-27T10:00:00Z)"),
    ("yesterday", "ts 'yesterday' is not ISO 8601"),
    ("2026-11-27T25:00:00Z", "ts '2026-11-27T25:00:00Z' is not ISO 8601"),
    (True, "field 'ts' must be ISO 8601 text or epoch seconds"),
    (None, "field 'ts' must be ISO 8601 text or epoch seconds"),
    (float("nan"), "field 'ts' must be ISO 8601 text or epoch seconds"),
])
def test_bad_fix_times_are_refused_naming_the_problem(raw: object, message: str) -> None:
    with pytest.raises(FixError) as err:
        parse_time(raw)
    assert str(err.value) == message
