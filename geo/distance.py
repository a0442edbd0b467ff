"""Great-circle distance and bearing between WGS-84 positions, on a sphere.

Units: positions in decimal degrees (latitude -90..90, longitude -180..180, either wrapping is
accepted), distances in metres, bearings in degrees clockwise from true north in ``[0, 360)``.

Limits: the Earth is taken as a sphere of the WGS-84 mean radius (IUGG R1, 6 371 008.8 m). Against
the ellipsoid (Vincenty/Karney) this errs by up to about 0.5 % (typically 0.1-0.3 %), which is far
below handheld GPS error at dispatch distances but is not survey grade. The haversine form,
evaluated as ``2 atan2(sqrt(a), sqrt(1 - a))``, is accurate to well under a millimetre from
centimetre separations up to thousands of kilometres; only within a few kilometres of the antipode
does rounding grow to a few decimetres. The bearing between coincident points is defined as 0.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
"""WGS-84 mean radius (2a + b) / 3 in metres."""


def _central_angle(a: float) -> float:
    a = min(max(a, 0.0), 1.0)  # rounding can push a a hair outside 0..1
    return 2.0 * math.atan2(math.sqrt(a), math.sqrt(1.0 - a))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees; 0..pi*R (~20 015 km)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    s_dlat = math.sin((p2 - p1) / 2.0)
    s_dlon = math.sin(math.radians(lon2 - lon1) / 2.0)
    a = s_dlat * s_dlat + math.cos(p1) * math.cos(p2) * s_dlon * s_dlon
    return EARTH_RADIUS_M * _central_angle(a)


def initial_bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 towards point 2, degrees clockwise from north.

    The bearing changes along a great circle (except due north/south or along the equator); this is
    the heading to set off on. Returns a value in ``[0, 360)``; 0 for coincident points.
    """
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dlon = math.radians(lon2 - lon1)
    y = math.sin(dlon) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dlon)
    if y == 0.0 and x == 0.0:
        return 0.0
    deg = math.degrees(math.atan2(y, x)) % 360.0
    return 0.0 if deg >= 360.0 else deg  # -tiny % 360 rounds to 360.0


def destination(lat: float, lon: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` metres from ``(lat, lon)`` along initial bearing ``bearing_deg``.

    Returns ``(lat, lon)`` in degrees with longitude normalised to ``[-180, 180)``. The inverse of
    :func:`haversine_m` / :func:`initial_bearing_deg` on the same sphere.
    """
    p1 = math.radians(lat)
    theta = math.radians(bearing_deg)
    delta = distance_m / EARTH_RADIUS_M
    sin_p2 = math.sin(p1) * math.cos(delta) + math.cos(p1) * math.sin(delta) * math.cos(theta)
    p2 = math.asin(min(max(sin_p2, -1.0), 1.0))
    l2 = math.radians(lon) + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(p1),
        math.cos(delta) - math.sin(p1) * sin_p2,
    )
    return math.degrees(p2), normalize_lon(math.degrees(l2))


def normalize_lon(lon: float) -> float:
    """Longitude wrapped into ``[-180, 180)`` degrees."""
    out = (lon + 180.0) % 360.0 - 180.0
    return -180.0 if out >= 180.0 else out
