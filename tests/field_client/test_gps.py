"""Simulated routes and NMEA parsing: geometry, checksums, hemispheres, merging, replay."""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_client.gps import (
    KNOTS_TO_MPS,
    NmeaError,
    NmeaReplay,
    SimulatedRoute,
    merge_fixes,
    nmea_checksum_ok,
    open_position_source,
    parse_gps_spec,
    parse_nmea,
    read_nmea,
)
from field_client.link import position_message
from geo.fix import Fix

# The textbook examples (valid checksums computed by others, not by the code under test).
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC_SW = "$GNRMC,123520.00,A,3351.000,S,15112.000,W,000.0,,230394,,*06"
RMC_VOID = "$GPRMC,123521.00,V,,,,,,,230394,,*16"
GGA_NOFIX = "$GPGGA,123522.00,,,,,0,00,,,M,,M,,*4D"
GSV = "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def test_simulated_route_circles_the_centre_at_its_radius_and_speed() -> None:
    route = SimulatedRoute(39.9042, 116.4074, radius_m=300, speed_mps=10, phase_deg=0)
    fixes = [route.position(t) for t in range(0, 200, 10)]
    for fix in fixes:
        assert distance_m(39.9042, 116.4074, fix.lat, fix.lon) == pytest.approx(300, rel=0.01)
        assert fix.speed == 10 and fix.accuracy is not None
    a, b = route.position(1000.0), route.position(1001.0)
    assert distance_m(a.lat, a.lon, b.lat, b.lon) == pytest.approx(10, rel=0.02)
    assert b.ts == 1001.0


def test_simulated_heading_is_tangent_clockwise() -> None:
    route = SimulatedRoute(0.0, 0.0, radius_m=100, speed_mps=5, phase_deg=0)
    north = route.position(0.0)
    assert north.lat > 0 and north.lon == pytest.approx(0.0, abs=1e-9)
    assert north.heading == pytest.approx(90.0)  # due north of the centre, heading east
    east = route.position(100 * math.pi / 2 / 5)  # a quarter turn later
    assert east.lon > 0 and east.heading == pytest.approx(180.0)


def test_simulated_units_start_at_different_phases() -> None:
    rng = random.Random(5)
    starts = {round(SimulatedRoute(10.0, 10.0, rng=rng).position(0.0).heading or 0) for _ in range(5)}
    assert len(starts) == 5


def test_position_message_shape() -> None:
    msg = position_message(Fix(lat=48.1173, lon=11.516667, ts=0.5, alt=545.4, speed=None))
    assert msg == {"lat": 48.1173, "lon": 11.516667, "alt": 545.4, "ts": "1970-01-01T00:00:00.500Z"}


@given(st.floats(min_value=1.6e9, max_value=2.1e9))
def test_position_message_time_is_the_millisecond_datetime_writes(clock: float) -> None:
    ts = round(clock, 3)  # the unit rounds every fix time to whole milliseconds before sending it
    want = dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert position_message(Fix(lat=0.0, lon=0.0, ts=ts))["ts"] == want


def test_checksums_are_verified() -> None:
    assert nmea_checksum_ok(RMC) and nmea_checksum_ok(GGA)
    assert not nmea_checksum_ok(RMC.replace("*6A", "*6B"))
    with pytest.raises(NmeaError, match="checksum"):
        parse_nmea(RMC.replace("4807.038", "4807.039"))


def test_rmc_gives_position_speed_heading_and_date() -> None:
    fix = parse_nmea(RMC)
    assert fix is not None and fix.sentence == "RMC"
    assert fix.lat == pytest.approx(48 + 7.038 / 60)
    assert fix.lon == pytest.approx(11 + 31.0 / 60)
    assert fix.speed == pytest.approx(22.4 * KNOTS_TO_MPS)
    assert fix.heading == pytest.approx(84.4)
    assert fix.date == "230394"


def test_gga_gives_altitude_and_accuracy() -> None:
    fix = parse_nmea(GGA)
    assert fix is not None and fix.sentence == "GGA"
    assert fix.lat == pytest.approx(48.1173)
    assert fix.alt == pytest.approx(545.4)
    assert fix.accuracy == pytest.approx(0.9 * 5.0)


def test_southern_and_western_hemispheres_are_negative() -> None:
    fix = parse_nmea(RMC_SW)
    assert fix is not None
    assert fix.lat == pytest.approx(-(33 + 51 / 60))
    assert fix.lon == pytest.approx(-(151 + 12 / 60))
    assert fix.heading is None


def test_sentences_without_a_fix_or_of_other_types_are_skipped() -> None:
    assert parse_nmea(RMC_VOID) is None
    assert parse_nmea(GGA_NOFIX) is None
    assert parse_nmea(GSV) is None
    assert parse_nmea("garbage") is None


def test_rmc_and_gga_of_one_epoch_merge() -> None:
    fixes = [parse_nmea(RMC), parse_nmea(GGA), parse_nmea(RMC_SW)]
    merged = merge_fixes([f for f in fixes if f is not None])
    assert len(merged) == 2
    assert merged[0].sentence == "RMC+GGA"
    assert merged[0].speed == pytest.approx(22.4 * KNOTS_TO_MPS)
    assert merged[0].alt == pytest.approx(545.4)


def test_nmea_file_replays_in_a_loop_with_current_time(tmp_path: Path) -> None:
    log = tmp_path / "route.nmea"
    log.write_text("\n".join([RMC, GGA, "$GPRMC,corrupt*00", GSV, RMC_VOID, RMC_SW, ""]), encoding="ascii")
    fixes = read_nmea(log)
    assert len(fixes) == 2
    source = open_position_source(parse_gps_spec(f"nmea:{log}"))
    assert isinstance(source, NmeaReplay)
    positions = [source.position(1000.0 + i) for i in range(3)]
    assert [p.lat for p in positions] == pytest.approx([48.1173, -(33 + 51 / 60), 48.1173])
    assert [p.ts for p in positions] == [1000.0, 1001.0, 1002.0]


def test_nmea_file_without_fixes_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "empty.nmea"
    log.write_text(GSV + "\n" + RMC_VOID + "\n", encoding="ascii")
    with pytest.raises(NmeaError, match="no RMC or GGA"):
        read_nmea(log)


def test_gps_none_has_no_source() -> None:
    assert open_position_source(parse_gps_spec("none")) is None
    assert isinstance(open_position_source(parse_gps_spec("sim")), SimulatedRoute)
