"""The catalog's answers for statistics (:mod:`dispatch_server.statistics`): what was recorded in a
span of time, the gaps in it, and how the archive grew.

Plain rows, epoch seconds; each query is bounded by an index on a time column (the indexes are in
:data:`SCHEMA`, created with the catalog's own tables). A segment is at most
:data:`MAX_SEGMENT_S` long: the segment query reads by start time from that much before the span.
"""

from __future__ import annotations

from typing import NamedTuple

SCHEMA = """
CREATE INDEX IF NOT EXISTS segments_start ON segments(start);
CREATE INDEX IF NOT EXISTS segments_deleted_at ON segments(deleted_at) WHERE deleted=1;
CREATE INDEX IF NOT EXISTS gaps_start ON gaps(start);
"""
MAX_SEGMENT_S = 3600.0  # segments are cut every few seconds; an hour covers any keyframe spacing

SEGMENTS_SQL = ("SELECT r.unit_id, r.action_id, s.start, s.end, COALESCE(s.bytes, 0) FROM segments s "
                "JOIN recordings r ON r.id = s.recording_id "
                "WHERE s.start >= ? AND s.start < ? AND s.end > ? AND s.end > s.start")
GAPS_SQL = ("SELECT r.unit_id, r.action_id, g.start, g.end, COALESCE(g.cause, ''), "
            "COALESCE(g.seconds, g.end - g.start, 0) FROM gaps g JOIN recordings r ON r.id = g.recording_id "
            "WHERE g.start >= ? AND g.start < ?")
ARCHIVE_SQL = (
    "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=0), "
    "(SELECT COUNT(*) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=1 AND deleted_at >= ? AND deleted_at < ?)")


class SegmentSpan(NamedTuple):
    """A sealed segment (deleted ones too: they were recorded) with its recording's unit and action."""

    unit_id: str | None
    action_id: str | None
    start: float
    end: float
    bytes: int


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


def segments_args(since: float, until: float) -> tuple[float, ...]:
    return (since - MAX_SEGMENT_S, until, since)


def archive_args(since: float, until: float) -> tuple[float, ...]:
    return (since, until) * 3
