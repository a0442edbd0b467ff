"""Where the unit is: a simulated route around a point, or fixes replayed from an NMEA file.

A position source answers ``position(now)`` with a :class:`geo.fix.Fix` for an epoch time ``now``
(seconds); the unit calls
it once per ``position_interval_s``; the fixes are buffered and sent in ``positions`` batches (docs/api.md).
Time is passed in, so tests can move the clock.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from geo.fix import Fix

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_000.0
KNOTS_TO_MPS = 1852.0 / 3600.0
# Horizontal accuracy from HDOP: HDOP times a typical user-equivalent range error of ~5 m.
UERE_M = 5.0

DEFAULT_CENTER = (39.9042, 116.4074)
DEFAULT_RADIUS_M = 250.0


class PositionSource(Protocol):
    def position(self, now: float) -> Fix | None:
        """The fix to report at epoch time ``now``, or None when there is none."""


class SimulatedRoute:
    """A circle of ``radius_m`` around ``(lat, lon)`` driven clockwise at ``speed_mps``.

    The angle is a pure function of ``now``, so any clock works; ``phase_deg`` (random by
    default) keeps a fleet of simulated units from driving in formation.
    """

    def __init__(
        self,
        lat: float,
        lon: float,
        radius_m: float = DEFAULT_RADIUS_M,
        speed_mps: float = 8.0,
        alt: float = 45.0,
        phase_deg: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not -90 < lat < 90 or not -180 <= lon <= 180:
            raise ValueError(f"simulated route centre {lat},{lon} is not a valid coordinate")
        if radius_m <= 0:
            raise ValueError(f"simulated route radius must be positive, got {radius_m}")
        self.lat = lat
        self.lon = lon
        self.radius_m = radius_m
        self.speed_mps = speed_mps
        self.alt = alt
        self.phase_deg = phase_deg if phase_deg is not None else (rng or random.Random()).uniform(0, 360)

    def position(self, now: float) -> Fix:
        angle = math.radians(self.phase_deg) + now * self.speed_mps / self.radius_m
        north_m = self.radius_m * math.cos(angle)
        east_m = self.radius_m * math.sin(angle)
        lat = self.lat + math.degrees(north_m / EARTH_RADIUS_M)
        lon = self.lon + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(self.lat))))
        # Clockwise seen from above: at due north of the centre the unit heads east.
        heading = (math.degrees(angle) + 90.0) % 360.0
        return Fix(lat=lat, lon=lon, ts=now, alt=self.alt, accuracy=5.0, speed=self.speed_mps, heading=heading)


class NmeaError(ValueError):
    """A sentence that claims to be RMC/GGA but is corrupt (checksum, field count, numbers)."""


@dataclass(frozen=True)
class NmeaFix:
    """Fields of one ``RMC`` or ``GGA`` sentence; fields the sentence lacks are None."""

    sentence: str  # "RMC" or "GGA"
    time_of_day: str  # hhmmss(.ss) in UTC, pairs an RMC with the GGA of the same epoch
    lat: float
    lon: float
    speed: float | None = None  # m/s
    heading: float | None = None
    alt: float | None = None
    accuracy: float | None = None
    date: str | None = None  # ddmmyy, RMC only


def nmea_checksum_ok(sentence: str) -> bool:
    """Whether ``$...*hh`` carries the right XOR checksum; sentences without ``*hh`` pass."""
    body, star, given = sentence.strip().lstrip("$").partition("*")
    if not star:
        return True
    value = 0
    for ch in body:
        value ^= ord(ch)
    try:
        return int(given[:2], 16) == value
    except ValueError:
        return False


def _coordinate(value: str, hemisphere: str, degree_digits: int) -> float:
    if len(value) < degree_digits + 2 or hemisphere not in ("N", "S", "E", "W"):
        raise NmeaError(f"bad coordinate {value!r} {hemisphere!r}")
    try:
        result = int(value[:degree_digits]) + float(value[degree_digits:]) / 60.0
    except ValueError as exc:
        raise NmeaError(f"bad coordinate {value!r}") from exc
    return -result if hemisphere in ("S", "W") else result


def _optional_float(value: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise NmeaError(f"bad number {value!r}") from exc


def parse_nmea(line: str) -> NmeaFix | None:
    """Parse one ``$xxRMC`` or ``$xxGGA`` sentence (any talker, e.g. GP or GN).

    Returns None for other sentence types and for sentences that report no fix (RMC status
    ``V``, GGA quality 0); raises :class:`NmeaError` for corrupt ones.
    """
    line = line.strip()
    if not line.startswith("$") or len(line) < 7:
        return None
    kind = line[3:6]
    if kind not in ("RMC", "GGA"):
        return None
    if not nmea_checksum_ok(line):
        raise NmeaError(f"checksum mismatch in {line!r}")
    fields = line[1:].partition("*")[0].split(",")
    try:
        if kind == "RMC":
            # $GPRMC,time,status,lat,N,lon,E,speed_knots,course,ddmmyy,magvar,E[,mode]
            if len(fields) < 10:
                raise NmeaError(f"RMC with {len(fields)} fields: {line!r}")
            if fields[2] != "A":
                return None
            knots = _optional_float(fields[7])
            return NmeaFix(
                sentence="RMC", time_of_day=fields[1],
                lat=_coordinate(fields[3], fields[4], 2), lon=_coordinate(fields[5], fields[6], 3),
                speed=knots * KNOTS_TO_MPS if knots is not None else None,
                heading=_optional_float(fields[8]), date=fields[9] or None,
            )
        # $GPGGA,time,lat,N,lon,E,quality,satellites,hdop,alt,M,geoid,M,age,station
        if len(fields) < 10:
            raise NmeaError(f"GGA with {len(fields)} fields: {line!r}")
        if fields[6] in ("", "0"):
            return None
        hdop = _optional_float(fields[8])
        return NmeaFix(
            sentence="GGA", time_of_day=fields[1],
            lat=_coordinate(fields[2], fields[3], 2), lon=_coordinate(fields[4], fields[5], 3),
            alt=_optional_float(fields[9]),
            accuracy=hdop * UERE_M if hdop is not None else None,
        )
    except IndexError as exc:  # pragma: no cover - guarded by the field counts above
        raise NmeaError(f"truncated sentence {line!r}") from exc


def merge_fixes(fixes: list[NmeaFix]) -> list[NmeaFix]:
    """One fix per epoch: consecutive RMC and GGA with the same time of day are combined
    (RMC gives speed and heading, GGA altitude and accuracy)."""
    merged: list[NmeaFix] = []
    for fix in fixes:
        last = merged[-1] if merged else None
        if last is not None and last.time_of_day == fix.time_of_day and last.sentence != fix.sentence:
            merged[-1] = replace(
                last,
                sentence="RMC+GGA",
                speed=last.speed if last.speed is not None else fix.speed,
                heading=last.heading if last.heading is not None else fix.heading,
                alt=last.alt if last.alt is not None else fix.alt,
                accuracy=last.accuracy if last.accuracy is not None else fix.accuracy,
                date=last.date or fix.date,
            )
        else:
            merged.append(fix)
    return merged


def read_nmea(path: Path) -> list[NmeaFix]:
    """All usable fixes of an NMEA log, one per epoch; corrupt sentences are skipped and counted."""
    fixes: list[NmeaFix] = []
    corrupt = 0
    with path.open(encoding="ascii", errors="replace") as f:
        for line in f:
            try:
                fix = parse_nmea(line)
            except NmeaError:
                corrupt += 1
                continue
            if fix is not None:
                fixes.append(fix)
    if corrupt:
        logger.warning("%s: skipped %d corrupt NMEA sentences", path, corrupt)
    merged = merge_fixes(fixes)
    if not merged:
        raise NmeaError(f"{path} holds no RMC or GGA sentence with a valid fix")
    return merged


class NmeaReplay:
    """Replays fixes one per call, wrapping at the end; timestamps are ``now``, not the log's,
    so the server sees a live unit rather than a stale track."""

    def __init__(self, fixes: list[NmeaFix]) -> None:
        if not fixes:
            raise ValueError("an NMEA replay needs at least one fix")
        self.fixes = fixes
        self._next = 0

    def position(self, now: float) -> Fix:
        fix = self.fixes[self._next]
        self._next = (self._next + 1) % len(self.fixes)
        return Fix(lat=fix.lat, lon=fix.lon, ts=now, alt=fix.alt, accuracy=fix.accuracy,
                   speed=fix.speed, heading=fix.heading)


@dataclass(frozen=True)
class GpsSpec:
    """``--gps``: ``sim[:LAT,LON[,RADIUS_M]]``, ``nmea:PATH`` or ``none``."""

    kind: str = "sim"  # "sim" | "nmea" | "none"
    lat: float = DEFAULT_CENTER[0]
    lon: float = DEFAULT_CENTER[1]
    radius_m: float = DEFAULT_RADIUS_M
    path: Path | None = None

    def __str__(self) -> str:
        if self.kind == "sim":
            return f"sim:{self.lat},{self.lon},{self.radius_m:g}"
        return f"nmea:{self.path}" if self.kind == "nmea" else "none"


def parse_gps_spec(text: str) -> GpsSpec:
    """Parse a ``--gps`` value; ValueError names what is wrong."""
    kind, _, rest = text.partition(":")
    if kind == "none" and not rest:
        return GpsSpec(kind="none")
    if kind == "nmea":
        if not rest:
            raise ValueError("--gps nmea:PATH needs a file path")
        return GpsSpec(kind="nmea", path=Path(rest))
    if kind == "sim":
        if not rest:
            return GpsSpec()
        parts = rest.split(",")
        if len(parts) not in (2, 3):
            raise ValueError(f"--gps sim:LAT,LON[,RADIUS_M] expected, got {text!r}")
        try:
            numbers = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"--gps {text!r}: not a number") from exc
        if not -90 < numbers[0] < 90 or not -180 <= numbers[1] <= 180:
            raise ValueError(f"--gps {text!r}: latitude/longitude out of range")
        radius = numbers[2] if len(numbers) == 3 else DEFAULT_RADIUS_M
        if radius <= 0:
            raise ValueError(f"--gps {text!r}: radius must be positive")
        return GpsSpec(kind="sim", lat=numbers[0], lon=numbers[1], radius_m=radius)
    raise ValueError(f"--gps must be sim[:LAT,LON[,RADIUS_M]], nmea:PATH or none, got {text!r}")


def open_position_source(spec: GpsSpec, rng: random.Random | None = None) -> PositionSource | None:
    """The source ``spec`` names; reads the NMEA file (blocking: call via ``asyncio.to_thread``)."""
    if spec.kind == "none":
        return None
    if spec.kind == "nmea":
        assert spec.path is not None
        return NmeaReplay(read_nmea(spec.path))
    return SimulatedRoute(spec.lat, spec.lon, spec.radius_m, rng=rng)
