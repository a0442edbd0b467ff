"""NearestIndex: exact k-nearest by great-circle distance, checked against brute force."""

from __future__ import annotations

import random
import statistics
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.distance import haversine_m
from geo.nearest import NearestIndex

# Positions biased towards the awkward places: poles, the antimeridian, and clusters.
_lat = st.one_of(
    st.floats(-90, 90),
    st.floats(89.0, 90.0), st.floats(-90.0, -89.0),
    st.sampled_from([90.0, -90.0, 0.0]),
)
_lon = st.one_of(
    st.floats(-180, 180),
    st.floats(179.0, 180.0), st.floats(-180.0, -179.0),
    st.sampled_from([180.0, -180.0, 0.0]),
)
_point = st.tuples(_lat, _lon)


def brute_force(points: dict[str, tuple[float, float]], lat: float, lon: float) -> list[tuple[str, float]]:
    return sorted(((u, haversine_m(lat, lon, *p)) for u, p in points.items()), key=lambda r: r[1])


def assert_same_as_brute_force(
    got: list[tuple[str, float]], points: dict[str, tuple[float, float]], lat: float, lon: float, k: int,
    eligible: set[str] | None = None,
) -> None:
    want = [r for r in brute_force(points, lat, lon) if eligible is None or r[0] in eligible][:k]
    assert len(got) == len(want)
    assert len({u for u, _ in got}) == len(got)
    # Each reported distance is that unit's true distance, and the distances are the k smallest
    # (ties may come back in either order, so compare distances rather than ids). rel=1e-8 allows
    # for the haversine's rounding near antipodes (~0.2 m at 20 000 km).
    for unit_id, d in got:
        assert eligible is None or unit_id in eligible
        assert d == pytest.approx(haversine_m(lat, lon, *points[unit_id]), rel=1e-8, abs=1e-6)
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-8, abs=1e-6)
    assert [d for _, d in got] == sorted(d for _, d in got)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_point, max_size=60), _point, st.integers(0, 12))
def test_nearest_equals_brute_force(pts: list[tuple[float, float]], q: tuple[float, float], k: int) -> None:
    index = NearestIndex()
    points = {f"u{i}": p for i, p in enumerate(pts)}
    for u, (lat, lon) in points.items():
        index.update(u, lat, lon)
    assert_same_as_brute_force(index.nearest(q[0], q[1], k), points, q[0], q[1], k)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefghij"), _point), max_size=80),
    _point, st.integers(1, 12), st.sets(st.sampled_from("abcdefghij")),
)
def test_updates_and_filter_equal_brute_force(
    ops: list[tuple[str, tuple[float, float]]], q: tuple[float, float], k: int, eligible: set[str],
) -> None:
    index = NearestIndex()
    points: dict[str, tuple[float, float]] = {}
    for u, p in ops:  # repeated ids move the unit
        index.update(u, *p)
        points[u] = p
    assert len(index) == len(points)
    for u, p in points.items():
        assert index.position(u) == p
    assert_same_as_brute_force(index.nearest(*q, k), points, *q, k)
    got = index.nearest(*q, k, filter=lambda u: u in eligible)
    assert_same_as_brute_force(got, points, *q, k, eligible=eligible)


def test_filter_that_accepts_few_units_still_finds_them_all() -> None:
    rng = random.Random(7)
    index = NearestIndex()
    points = {f"u{i}": (rng.uniform(-90, 90), rng.uniform(-180, 180)) for i in range(2000)}
    for u, p in points.items():
        index.update(u, *p)
    eligible = {"u3", "u1999", "u500"}
    calls: list[str] = []

    def only(u: str) -> bool:
        calls.append(u)
        return u in eligible

    got = index.nearest(10, 10, 5, filter=only)
    assert_same_as_brute_force(got, points, 10, 10, 5, eligible=eligible)
    assert len(calls) == len(set(calls)) == 2000  # each unit asked once


def test_antimeridian_neighbour_beats_a_same_sign_longitude() -> None:
    index = NearestIndex()
    index.update("west-of-line", 0.0, 179.99)
    index.update("far-east", 0.0, -170.0)
    index.update("across", 0.0, -179.99)
    got = index.nearest(0.0, -179.995, 2)
    assert {u for u, _ in got} == {"across", "west-of-line"}
    assert got[0][0] == "across" and got[0][1] == pytest.approx(haversine_m(0, -179.995, 0, -179.99))


def test_edge_cases() -> None:
    index = NearestIndex()
    assert index.nearest(0, 0, 5) == []
    index.update("a", 1, 1)
    assert index.nearest(0, 0, 0) == []
    assert [u for u, _ in index.nearest(0, 0, 5)] == ["a"]
    assert "a" in index and "b" not in index
    with pytest.raises(ValueError, match="k must be"):
        index.nearest(0, 0, -1)
    with pytest.raises(ValueError, match="'b'"):
        index.update("b", 91, 0)
    with pytest.raises(ValueError):
        index.update("b", float("nan"), 0)


def test_query_over_5000_units_is_fast() -> None:
    """Target p99 < 5 ms on a slow 2-core machine; asserted loosely as the box may be busy."""
    rng = random.Random(42)
    index = NearestIndex()
    for i in range(5000):
        index.update(f"unit-{i}", rng.uniform(-90, 90), rng.uniform(-180, 180))
    samples = []
    for _ in range(500):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        t0 = time.perf_counter()
        index.nearest(lat, lon, 10)
        samples.append(time.perf_counter() - t0)
    assert statistics.median(samples) < 0.005
