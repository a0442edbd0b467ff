"""WGS-84 <-> GCJ-02 against published reference values, and the inverse's round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.distance import haversine_m
from geo.gcj02 import gcj02_to_wgs84, in_china_box, wgs84_to_gcj02


@pytest.mark.parametrize(("wgs", "gcj"), [
    ((39.9042, 116.4074), (39.90560, 116.41364)),  # Beijing, Tiananmen area
    # coordtransform's published test vector, (lon, lat) there: (116.404, 39.915).
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),
    ((39.992875254426366, 116.65383912049425), (39.99397599992571, 116.6597270000643)),
])
def test_forward_matches_reference_points(wgs: tuple[float, float], gcj: tuple[float, float]) -> None:
    got = wgs84_to_gcj02(*wgs)
    assert got == pytest.approx(gcj, abs=1e-4)


def test_forward_matches_reference_to_full_precision() -> None:
    assert wgs84_to_gcj02(39.915, 116.404) == pytest.approx((39.91640428150164, 116.41024449916938), abs=1e-12)


@pytest.mark.parametrize("wgs", [(51.5074, -0.1278), (0.0, 0.0), (35.68, 139.69), (-33.87, 151.21), (60.0, 100.0)])
def test_outside_china_positions_are_unchanged(wgs: tuple[float, float]) -> None:
    assert not in_china_box(*wgs)
    assert wgs84_to_gcj02(*wgs) == wgs
    assert gcj02_to_wgs84(*wgs) == wgs


def test_offset_is_hundreds_of_metres() -> None:
    for wgs in [(39.9, 116.4), (31.23, 121.47), (22.54, 114.06), (43.82, 87.61)]:
        assert 50 < haversine_m(*wgs, *wgs84_to_gcj02(*wgs)) < 1000


@settings(max_examples=300, deadline=None, database=None)
@given(st.floats(18.0, 53.0), st.floats(74.0, 134.0))
def test_round_trip_inside_china_is_under_a_metre(lat: float, lon: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))
    assert haversine_m(lat, lon, *back) < 0.01  # the requirement is < 1 m; it converges far closer
