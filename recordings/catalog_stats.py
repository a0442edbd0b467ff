"""The catalog's answers for statistics (:mod:`dispatch_server.statistics`): how long was
recorded in a span of time, by group; what each unit recorded (its sealed segments joined into
spans); the gaps; and how the archive grew.

Plain rows, epoch seconds. Each query reads segments through the covering index in
:data:`SCHEMA` (created with the catalog's own tables), from :data:`MAX_SEGMENT_S` before the span
(no segment is longer). Groups come as ``keys``: ``(action_id, key)`` pairs (an
action may be in several groups); a segment is in the groups of its recording's action, or in the
group ``""`` when it has none. With ``by_unit`` the group is the recording's unit; with neither, one
group ``"*"`` (the totals). The pairs live in a temporary table of the connection (a join on it
uses its key; one on ``json_each`` would read every pair for every segment).
"""

from __future__ import annotations

from typing import Any, NamedTuple

SCHEMA = """
CREATE INDEX IF NOT EXISTS segments_span ON segments(start, end, recording_id, bytes);
CREATE INDEX IF NOT EXISTS segments_deleted_at ON segments(deleted_at) WHERE deleted=1;
CREATE INDEX IF NOT EXISTS segments_live_bytes ON segments(bytes) WHERE deleted=0;
CREATE INDEX IF NOT EXISTS gaps_start ON gaps(start);
"""
MAX_SEGMENT_S = 3600.0  # segments are cut every few seconds; an hour covers any keyframe spacing

_IN_SPAN = "s.start >= ? AND s.start < ? AND s.end > ? AND s.end > s.start"
def keys_table(name: str) -> str:
    return (f"CREATE TEMP TABLE IF NOT EXISTS {name} (action_id TEXT NOT NULL, key TEXT NOT NULL, "
            "PRIMARY KEY (action_id, key)) WITHOUT ROWID")

GAPS_SQL = ("SELECT r.unit_id, r.action_id, g.start, g.end, COALESCE(g.cause, ''), "
            "COALESCE(g.seconds, g.end - g.start, 0) FROM gaps g JOIN recordings r ON r.id = g.recording_id "
            "WHERE g.start >= ? AND g.start < ?")
# Each unit's segments (the caller joins them into spans).
SPANS_SQL = ("SELECT r.unit_id, s.start, s.end FROM segments s JOIN recordings r ON r.id = s.recording_id "
             f"WHERE {_IN_SPAN} AND r.unit_id IS NOT NULL")
ARCHIVE_SQL = (
    "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=0), "
    "(SELECT COUNT(*) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE start >= ? AND start < ?), "
    "(SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE deleted=1 AND deleted_at >= ? AND deleted_at < ?)")


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


def span_args(since: float, until: float) -> tuple[float, ...]:
    return (since - MAX_SEGMENT_S, until, since)


def recorded_sql(since: float, until: float, table: str | None, by_unit: bool) -> tuple[str, tuple[Any, ...]]:
    """Seconds recorded inside ``[since, until)`` by group: rows ``(key, seconds)``; grouped through
    the temporary table ``table`` of pairs."""
    clip = "SUM(MIN(s.end, ?) - MAX(s.start, ?))"
    base = "FROM segments s JOIN recordings r ON r.id = s.recording_id"
    if by_unit:
        return (f"SELECT COALESCE(r.unit_id, ''), {clip} {base} WHERE {_IN_SPAN} GROUP BY 1",
                (until, since, *span_args(since, until)))
    if table is None:
        return f"SELECT '*', {clip} {base} WHERE {_IN_SPAN}", (until, since, *span_args(since, until))
    return (f"SELECT COALESCE(k.key, ''), {clip} {base} LEFT JOIN temp.{table} k ON k.action_id = r.action_id "
            f"WHERE {_IN_SPAN} GROUP BY 1", (until, since, *span_args(since, until)))


def archive_args(since: float, until: float) -> tuple[float, ...]:
    return (since, until) * 3
