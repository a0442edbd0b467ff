"""Export of a unit's track: GPX 1.1 XML and a GeoJSON FeatureCollection (RFC 7946).

Input is the unit's fixes (:class:`geo.fix.Fix`, e.g. ``[p.fix for p in store.query(unit)]``);
they are sorted by ``ts`` here, so any order is accepted. Times are written as ISO 8601 UTC
(``2026-11-27T10:00:00Z``, with milliseconds when the fix time has a fraction:
:func:`utctime.iso_millis_trimmed`).

GPX (https://www.topografix.com/GPX/1/1/): one ``<trk>`` named after the unit with one
``<trkseg>``; each fix is a ``<trkpt lat lon>`` with ``<ele>`` (metres) when known and ``<time>``.
GPX 1.1 has no element for accuracy, speed or heading, so those go in ``<extensions>`` under the
namespace :data:`EXT_NS` (metres, m/s, degrees), which schema-valid readers skip. Numbers are
written as plain decimals (never ``1e-05``, which ``xsd:decimal`` forbids) to 1e-9 deg (~0.1 mm);
longitude 180 is written as -180 (the schema's range is -180 <= lon < 180). Text is escaped and
characters XML 1.0 cannot carry are dropped.

GeoJSON: coordinates are ``[lon, lat]`` (RFC 7946 order; altitude stays in properties so all
positions have the same dimension). The FeatureCollection holds one track feature -- a
LineString, or a MultiLineString cut at the antimeridian as RFC 7946 section 3.1.9 asks; omitted
when there are fewer than two fixes -- followed by one Point feature per fix with its time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from geo.distance import normalize_lon
from geo.fix import Fix
from utctime import iso_millis_trimmed

GPX_NS = "http://www.topografix.com/GPX/1/1"
EXT_NS = "urn:court-dispatch:gpx:1"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XML_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _dec(v: float, places: int) -> str:
    s = f"{v:.{places}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _text(s: str) -> str:
    s = _XML_ILLEGAL.sub("", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def track_gpx(
    unit_id: str, fixes: Iterable[Fix], *, name: str | None = None, creator: str = "court-dispatch",
    created: float | None = None,
) -> str:
    """The track as a GPX 1.1 document (``str``, UTF-8 declared).

    ``name`` defaults to ``unit_id``; ``created`` (epoch s) fills ``<metadata><time>`` when given.
    """
    ordered = sorted(fixes, key=lambda f: f.ts)
    title = _text(name if name is not None else unit_id)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gpx version="1.1" creator="{_text(creator)}" xmlns="{GPX_NS}" xmlns:cd="{EXT_NS}" '
        f'xmlns:xsi="{_XSI_NS}" xsi:schemaLocation="{GPX_NS} {GPX_NS}/gpx.xsd">',
        "<metadata>",
        f"<name>{title}</name>",
    ]
    if created is not None:
        out.append(f"<time>{iso_millis_trimmed(created)}</time>")
    out += ["</metadata>", "<trk>", f"<name>{title}</name>"]
    if ordered:
        out.append("<trkseg>")
        for f in ordered:
            out.append(_trkpt(f))
        out.append("</trkseg>")
    out += ["</trk>", "</gpx>", ""]
    return "\n".join(out)


def _trkpt(f: Fix) -> str:
    lon = f.lon if f.lon < 180.0 else -180.0
    parts = [f'<trkpt lat="{_dec(f.lat, 9)}" lon="{_dec(lon, 9)}">']
    if f.alt is not None:
        parts.append(f"<ele>{_dec(f.alt, 3)}</ele>")
    parts.append(f"<time>{iso_millis_trimmed(f.ts)}</time>")
    ext = [
        f"<cd:{key}>{_dec(v, 3)}</cd:{key}>"
        for key, v in (("accuracy", f.accuracy), ("speed", f.speed), ("heading", f.heading))
        if v is not None
    ]
    if ext:
        parts += ["<extensions>", *ext, "</extensions>"]
    parts.append("</trkpt>")
    return "".join(parts)


def track_geojson(unit_id: str, fixes: Iterable[Fix]) -> dict[str, Any]:
    """The track as a GeoJSON FeatureCollection ``dict`` (serialise with ``json.dumps``)."""
    ordered = sorted(fixes, key=lambda f: f.ts)
    features: list[dict[str, Any]] = []
    if len(ordered) >= 2:
        parts = _split_at_antimeridian([(f.lon, f.lat) for f in ordered])
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": parts[0]}
            if len(parts) == 1
            else {"type": "MultiLineString", "coordinates": parts}
        )
        features.append({
            "type": "Feature",
            "geometry": geometry,
            "properties": {
                "unit_id": unit_id, "kind": "track", "points": len(ordered),
                "start": iso_millis_trimmed(ordered[0].ts), "end": iso_millis_trimmed(ordered[-1].ts),
            },
        })
    for f in ordered:
        props: dict[str, Any] = {
            "unit_id": unit_id, "kind": "fix", "time": iso_millis_trimmed(f.ts), "ts": f.ts,
        }
        for key in ("alt", "accuracy", "speed", "heading"):
            v = getattr(f, key)
            if v is not None:
                props[key] = v
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
            "properties": props,
        })
    return {"type": "FeatureCollection", "features": features}


def _split_at_antimeridian(points: list[tuple[float, float]]) -> list[list[list[float]]]:
    """``(lon, lat)`` positions as line parts, cut where a step crosses +-180 deg longitude.

    A step crosses when the short way round is across the antimeridian (|dlon| > 180); the
    crossing latitude is interpolated linearly, and each part ends and the next starts on the cut.
    A position exactly on the antimeridian is written with the sign of the side it continues on.
    """
    parts: list[list[list[float]]] = [[[points[0][0], points[0][1]]]]
    for lon2, lat2 in points[1:]:
        lon1, lat1 = parts[-1][-1]
        if abs(lon2 - lon1) <= 180.0:
            parts[-1].append([lon2, lat2])
            continue
        unwrapped = lon1 + normalize_lon(lon2 - lon1)
        if -180.0 <= unwrapped <= 180.0:  # one end lies on the antimeridian itself: no cut
            parts[-1].append([unwrapped, lat2])
            continue
        edge = 180.0 if unwrapped > 180.0 else -180.0
        lat_cut = lat1 + (edge - lon1) / (unwrapped - lon1) * (lat2 - lat1)
        if parts[-1][-1] != [edge, lat_cut]:
            parts[-1].append([edge, lat_cut])
        parts.append([[-edge, lat_cut], [lon2, lat2]])
    return [p for p in parts if len(p) >= 2]
