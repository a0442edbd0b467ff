"""Geofences from stored area JSON, and the watcher's enter/exit events."""

from __future__ import annotations

from typing import Any

import pytest

from geo.distance import destination, haversine_m
from geo.fix import Fix
from geo.geofence import CircleFence, Geofence, GeofenceError, GeofenceWatcher, PolygonFence

CENTRE = (52.2297, 21.0122)
CIRCLE = {"type": "circle", "lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 200.0}


def square(lat: float, lon: float, half_m: float) -> dict[str, Any]:
    """A polygon area with corners ``half_m`` north/south and east/west of the centre."""
    n, _ = destination(lat, lon, 0, half_m)
    s, _ = destination(lat, lon, 180, half_m)
    _, e = destination(lat, lon, 90, half_m)
    _, w = destination(lat, lon, 270, half_m)
    return {"type": "polygon", "points": [[s, w], [s, e], [n, e], [n, w]]}


def at(bearing: float, metres: float, ts: float, origin: tuple[float, float] = CENTRE) -> Fix:
    lat, lon = destination(origin[0], origin[1], bearing, metres)
    return Fix(lat, lon, ts)


def test_circle_contains_by_great_circle_distance() -> None:
    fence = Geofence.from_area(CIRCLE)
    assert isinstance(fence, CircleFence)
    assert fence.contains(*CENTRE)
    for bearing in (0, 77, 180, 300):
        inside, outside = at(bearing, 199.5, 0), at(bearing, 200.5, 0)
        assert fence.contains(inside.lat, inside.lon)
        assert not fence.contains(outside.lat, outside.lon)
        assert fence.signed_distance_m(outside.lat, outside.lon) == pytest.approx(0.5, abs=1e-6)


def test_polygon_contains_and_measures_metres_from_its_edges() -> None:
    fence = Geofence.from_area(square(*CENTRE, 500))
    assert isinstance(fence, PolygonFence)
    assert fence.contains(*CENTRE)
    east_in, east_out = at(90, 490, 0), at(90, 510, 0)
    assert fence.contains(east_in.lat, east_in.lon)
    assert not fence.contains(east_out.lat, east_out.lon)
    # Local projection keeps metres meaningful: 10 m beyond the east edge reads as ~10 m.
    assert fence.signed_distance_m(east_out.lat, east_out.lon) == pytest.approx(10, abs=0.1)
    assert fence.signed_distance_m(east_in.lat, east_in.lon) == pytest.approx(-10, abs=0.1)
    assert fence.signed_distance_m(*CENTRE) == pytest.approx(-500, abs=0.5)


def test_concave_polygon_excludes_its_notch() -> None:
    # A "U" opening north: the notch in the middle is outside.
    pts = [[0, 0], [0, 0.03], [0.03, 0.03], [0.03, 0.02], [0.01, 0.02], [0.01, 0.01], [0.03, 0.01], [0.03, 0]]
    fence = Geofence.from_area({"type": "polygon", "points": pts})
    assert fence.contains(0.005, 0.015)
    assert not fence.contains(0.02, 0.015)
    assert fence.contains(0.02, 0.005)


def test_polygon_across_the_antimeridian() -> None:
    pts = [[-16.0, 179.9], [-16.0, -179.9], [-16.1, -179.9], [-16.1, 179.9]]
    fence = Geofence.from_area({"type": "polygon", "points": pts})
    assert fence.contains(-16.05, 179.95)
    assert fence.contains(-16.05, -179.95)
    assert fence.contains(-16.05, 180.0)
    assert not fence.contains(-16.05, 0.0)
    assert not fence.contains(-16.05, -179.8)
    assert fence.signed_distance_m(-16.05, -179.8) == pytest.approx(
        haversine_m(-16.05, -179.9, -16.05, -179.8), rel=1e-3)


def test_self_intersecting_ring_is_repaired_not_refused() -> None:
    bow_tie = {"type": "polygon", "points": [[0, 0], [0.01, 0.01], [0, 0.01], [0.01, 0]]}
    fence = Geofence.from_area(bow_tie)
    assert fence.contains(0.005, 0.002)
    assert not fence.contains(0.002, 0.005)


def test_area_round_trips_through_as_area() -> None:
    poly = square(*CENTRE, 100)
    assert Geofence.from_area(CIRCLE).as_area() == CIRCLE
    assert Geofence.from_area(poly).as_area() == poly


@pytest.mark.parametrize(("area", "names"), [
    (None, "area must be an object"),
    ({"type": "hexagon"}, "area.type"),
    ({"type": "circle", "lat": 91, "lon": 0, "radius_m": 5}, "area.lat"),
    ({"type": "circle", "lat": 0, "lon": 0, "radius_m": float("nan")}, "area.radius_m"),
    ({"type": "circle", "lat": 0, "lon": "east", "radius_m": 5}, "area.lon"),
    ({"type": "polygon", "points": [[0, 0], [1, 1]]}, "area.points"),
    ({"type": "polygon", "points": [[0, 0], [1, 1], [2]]}, "area.points[2]"),
    ({"type": "polygon", "points": [[0, 0], [0, 0.1], [0, 0.2]]}, "no area"),
    ({"type": "polygon", "points": [[80, 0], [80, 120], [80, -120]]}, "pole"),
    ({"type": "polygon", "points": [[0, 0], [0, 20], [20, 20]]}, "span"),
])
def test_bad_areas_are_refused_naming_the_field(area: Any, names: str) -> None:
    with pytest.raises(GeofenceError, match=names.replace("[", r"\[").replace("]", r"\]")):
        Geofence.from_area(area)


def test_first_fix_sets_state_and_each_crossing_yields_one_event() -> None:
    watcher = GeofenceWatcher(Geofence.from_area(CIRCLE))
    path = [at(90, m, ts) for ts, m in enumerate([500, 400, 300, 150, 50, 10, 150, 250, 400, 100])]
    events = [e for f in path if (e := watcher.feed("u1", f)) is not None]
    assert [(e.kind, e.fix.ts) for e in events] == [("enter", 3), ("exit", 7), ("enter", 9)]
    assert watcher.inside("u1") is True


def test_first_fix_inside_yields_nothing_until_exit() -> None:
    watcher = GeofenceWatcher(Geofence.from_area(CIRCLE))
    assert watcher.feed("u1", at(0, 0, 0)) is None
    assert watcher.inside("u1") is True
    event = watcher.feed("u1", at(0, 300, 1))
    assert event is not None and event.kind == "exit" and event.unit_id == "u1"


def test_units_are_tracked_independently() -> None:
    watcher = GeofenceWatcher(Geofence.from_area(CIRCLE))
    watcher.feed("a", at(0, 500, 0))
    watcher.feed("b", at(0, 0, 0))
    assert watcher.feed("a", at(0, 0, 1)) is not None
    assert watcher.feed("b", at(0, 10, 1)) is None
    assert (watcher.inside("a"), watcher.inside("b"), watcher.inside("c")) == (True, True, None)


def test_out_of_order_and_repeated_fixes_are_ignored() -> None:
    watcher = GeofenceWatcher(Geofence.from_area(CIRCLE))
    watcher.feed("u1", at(0, 500, 10))
    assert watcher.feed("u1", at(0, 0, 5)) is None  # late fix from before: no enter
    assert watcher.inside("u1") is False
    assert watcher.feed("u1", at(0, 0, 10)) is None  # same ts again
    assert watcher.inside("u1") is False
    event = watcher.feed("u1", at(0, 0, 11))
    assert event is not None and event.kind == "enter"


def test_jitter_on_the_boundary_flaps_without_hysteresis_and_not_with_it() -> None:
    jitter = [at(45, 200 + (4 if i % 2 else -4), i) for i in range(20)]  # +-4 m about the edge
    plain = GeofenceWatcher(Geofence.from_area(CIRCLE))
    damped = GeofenceWatcher(Geofence.from_area(CIRCLE), hysteresis_m=10)
    assert len([e for f in jitter if (e := plain.feed("u", f)) is not None]) == 19
    assert [e for f in jitter if (e := damped.feed("u", f)) is not None] == []
    # A real departure still registers once the unit is clearly out.
    event = damped.feed("u", at(45, 215, 100))
    assert event is not None and event.kind == "exit"
    assert damped.feed("u", at(45, 195, 101)) is None  # not yet 10 m inside
    event = damped.feed("u", at(45, 185, 102))
    assert event is not None and event.kind == "enter"


def test_hysteresis_on_a_polygon_uses_metres_to_the_edge() -> None:
    watcher = GeofenceWatcher(Geofence.from_area(square(*CENTRE, 500)), hysteresis_m=10)
    watcher.feed("u", at(90, 0, 0))
    assert watcher.feed("u", at(90, 508, 1)) is None
    event = watcher.feed("u", at(90, 512, 2))
    assert event is not None and event.kind == "exit"


def test_negative_hysteresis_is_refused() -> None:
    with pytest.raises(GeofenceError, match="hysteresis_m"):
        GeofenceWatcher(Geofence.from_area(CIRCLE), hysteresis_m=-1)
