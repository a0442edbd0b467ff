"""Track export: GPX 1.1 parsed back with xml.etree, GeoJSON checked against RFC 7946 rules."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from geo.fix import Fix
from geo.gpx import EXT_NS, GPX_NS, track_geojson, track_gpx
from utctime import iso_millis_trimmed

NS = {"g": GPX_NS, "cd": EXT_NS}
T0 = 1_795_773_600.0  # 2026-11-27T10:00:00Z


def fixes() -> list[Fix]:
    return [
        Fix(52.2297, 21.0122, T0 + 1.25, alt=110.0, accuracy=4.5, speed=1.2, heading=90.0),
        Fix(52.2296, 21.0121, T0),  # out of order on purpose
        Fix(0.00001, -0.00002, T0 + 2, alt=-3.5),
    ]


def test_gpx_times_have_milliseconds_only_with_a_fraction() -> None:
    assert iso_millis_trimmed(T0) == "2026-11-27T10:00:00Z"
    assert iso_millis_trimmed(T0 + 0.25) == "2026-11-27T10:00:00.250Z"


def test_gpx_is_valid_xml_with_points_in_time_order() -> None:
    doc = track_gpx("unit-7", fixes(), created=T0 + 60)
    root = ET.fromstring(doc.encode("utf-8"))
    assert root.tag == f"{{{GPX_NS}}}gpx"
    assert root.get("version") == "1.1" and root.get("creator") == "court-dispatch"
    assert root.findtext("g:metadata/g:time", namespaces=NS) == "2026-11-27T10:01:00Z"
    assert root.findtext("g:trk/g:name", namespaces=NS) == "unit-7"
    pts = root.findall("g:trk/g:trkseg/g:trkpt", NS)
    assert [p.findtext("g:time", namespaces=NS) for p in pts] == [
        "2026-11-27T10:00:00Z", "2026-11-27T10:00:01.250Z", "2026-11-27T10:00:02Z"]
    assert (pts[0].get("lat"), pts[0].get("lon")) == ("52.2296", "21.0121")
    assert pts[0].find("g:ele", NS) is None
    assert pts[1].findtext("g:ele", namespaces=NS) == "110"
    assert pts[1].findtext("g:extensions/cd:accuracy", namespaces=NS) == "4.5"
    assert pts[1].findtext("g:extensions/cd:heading", namespaces=NS) == "90"
    # xsd:decimal has no exponent form.
    assert (pts[2].get("lat"), pts[2].get("lon")) == ("0.00001", "-0.00002")
    assert pts[2].findtext("g:ele", namespaces=NS) == "-3.5"
    # Children in the schema's order: ele before time, extensions last.
    assert [c.tag.split("}")[1] for c in pts[1]] == ["ele", "time", "extensions"]


def test_gpx_escapes_names_and_drops_illegal_characters() -> None:
    nasty = 'Unit <7> & "Co" \x00\x1b'
    doc = track_gpx("u", [Fix(1, 2, T0)], name=nasty, creator="a&b")
    root = ET.fromstring(doc)
    assert root.findtext("g:metadata/g:name", namespaces=NS) == 'Unit <7> & "Co" '
    assert root.get("creator") == "a&b"


def test_gpx_longitude_180_is_written_as_minus_180() -> None:
    root = ET.fromstring(track_gpx("u", [Fix(0, 180.0, T0)]))
    (pt,) = root.findall("g:trk/g:trkseg/g:trkpt", NS)
    assert pt.get("lon") == "-180"


def test_gpx_of_no_fixes_is_still_a_document() -> None:
    root = ET.fromstring(track_gpx("u", []))
    assert root.find("g:trk", NS) is not None
    assert root.find("g:trk/g:trkseg", NS) is None
    assert root.find("g:metadata/g:time", NS) is None


def test_geojson_has_a_line_and_timed_points_in_lon_lat_order() -> None:
    fc = track_geojson("unit-7", fixes())
    json.dumps(fc, allow_nan=False)  # serialisable as strict JSON
    assert fc["type"] == "FeatureCollection"
    line, *points = fc["features"]
    assert line["geometry"] == {
        "type": "LineString",
        "coordinates": [[21.0121, 52.2296], [21.0122, 52.2297], [-0.00002, 0.00001]],
    }
    assert line["properties"]["start"] == "2026-11-27T10:00:00Z"
    assert line["properties"]["end"] == "2026-11-27T10:00:02Z"
    assert line["properties"]["points"] == 3
    assert [p["geometry"]["type"] for p in points] == ["Point"] * 3
    assert points[1]["geometry"]["coordinates"] == [21.0122, 52.2297]
    assert points[1]["properties"]["time"] == "2026-11-27T10:00:01.250Z"
    assert points[1]["properties"]["alt"] == 110.0
    assert "alt" not in points[0]["properties"]


def test_geojson_single_fix_has_no_line() -> None:
    fc = track_geojson("u", [Fix(1, 2, T0)])
    assert [f["geometry"]["type"] for f in fc["features"]] == ["Point"]
    assert track_geojson("u", []) == {"type": "FeatureCollection", "features": []}


def test_geojson_track_is_cut_at_the_antimeridian() -> None:
    fc = track_geojson("u", [Fix(-16.0, 179.8, T0), Fix(-16.2, -179.8, T0 + 1), Fix(-16.3, -179.7, T0 + 2)])
    geom = fc["features"][0]["geometry"]
    assert geom["type"] == "MultiLineString"
    west, east = geom["coordinates"]
    assert west[0] == [179.8, -16.0] and west[-1] == [180.0, pytest.approx(-16.1)]
    assert east[0] == [-180.0, pytest.approx(-16.1)] and east[-1] == [-179.7, -16.3]


def test_geojson_point_on_the_antimeridian_does_not_make_a_world_wide_line() -> None:
    fc = track_geojson("u", [Fix(0, 179.9, T0), Fix(0, -180.0, T0 + 1), Fix(0, -179.9, T0 + 2)])
    geom = fc["features"][0]["geometry"]
    assert geom["type"] == "MultiLineString"
    for part in geom["coordinates"]:
        lons = [c[0] for c in part]
        assert max(lons) - min(lons) <= 0.1 + 1e-9
