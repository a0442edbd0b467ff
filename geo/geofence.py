"""Geofences (an action's area) and a watcher that turns a unit's fixes into enter/exit events.

An area is the JSON the server stores with an action, and that shape is fixed::

    {"type": "circle", "lat": 52.1, "lon": 21.0, "radius_m": 250}
    {"type": "polygon", "points": [[lat, lon], [lat, lon], [lat, lon], ...]}

Units: degrees (WGS-84) for positions, metres for radii, distances and hysteresis.

Circles are exact on the sphere: a point is inside when its great-circle distance to the centre is
at most ``radius_m`` (see :mod:`geo.distance`). Polygons are evaluated with shapely in a local
equirectangular projection centred on the polygon's centroid (x east, y north, both in metres), so
that edges are straight lines on a flat map and distances to the boundary are in metres.

Limits of polygons:

* The boundary point itself counts as inside, for circles and polygons alike.
* Edges are straight in the projection (as drawn on a web map), not great circles; for the sizes
  used here (up to some tens of kilometres) the difference is centimetres to metres.
* Metre distances carry the projection's east-west scale error, about ``dlat * tan(lat)`` relative
  (dlat in radians from the centroid): < 0.5 % for a 50 km polygon at 45 deg latitude; far from
  the polygon (many times its size) they only mean "far". Polygons
  wider than :data:`MAX_POLYGON_SPAN_DEG` or encircling a pole are refused.
* A polygon may cross the antimeridian (longitudes are unwrapped vertex by vertex).
* Self-intersecting rings (a "bow tie" drawn by hand) are repaired with ``shapely.make_valid``;
  the result covers the areas the ring encloses. A ring enclosing no area is refused.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from geo.distance import EARTH_RADIUS_M, haversine_m, normalize_lon
from geo.fix import Fix

MAX_POLYGON_SPAN_DEG = 10.0  # ~1100 km north-south; beyond this the flat projection is misleading
MAX_RADIUS_M = 1_000_000.0


class GeofenceError(ValueError):
    """The area is malformed or unsupported; the message names the field."""


def _finite(area: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = area.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise GeofenceError(f"area.{key} must be a finite number")
    if not lo <= v <= hi:
        raise GeofenceError(f"area.{key}={v} is outside {lo}..{hi}")
    return float(v)


class Geofence(ABC):
    """An area on the Earth. Build one with :meth:`from_area`."""

    @staticmethod
    def from_area(area: Any) -> Geofence:
        """Parse the stored area JSON; raises :class:`GeofenceError` naming the bad field."""
        if not isinstance(area, dict):
            raise GeofenceError(f"area must be an object, got {type(area).__name__}")
        kind = area.get("type")
        if kind == "circle":
            return CircleFence(
                _finite(area, "lat", -90, 90),
                _finite(area, "lon", -180, 180),
                _finite(area, "radius_m", 0, MAX_RADIUS_M),
            )
        if kind == "polygon":
            pts = area.get("points")
            if not isinstance(pts, list) or len(pts) < 3:
                raise GeofenceError("area.points must be a list of at least 3 [lat, lon] pairs")
            out: list[tuple[float, float]] = []
            for i, p in enumerate(pts):
                if not isinstance(p, (list, tuple)) or len(p) != 2:
                    raise GeofenceError(f"area.points[{i}] must be a [lat, lon] pair")
                pair = {"lat": p[0], "lon": p[1]}
                out.append((_finite(pair, "lat", -90, 90), _finite(pair, "lon", -180, 180)))
            return PolygonFence(out)
        raise GeofenceError("area.type must be 'circle' or 'polygon'")

    @abstractmethod
    def contains(self, lat: float, lon: float) -> bool:
        """Whether the point (degrees) is inside or on the boundary."""

    @abstractmethod
    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the boundary: negative inside, positive outside, 0 on it."""

    @abstractmethod
    def as_area(self) -> dict[str, Any]:
        """The area JSON this fence stands for."""


class CircleFence(Geofence):
    """All points within ``radius_m`` great-circle metres of the centre."""

    def __init__(self, lat: float, lon: float, radius_m: float) -> None:
        self.lat = lat
        self.lon = lon
        self.radius_m = radius_m

    def contains(self, lat: float, lon: float) -> bool:
        return haversine_m(self.lat, self.lon, lat, lon) <= self.radius_m

    def signed_distance_m(self, lat: float, lon: float) -> float:
        return haversine_m(self.lat, self.lon, lat, lon) - self.radius_m

    def as_area(self) -> dict[str, Any]:
        return {"type": "circle", "lat": self.lat, "lon": self.lon, "radius_m": self.radius_m}


class PolygonFence(Geofence):
    """A polygon given as ``(lat, lon)`` vertices; the ring closes itself (no repeat needed)."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = list(points)
        # Unwrap longitudes vertex by vertex so a ring across the antimeridian stays contiguous.
        lons = [points[0][1]]
        for _, lon in points[1:]:
            lons.append(lons[-1] + normalize_lon(lon - lons[-1]))
        closing = lons[-1] + normalize_lon(points[0][1] - lons[-1])
        if abs(closing - lons[0]) > 1e-9:
            raise GeofenceError("area.points encircle a pole; split the area or use a circle")
        lats = [lat for lat, _ in points]
        if max(lats) - min(lats) > MAX_POLYGON_SPAN_DEG or max(lons) - min(lons) > MAX_POLYGON_SPAN_DEG:
            raise GeofenceError(f"area.points span more than {MAX_POLYGON_SPAN_DEG} degrees")
        shape_deg = _polygonal(Polygon(zip(lons, lats, strict=True)))
        if shape_deg.is_empty or shape_deg.area == 0.0:
            raise GeofenceError("area.points enclose no area")
        c = shape_deg.centroid
        self._lat0 = float(c.y)
        self._lon0 = float(c.x)
        self._kx = EARTH_RADIUS_M * math.radians(1.0) * math.cos(math.radians(self._lat0))
        self._ky = EARTH_RADIUS_M * math.radians(1.0)
        ring = [self._project_unwrapped(lat, lon) for lat, lon in zip(lats, lons, strict=True)]
        self._geom = _polygonal(Polygon(ring))
        self._boundary = self._geom.boundary
        shapely.prepare(self._geom)
        shapely.prepare(self._boundary)

    def _project_unwrapped(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        """``(x, y)`` metres east and north of the centroid in the fence's local projection."""
        return self._project_unwrapped(lat, self._lon0 + normalize_lon(lon - self._lon0))

    def contains(self, lat: float, lon: float) -> bool:
        x, y = self.project(lat, lon)
        return bool(shapely.intersects_xy(self._geom, x, y))

    def signed_distance_m(self, lat: float, lon: float) -> float:
        x, y = self.project(lat, lon)
        d = float(shapely.distance(self._boundary, shapely.Point(x, y)))
        return -d if shapely.intersects_xy(self._geom, x, y) else d

    def as_area(self) -> dict[str, Any]:
        return {"type": "polygon", "points": [[lat, lon] for lat, lon in self.points]}


def _polygonal(poly: Polygon) -> BaseGeometry:
    """``poly`` if valid, else the polygonal part of its repair (lines and points dropped)."""
    if poly.is_valid:
        return poly
    parts = [g for g in shapely.get_parts(shapely.make_valid(poly)) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else Polygon()


@dataclass(frozen=True)
class GeofenceEvent:
    """``unit_id`` crossed the fence; ``fix`` is the first fix on the new side."""

    unit_id: str
    kind: Literal["enter", "exit"]
    fix: Fix


class GeofenceWatcher:
    """Per-unit inside/outside state for one fence, turning fixes into crossing events.

    Feed each unit's fixes in time order with :meth:`feed`. The first fix of a unit only
    establishes its state (no event); afterwards each change of side yields exactly one ``enter``
    or ``exit``. A fix whose ``ts`` is not newer than the last accepted one for that unit (late,
    out of order, or a resend of the same fix) is ignored and changes nothing.

    ``hysteresis_m`` (default 0, none) keeps GPS jitter on the boundary from flapping: a unit
    outside enters only once it is at least that many metres inside the boundary, and a unit
    inside exits only once it is more than that many metres outside. With 0, the test is plain
    :meth:`Geofence.contains` (boundary counts as inside). Choose it around the fixes' typical
    accuracy (5-20 m) and well below the fence's radius or half-width, otherwise a unit can never
    get deep enough inside to enter. The first fix is classified by plain ``contains``.

    Not thread-safe; keep one owner (e.g. the event loop). State is one small entry per unit
    seen, kept for the watcher's life (the server keeps one watcher per action).
    """

    def __init__(self, fence: Geofence, hysteresis_m: float = 0.0) -> None:
        if not math.isfinite(hysteresis_m) or hysteresis_m < 0:
            raise GeofenceError(f"hysteresis_m must be a non-negative number of metres, got {hysteresis_m}")
        self.fence = fence
        self.hysteresis_m = hysteresis_m
        self._state: dict[str, tuple[bool, float]] = {}  # unit -> (inside, last accepted ts)

    def feed(self, unit_id: str, fix: Fix) -> GeofenceEvent | None:
        """Update ``unit_id`` with ``fix``; the crossing event, if this fix completes one."""
        prev = self._state.get(unit_id)
        if prev is None:
            self._state[unit_id] = (self.fence.contains(fix.lat, fix.lon), fix.ts)
            return None
        was_inside, last_ts = prev
        if fix.ts <= last_ts:
            return None
        inside = self._side(was_inside, fix)
        self._state[unit_id] = (inside, fix.ts)
        if inside == was_inside:
            return None
        return GeofenceEvent(unit_id, "enter" if inside else "exit", fix)

    def _side(self, was_inside: bool, fix: Fix) -> bool:
        h = self.hysteresis_m
        if h == 0.0:
            return self.fence.contains(fix.lat, fix.lon)
        d = self.fence.signed_distance_m(fix.lat, fix.lon)
        return d <= h if was_inside else d <= -h

    def inside(self, unit_id: str) -> bool | None:
        """The unit's current side, or None before its first fix."""
        state = self._state.get(unit_id)
        return None if state is None else state[0]
