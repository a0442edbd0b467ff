"""WGS-84 <-> GCJ-02, the obfuscated datum that Chinese web maps (AMap/Gaode, Tencent, Google
China) draw their tiles in.

Units: decimal degrees in and out, ``(lat, lon)`` order like the rest of :mod:`geo` (many public
implementations take ``(lon, lat)``; mind the order when comparing).

The forward transform is the widely published reimplementation (Krasovsky 1940 ellipsoid,
a = 6 378 245 m, e^2 = 0.00669342162296594323) and agrees with the Chinese maps to well under a
metre. GCJ-02 is only defined in China; outside a bounding rectangle (lon 72.004..137.8347,
lat 0.8293..55.8271, the box those implementations use) positions are returned unchanged. The
rectangle is not the border: parts of neighbouring countries inside it are shifted too, which is
what the tile providers do as well. The offset is typically 100-700 m.

There is no closed-form inverse. :func:`gcj02_to_wgs84` iterates the forward transform (fixed
point ``w <- w + (g - f(w))``); it converges in a few steps to better than 1e-9 deg (~0.1 mm),
so a round trip errs by far less than 1 m inside China. Near the rectangle's edge, where the
forward transform is discontinuous, the inverse is only as good as that discontinuity allows.
"""

from __future__ import annotations

import math

_A = 6378245.0
_EE = 0.00669342162296594323
_LON_MIN, _LON_MAX = 72.004, 137.8347
_LAT_MIN, _LAT_MAX = 0.8293, 55.8271
_INVERSE_TOL_DEG = 1e-10
_INVERSE_MAX_ITER = 30


def in_china_box(lat: float, lon: float) -> bool:
    """Whether GCJ-02 applies at this position (the published bounding rectangle, edges included)."""
    return _LON_MIN <= lon <= _LON_MAX and _LAT_MIN <= lat <= _LAT_MAX


def _dlat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _dlon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _offset(lat: float, lon: float) -> tuple[float, float]:
    """The GCJ-02 shift ``(dlat, dlon)`` in degrees at a WGS-84 position inside the box."""
    dlat = _dlat(lon - 105.0, lat - 35.0)
    dlon = _dlon(lon - 105.0, lat - 35.0)
    rad_lat = math.radians(lat)
    magic = 1.0 - _EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 ``(lat, lon)`` of a WGS-84 position; unchanged outside the China box."""
    if not in_china_box(lat, lon):
        return lat, lon
    dlat, dlon = _offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 ``(lat, lon)`` of a GCJ-02 position (iterative inverse); unchanged outside the box."""
    if not in_china_box(lat, lon):
        return lat, lon
    w_lat, w_lon = lat, lon
    for _ in range(_INVERSE_MAX_ITER):
        g_lat, g_lon = wgs84_to_gcj02(w_lat, w_lon)
        e_lat, e_lon = lat - g_lat, lon - g_lon
        w_lat += e_lat
        w_lon += e_lon
        if abs(e_lat) < _INVERSE_TOL_DEG and abs(e_lon) < _INVERSE_TOL_DEG:
            break
    return w_lat, w_lon
