"""Great-circle distance and bearing on the WGS-84 mean sphere."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from geo.distance import EARTH_RADIUS_M, destination, haversine_m, initial_bearing_deg, normalize_lon

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
QUICK = settings(max_examples=150, deadline=None, database=None)
# Rounding in haversine_m: far below a micrometre on most arcs, but within a few kilometres of the
# antipode sqrt(1 - a) keeps half the digits, ~R * sqrt(eps) = 0.1 m per distance (a few
# decimetres, as geo.distance says). Comparisons of sums of distances get 1e-7 of the lengths
# involved (2 m when an arc is near-antipodal, 20x what was ever seen) and 1 µm for coincident points.
REL_SLACK = 1e-7
ABS_SLACK_M = 1e-6


def test_distance_matches_known_arcs() -> None:
    quarter = math.pi / 2 * EARTH_RADIUS_M
    assert haversine_m(0, 0, 90, 0) == pytest.approx(quarter, rel=1e-12)
    assert haversine_m(0, 0, 0, 90) == pytest.approx(quarter, rel=1e-12)
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195.08, abs=0.01)  # one degree of arc
    assert haversine_m(10, 20, -10, -160) == pytest.approx(math.pi * EARTH_RADIUS_M, abs=0.5)  # antipodes
    assert haversine_m(51.5, -0.1, 51.5, -0.1) == 0.0


def test_paris_to_london_is_about_344_km() -> None:
    assert haversine_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_900, rel=2e-3)


def test_distance_across_the_antimeridian_is_the_short_way() -> None:
    assert haversine_m(0, 179.5, 0, -179.5) == pytest.approx(haversine_m(0, 0, 0, 1), rel=1e-9)


def test_centimetre_separations_stay_accurate() -> None:
    assert haversine_m(45, 7, 45 + 1e-7, 7) == pytest.approx(EARTH_RADIUS_M * math.radians(1e-7), rel=1e-6)


def test_bearings_of_cardinal_directions() -> None:
    assert initial_bearing_deg(0, 0, 1, 0) == pytest.approx(0)
    assert initial_bearing_deg(0, 0, 0, 1) == pytest.approx(90)
    assert initial_bearing_deg(0, 0, -1, 0) == pytest.approx(180)
    assert initial_bearing_deg(0, 0, 0, -1) == pytest.approx(270)
    assert initial_bearing_deg(0, 179.9, 0, -179.9) == pytest.approx(90)
    assert initial_bearing_deg(5, 5, 5, 5) == 0.0


@QUICK
@given(lats, lons, lats, lons)
def test_distance_is_symmetric_and_bounded(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    d = haversine_m(lat1, lon1, lat2, lon2)
    assert 0.0 <= d <= math.pi * EARTH_RADIUS_M * (1 + 1e-12)
    assert d == pytest.approx(haversine_m(lat2, lon2, lat1, lon1), rel=1e-9, abs=1e-6)


@QUICK
@example(0.03125, 0.0, 1.0, 0.0, 0.0, 180.0)  # near-antipodal: failed once with a slack of 1 µm
@given(lats, lons, lats, lons, lats, lons)
def test_triangle_inequality(a: float, b: float, c: float, d: float, e: float, f: float) -> None:
    direct = haversine_m(a, b, e, f)
    via = haversine_m(a, b, c, d) + haversine_m(c, d, e, f)
    assert direct <= via * (1 + REL_SLACK) + ABS_SLACK_M


@QUICK
@given(st.floats(-85, 85), lons, st.floats(0, 360, exclude_max=True), st.floats(1, 5_000_000))
def test_destination_inverts_distance_and_bearing(lat: float, lon: float, bearing: float, dist: float) -> None:
    lat2, lon2 = destination(lat, lon, bearing, dist)
    assert -180 <= lon2 < 180
    assert haversine_m(lat, lon, lat2, lon2) == pytest.approx(dist, rel=1e-7, abs=1e-3)
    back = initial_bearing_deg(lat, lon, lat2, lon2)
    assert min(abs(back - bearing), 360 - abs(back - bearing)) < 1e-5


@pytest.mark.parametrize(("raw", "want"), [(180, -180), (-180, -180), (190, -170), (-190, 170), (540, -180), (0, 0)])
def test_normalize_lon_wraps_into_half_open_range(raw: float, want: float) -> None:
    assert normalize_lon(raw) == want
