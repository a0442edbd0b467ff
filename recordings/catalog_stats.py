"""The catalog's answers for statistics (:mod:`dispatch_server.statistics`): what was recorded day
by day, the gaps, and how the archive grew.

A year holds about a million segments, too many to read on every request, so the catalog sums up
each **day** once (:func:`compute_day`, kept by :mod:`recordings.day_cache` and redone when a
segment of that day changes: the triggers of :data:`SCHEMA`):

- recorded seconds per **cell** (the recording's action and unit), the part of each segment inside
  the day;
- what each unit recorded: its segments (deleted ones too: they were recorded) clipped to the day
  and joined where they touch or overlap; joined again across days, they are the unit's spans;
- the segments that began that day (count, bytes) and the bytes retention deleted that day;
- the gaps that began that day, with their unit, action and cause.

Plain rows and numpy arrays, epoch seconds. Each query reads segments through the covering index
``segments_span``, from :data:`MAX_SEGMENT_S` before the day (no segment is longer).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
import numpy as np

from . import day_cache

PREFIX = "catalog_stats"
# The hours a recording's segments (at most an hour long: two hours each) and gaps touch (in a trigger).
_HOURS_OF_NEW = (
    f"SELECT CAST(s.start / {day_cache.HOUR} AS INTEGER) + k.k AS h FROM segments s, "
    "(SELECT 0 AS k UNION ALL SELECT 1) k WHERE s.recording_id = NEW.id AND s.start IS NOT NULL "
    f"UNION SELECT CAST(g.start / {day_cache.HOUR} AS INTEGER) FROM gaps g "
    "WHERE g.recording_id = NEW.id AND g.start IS NOT NULL")
SCHEMA = """
CREATE INDEX IF NOT EXISTS segments_span ON segments(start, end, recording_id, bytes);
CREATE INDEX IF NOT EXISTS segments_deleted_at ON segments(deleted_at) WHERE deleted=1;
CREATE INDEX IF NOT EXISTS segments_live_bytes ON segments(bytes) WHERE deleted=0;
CREATE INDEX IF NOT EXISTS gaps_start ON gaps(start);
""" + day_cache.schema(PREFIX) + day_cache.change_triggers(
    PREFIX, "segments", ("ROW.start", "ROW.end", "ROW.deleted_at"),
    ("start", "end", "recording_id", "bytes", "deleted", "deleted_at")) + day_cache.change_triggers(
    PREFIX, "gaps", ("ROW.start",), ("start", "end", "recording_id", "cause", "seconds")) + f"""
CREATE TRIGGER IF NOT EXISTS {PREFIX}_recordings_upd AFTER UPDATE OF unit_id, action_id ON recordings
WHEN OLD.unit_id IS NOT NEW.unit_id OR OLD.action_id IS NOT NEW.action_id
BEGIN
    UPDATE {PREFIX}_changes SET stamp = (SELECT MAX(stamp) + 1 FROM {PREFIX}_changes) WHERE hour IN ({_HOURS_OF_NEW});
    INSERT INTO {PREFIX}_changes(hour, stamp) SELECT h, (SELECT COALESCE(MAX(stamp), 0) + 1 FROM {PREFIX}_changes)
    FROM ({_HOURS_OF_NEW}) WHERE h NOT IN (SELECT hour FROM {PREFIX}_changes);
END;
"""
MAX_SEGMENT_S = 3600.0  # segments are cut every few seconds; an hour covers any keyframe spacing
TABLES = (f"{PREFIX}_days",)  # emptied with the catalog (its changes stay: stamps only grow)

GAPS_SQL = ("SELECT r.unit_id, r.action_id, g.start, g.end, COALESCE(g.cause, ''), "
            "COALESCE(g.seconds, g.end - g.start, 0) FROM gaps g JOIN recordings r ON r.id = g.recording_id "
            "WHERE g.start >= ? AND g.start < ?")
_SEGMENTS_SQL = ("SELECT COALESCE(r.action_id, ''), r.unit_id, MAX(s.start, ?), MIN(s.end, ?) "
                 "FROM segments s JOIN recordings r ON r.id = s.recording_id "
                 "WHERE s.start >= ? AND s.start < ? AND s.end > ? AND s.end > s.start")
_SEALED_SQL = (
    "SELECT (SELECT COUNT(*) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=1 AND deleted_at >= ? AND deleted_at < ?)")
LIVE_BYTES_SQL = "SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=0"
EARLIEST_SQL = "SELECT MIN(start) FROM segments"


class GapRow(NamedTuple):
    unit_id: str | None
    action_id: str | None
    start: float
    end: float
    cause: str
    seconds: float


class ArchiveGrowth(NamedTuple):
    bytes_now: int  # segments not deleted, the whole archive
    segments_sealed: int  # segments that started in the span
    bytes_sealed: int
    bytes_deleted: int  # by retention, in the span


def _joined(spans: list[tuple[float, float]]) -> list[float]:
    out: list[float] = []
    for s, e in sorted(spans):
        if out and s <= out[-1]:
            out[-1] = max(out[-1], e)
        else:
            out += [s, e]
    return out


def compute_day(conn: sqlite3.Connection, start: float, end: float) -> bytes:
    """The summary of ``[start, end)`` (blocking; :func:`recordings.day_cache.summaries` calls it)."""
    recorded: dict[tuple[str, str], float] = defaultdict(float)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for action, unit, s, e in conn.execute(_SEGMENTS_SQL, (start, end, start - MAX_SEGMENT_S, end, start)):
        if e <= s:
            continue
        recorded[action, unit or ""] += e - s
        if unit is not None:
            spans[unit].append((s, e))
    sealed = conn.execute(_SEALED_SQL, (start, end) * 3).fetchone()
    joined = {u: _joined(v) for u, v in spans.items()}
    gaps = [list(r) for r in conn.execute(GAPS_SQL, (start, end))]
    body: bytes = msgpack.packb({
        "gaps": gaps,
        "cells": [list(k) for k in recorded], "seconds": np.array(list(recorded.values()), np.float64).tobytes(),
        "units": list(joined), "n": np.array([len(v) // 2 for v in joined.values()], np.int32).tobytes(),
        "spans": np.array([x for v in joined.values() for x in v], np.float64).tobytes(),
        "sealed": [int(sealed[0]), int(sealed[1]), int(sealed[2])]})
    return body


SUMMARY = day_cache.Summary(1, compute_day)


@dataclass(frozen=True)
class CatalogDay:
    """One day's summary read back (see :func:`compute_day`)."""

    start: float  # the day's
    stamp: int | None  # its version (recordings.day_cache); None while the day runs
    cells: list[tuple[str, str]]  # (action id or "", unit id or "")
    seconds: np.ndarray  # recorded inside the day, per cell
    spans: dict[str, np.ndarray]  # unit -> rows (start, end), joined, inside the day
    gaps: list[GapRow]  # that began inside the day
    segments_sealed: int
    bytes_sealed: int
    bytes_deleted: int

    @classmethod
    def read(cls, start: float, stamp: int | None, body: bytes) -> "CatalogDay":
        d: dict[str, Any] = msgpack.unpackb(body)
        flat = np.frombuffer(d["spans"], np.float64).reshape(-1, 2)
        ends = np.cumsum(np.frombuffer(d["n"], np.int32))
        spans = {u: flat[e - n:e] for u, n, e in zip(d["units"], np.frombuffer(d["n"], np.int32), ends, strict=True)}
        return cls(start, stamp, [tuple(c) for c in d["cells"]], np.frombuffer(d["seconds"], np.float64), spans,
                   [GapRow(*g) for g in d["gaps"]], *d["sealed"])


def warm(conn: sqlite3.Connection, spans: list[tuple[float, float]], now: float,
         decoded: day_cache.Decoded[CatalogDay]) -> int:
    """Compute and store the summaries of ``spans`` that are not current, read them all into
    ``decoded``; how many were computed (blocking)."""
    return day_cache.warm(conn, PREFIX, spans, now, SUMMARY, decoded)


def days(conn: sqlite3.Connection, spans: list[tuple[float, float]], now: float,
         decoded: day_cache.Decoded[CatalogDay]) -> list[CatalogDay]:
    """The summaries of ``spans`` (days, ascending), stored ones where current (blocking; the
    caller holds the connection)."""
    return day_cache.summaries(conn, PREFIX, spans, now, SUMMARY, decoded)
