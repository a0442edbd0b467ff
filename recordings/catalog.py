"""The catalog of the evidence archive: a SQLite projection of the ledger for search and playback.

Nothing in the catalog is evidence. Every row is derived from ledger entries
(``docs/archive-format.md``) by :meth:`Catalog.sync`, which applies the entries after the last one
it applied and remembers that index, so a sync is idempotent and the whole file can be deleted and
rebuilt from the ledger alone (:meth:`Catalog.sync_from` does so by itself when the ledger is
shorter than the catalog or its entry at the catalog's last index is not the one applied).

Times are POSIX seconds in the tables and UTC ISO 8601 (:func:`utctime.iso_millis`) in the views. A
recording's *timeline* starts when it was opened (``server_time`` of ``recording_opened``): a
segment sits at ``offset_s`` on it, a gap from ``start - opened`` to ``end - opened``. Stills
(``snapshot_sealed``) have a table of their own (:mod:`recordings.still_catalog`).

Place search needs the units' GPS tracks, which live outside this package: callers pass a
:data:`TrackSource`. All methods block on SQLite (milliseconds); async callers use a thread. One
connection is shared under a lock, so calls from several threads serialise.

The same catalog, the same statements, can live in PostgreSQL instead of the file
(:mod:`recordings.catalog_postgres`): there every node of a cluster syncs its own part from its
own ledger, searches and statistics cover every node's archive, and what touches this node's
files (retention, deleted paths, the audit trail's ledger indexes) reads only its part.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from utctime import iso_millis, parse_iso_millis

from . import audit_catalog, catalog_postgres, catalog_stats, day_cache, still_catalog
from .catalog_stats import CatalogDay
from .still_catalog import StillQuery, StillRow

logger = logging.getLogger(__name__)

RATES = {"video": 90_000, "audio": 48_000}  # media clock rates of the ledger's ``pts`` figures
SYNC_CHUNK = 5000  # ledger entries read per step of sync_from
MAX_PLACE_CANDIDATES = 5000  # recordings whose tracks one place search may examine
MAX_TRACK_JOIN_S = 60.0  # consecutive fixes further apart are not joined by a line for place search
EARTH_RADIUS_M = 6371008.8

# (unit_id, since, until or None) -> [(ts, lat, lon), ...] oldest first, WGS-84 degrees, epoch seconds
TrackSource = Callable[[str, float, "float | None"], Sequence[tuple[float, float, float]]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY, unit_id TEXT, action_id TEXT, case_number TEXT, officers TEXT NOT NULL DEFAULT '[]',
    category TEXT, node TEXT, video_codec TEXT, audio_codec TEXT, opened_at REAL, closed_at REAL,
    state TEXT NOT NULL DEFAULT 'open', close_reason TEXT, end_cause TEXT, opened_index INTEGER, closed_index INTEGER);
CREATE INDEX IF NOT EXISTS recordings_unit ON recordings(unit_id, opened_at);
CREATE INDEX IF NOT EXISTS recordings_case ON recordings(case_number);
CREATE INDEX IF NOT EXISTS recordings_action ON recordings(action_id);
CREATE INDEX IF NOT EXISTS recordings_opened ON recordings(opened_at);
CREATE TABLE IF NOT EXISTS recording_officers (
    recording_id TEXT NOT NULL, officer TEXT NOT NULL, PRIMARY KEY (recording_id, officer));
CREATE INDEX IF NOT EXISTS officers_name ON recording_officers(officer);
CREATE TABLE IF NOT EXISTS segments (
    recording_id TEXT NOT NULL, seq INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT, bytes INTEGER,
    start REAL, end REAL, offset_s REAL, duration_s REAL, frames_video INTEGER, frames_audio INTEGER,
    recovered INTEGER NOT NULL DEFAULT 0, sealed_index INTEGER, deleted INTEGER NOT NULL DEFAULT 0,
    deleted_at REAL, deleted_reason TEXT, deleted_index INTEGER, PRIMARY KEY (recording_id, seq));
CREATE TABLE IF NOT EXISTS gaps (
    ledger_index INTEGER PRIMARY KEY, recording_id TEXT NOT NULL, start REAL, end REAL, cause TEXT, seconds REAL);
CREATE INDEX IF NOT EXISTS gaps_recording ON gaps(recording_id);
CREATE TABLE IF NOT EXISTS holds (
    case_number TEXT PRIMARY KEY, reason TEXT, actor TEXT, set_at REAL, ledger_index INTEGER);
""" + still_catalog.SCHEMA + audit_catalog.SCHEMA + catalog_stats.SCHEMA
TABLES = ("recordings", "recording_officers", "segments", "gaps", "holds", "snapshots", "operator_actions", "meta",
          *catalog_stats.TABLES)
# 2: stills; 3: operator actions. A catalog of another version is rebuilt from the ledger when opened.
SCHEMA_VERSION = "3"


class LedgerReader(Protocol):
    """What the catalog reads of :class:`recordings.ledger.Ledger`."""

    @property
    def size(self) -> int: ...

    def entries(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]: ...


class CatalogError(Exception):
    """Entries given to :meth:`Catalog.sync` skip indexes the catalog has not seen."""


@dataclass(frozen=True)
class Near:
    """Recordings whose unit's track passed within ``within_m`` metres of (lat, lon)."""

    lat: float
    lon: float
    within_m: float


@dataclass(frozen=True)
class Query:
    """Search criteria; every given one must hold. ``since``/``until`` select recordings whose span
    overlaps ``[since, until)`` (an open recording extends to the future)."""

    case_number: str | None = None
    action_id: str | None = None
    unit_id: str | None = None
    officer: str | None = None
    since: float | None = None
    until: float | None = None
    near: Near | None = None
    limit: int = 200


@dataclass(frozen=True)
class SegmentRow:
    recording_id: str
    seq: int
    path: str  # archive-relative, from the ledger
    sha256: str
    bytes: int
    offset_s: float
    duration_s: float
    deleted: bool
    elsewhere: str | None = None  # the node whose archive holds the file, when it is not this one


def _time(text: Any) -> float | None:
    try:
        return parse_iso_millis(text)
    except ValueError:
        return None


def segment_duration(data: Mapping[str, Any]) -> float:
    """Seconds from the segment's time 0 to its last frame, from the ledger's ``pts`` (else wall times)."""
    offset = float(data.get("offset_s") or 0.0)
    ends = []
    for kind, span in (data.get("pts") or {}).items():
        if kind in RATES and isinstance(span, list) and len(span) == 2 and isinstance(span[1], (int, float)):
            ends.append(span[1] / RATES[kind])
    if ends:
        return max(0.0, max(ends) - offset)
    start, end = _time(data.get("start")), _time(data.get("end"))
    return max(0.0, end - start) if start is not None and end is not None else 0.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine on the WGS-84 mean radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def track_passes_near(points: Sequence[tuple[float, float, float]], near: Near) -> bool:
    """True if a fix, or the straight line between two fixes at most ``MAX_TRACK_JOIN_S`` apart,
    comes within ``near.within_m`` of the point (local flat projection for the lines: exact enough
    at the distances a search asks about, well under the accuracy of a GPS fix)."""
    cos0 = math.cos(math.radians(near.lat))
    scale = math.radians(1) * EARTH_RADIUS_M

    def xy(lat: float, lon: float) -> tuple[float, float]:
        dlon = (lon - near.lon + 540.0) % 360.0 - 180.0
        return dlon * scale * cos0, (lat - near.lat) * scale

    prev: tuple[float, float, float] | None = None
    for ts, lat, lon in points:
        if distance_m(near.lat, near.lon, lat, lon) <= near.within_m:
            return True
        if prev is not None and 0 <= ts - prev[0] <= MAX_TRACK_JOIN_S:
            (ax, ay), (bx, by) = xy(prev[1], prev[2]), xy(lat, lon)
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            if length2 > 0:
                f = max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
                if math.hypot(ax + f * dx, ay + f * dy) <= near.within_m:
                    return True
        prev = (ts, lat, lon)
    return False


class Catalog:
    """The catalog file at ``path`` (created, WAL mode), or this node's part of the catalog in
    PostgreSQL (``path`` a :class:`recordings.catalog_postgres.Connection`). See the module docstring."""

    def __init__(self, path: Path | catalog_postgres.Connection) -> None:
        self._lock = threading.Lock()
        self._node: str | None = None  # on PostgreSQL: this node's name (its part)
        self._own_and = self._own_where = ""  # the SQL that keeps to this node's rows
        self._begin_write = "BEGIN"
        self._conn: Any
        if isinstance(path, catalog_postgres.Connection):
            self.path: Path | str = f"{catalog_postgres.SCHEMA_NAME} (PostgreSQL), node {path.node}"
            self._conn, self._node = path, path.node
            self._own_and, self._own_where = f" AND {catalog_postgres.OWN}", f" WHERE {catalog_postgres.OWN}"
            self._begin_write = "BEGIN IMMEDIATE"  # the catalog's writer lock before anything is read
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # a projection: a lost tail is re-synced
            self._conn.executescript(SCHEMA)
        self._live_bytes: tuple[int, int] | None = None  # (change stamp, bytes)
        self._stats_days = day_cache.Decoded(CatalogDay.read)
        self._next = int(self._meta("next_index") or 0)
        self._last_time = self._meta("last_time")
        if self._meta("schema") != SCHEMA_VERSION:
            if self._next:
                logger.warning("catalog %s was built by another version: rebuilding from the ledger", self.path)
            self.reset()

    # -- sync ---------------------------------------------------------------------------------

    @property
    def next_index(self) -> int:
        """Index of the first ledger entry not applied yet (= the number applied)."""
        return self._next

    def sync(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Apply the entries with ``index >= next_index`` in order, in one transaction; returns how
        many were applied. Raises :class:`CatalogError` (nothing applied) if they skip an index."""
        with self._lock:
            n = self._next
            last_time = self._last_time
            applied = 0
            self._conn.execute(self._begin_write)
            try:
                for e in entries:
                    index = e.get("index")
                    if not isinstance(index, int) or index < n:
                        continue
                    if index > n:
                        raise CatalogError(f"ledger entry {index} given but entries {n}..{index - 1} were not")
                    self._apply(e, index)
                    n, last_time, applied = n + 1, str(e.get("time", "")), applied + 1
                if applied:
                    self._set_meta("next_index", str(n))
                    self._set_meta("last_time", last_time or "")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._next, self._last_time = n, last_time
            return applied

    def sync_from(self, ledger: LedgerReader) -> int:
        """Bring the catalog up to ``ledger``, rebuilding it first if it was built from another
        ledger (shorter, or a different entry at the last applied index)."""
        if self._next > ledger.size or (self._next and not self._same_history(ledger)):
            logger.warning("catalog %s does not match the ledger (%d entries, catalog at %d): rebuilding",
                           self.path, ledger.size, self._next)
            self.reset()
        applied = 0
        while self._conn is not None and self._next < ledger.size:
            batch = ledger.entries(self._next, self._next + SYNC_CHUNK)
            if not batch:
                break
            applied += self.sync(batch)
        return applied

    def _same_history(self, ledger: LedgerReader) -> bool:
        last = ledger.entries(self._next - 1, self._next)
        return bool(last) and str(last[0].get("time", "")) == (self._last_time or "")

    def reset(self) -> None:
        """Forget everything (on PostgreSQL: this node's rows): the next sync starts from ledger entry 0."""
        with self._lock:
            self._conn.execute(self._begin_write)
            for table in TABLES:
                own = self._own_where if table not in catalog_stats.TABLES else ""
                self._conn.execute(f"DELETE FROM {table}{own}")
            self._set_meta("schema", SCHEMA_VERSION)
            self._conn.execute("COMMIT")
            self._next, self._last_time = 0, None

    def _apply(self, e: Mapping[str, Any], index: int) -> None:
        d = e.get("data")
        if not isinstance(d, dict):
            return
        kind, rid = e.get("type"), d.get("recording_id")
        c = self._conn
        try:
            if kind == "recording_opened" and isinstance(rid, str):
                officers = [str(o) for o in d.get("officers") or []]
                c.execute(
                    "INSERT OR REPLACE INTO recordings(id, unit_id, action_id, case_number, officers, category, node, "
                    "video_codec, audio_codec, opened_at, state, opened_index) VALUES (?,?,?,?,?,?,?,?,?,?,'open',?)",
                    (rid, d.get("unit_id"), d.get("action_id"), d.get("case_number"),
                     json.dumps(officers, ensure_ascii=False), d.get("category"), d.get("node"), d.get("video_codec"),
                     d.get("audio_codec"), _time(d.get("server_time")) or _time(e.get("time")), index))
                c.executemany("INSERT OR IGNORE INTO recording_officers(recording_id, officer) VALUES (?,?)",
                              [(rid, o) for o in officers])
            elif kind == "segment_sealed" and isinstance(rid, str):
                frames = d.get("frames") or {}
                c.execute(
                    "INSERT OR REPLACE INTO segments(recording_id, seq, path, sha256, bytes, start, end, offset_s, "
                    "duration_s, frames_video, frames_audio, recovered, sealed_index) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (rid, int(d["seq"]), str(d["path"]), d.get("sha256"), d.get("bytes"), _time(d.get("start")),
                     _time(d.get("end")), float(d.get("offset_s") or 0.0), segment_duration(d), frames.get("video"),
                     frames.get("audio"), 1 if d.get("recovered") else 0, index))
            elif kind == "gap" and isinstance(rid, str):
                c.execute("INSERT OR REPLACE INTO gaps(ledger_index, recording_id, start, end, cause, seconds) "
                          "VALUES (?,?,?,?,?,?)", (index, rid, _time(d.get("start")), _time(d.get("end")),
                                                   d.get("cause"), d.get("seconds")))
            elif kind == "recording_closed" and isinstance(rid, str):
                c.execute("UPDATE recordings SET state='closed', closed_at=?, close_reason=?, end_cause=?, "
                          "closed_index=? WHERE id=?",
                          (_time(d.get("server_time")) or _time(e.get("time")), d.get("reason"), d.get("end_cause"),
                           index, rid))
            elif kind == "segment_deleted" and isinstance(rid, str):
                c.execute("UPDATE segments SET deleted=1, deleted_at=?, deleted_reason=?, deleted_index=? "
                          "WHERE recording_id=? AND seq=?",
                          (_time(e.get("time")), d.get("reason"), index, rid, int(d["seq"])))
            elif kind == "retention_changed" and isinstance(rid, str) and isinstance(d.get("to"), str):
                c.execute("UPDATE recordings SET category=? WHERE id=?", (d["to"], rid))
            elif kind == "hold_set" and isinstance(d.get("case_number"), str):
                c.execute("INSERT OR REPLACE INTO holds(case_number, reason, actor, set_at, ledger_index) "
                          "VALUES (?,?,?,?,?)", (d["case_number"], d.get("reason"), e.get("actor"),
                                                 _time(e.get("time")), index))
            elif kind == "hold_released" and isinstance(d.get("case_number"), str):
                c.execute("DELETE FROM holds WHERE case_number=?", (d["case_number"],))
            elif kind == "snapshot_sealed":
                still_catalog.apply_sealed(c, d, index)
            elif kind == audit_catalog.ENTRY_TYPE:
                audit_catalog.apply(c, e, index)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("catalog: ledger entry %d (%s) not applied: %r", index, kind, exc)

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute(f"SELECT value FROM meta WHERE key=?{self._own_and}", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", (key, value))

    # -- reading --------------------------------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, tuple(args))
            cur.row_factory = sqlite3.Row
            rows: list[sqlite3.Row] = cur.fetchall()
            return rows

    _SUMMARY = (
        "SELECT r.*, "
        "(SELECT COUNT(*) FROM segments s WHERE s.recording_id=r.id AND s.deleted=0) AS live_segments, "
        "(SELECT COUNT(*) FROM segments s WHERE s.recording_id=r.id AND s.deleted=1) AS deleted_segments, "
        "(SELECT COALESCE(SUM(s.bytes), 0) FROM segments s WHERE s.recording_id=r.id AND s.deleted=0) AS live_bytes, "
        "(SELECT MAX(s.offset_s + s.duration_s) FROM segments s WHERE s.recording_id=r.id) AS media_end, "
        "(SELECT COUNT(*) FROM gaps g WHERE g.recording_id=r.id) AS gap_count, "
        "(SELECT COALESCE(SUM(g.seconds), 0) FROM gaps g WHERE g.recording_id=r.id) AS gap_s, "
        "(SELECT MAX(g.end) FROM gaps g WHERE g.recording_id=r.id) AS gaps_end, "
        "EXISTS(SELECT 1 FROM holds h WHERE h.case_number=r.case_number) AS held "
        "FROM recordings r"
    )

    @staticmethod
    def _summary(row: sqlite3.Row) -> dict[str, Any]:
        opened = row["opened_at"]
        ends = [row["media_end"] or 0.0]
        if row["gaps_end"] is not None and opened is not None:
            ends.append(row["gaps_end"] - opened)
        return {
            "id": row["id"], "unit_id": row["unit_id"], "action_id": row["action_id"],
            "case_number": row["case_number"], "officers": json.loads(row["officers"]), "category": row["category"],
            "node": row["node"], "codecs": {"video": row["video_codec"], "audio": row["audio_codec"]},
            "state": row["state"], "opened_at": iso_millis(opened) if opened is not None else None,
            "closed_at": iso_millis(row["closed_at"]) if row["closed_at"] is not None else None,
            "close_reason": row["close_reason"], "end_cause": row["end_cause"],
            "segment_count": row["live_segments"], "deleted_segments": row["deleted_segments"],
            "bytes": row["live_bytes"], "duration_s": round(max(ends), 3),
            "gap_count": row["gap_count"], "gap_s": round(row["gap_s"], 3), "held": bool(row["held"]),
        }

    def recording(self, recording_id: str) -> dict[str, Any] | None:
        """Summary plus ``segments`` and ``gaps`` (each on the recording's timeline), or None."""
        rows = self._rows(self._SUMMARY + " WHERE r.id=?", (recording_id,))
        if not rows:
            return None
        out = self._summary(rows[0])
        opened = rows[0]["opened_at"] or 0.0
        out["opened_ts"] = opened
        out["closed_ts"] = rows[0]["closed_at"]
        out["segments"] = [{
            "seq": s["seq"], "offset_s": s["offset_s"], "duration_s": round(s["duration_s"] or 0.0, 3),
            "start": iso_millis(s["start"]) if s["start"] is not None else None,
            "end": iso_millis(s["end"]) if s["end"] is not None else None,
            "sha256": s["sha256"], "bytes": s["bytes"],
            "frames": {"video": s["frames_video"], "audio": s["frames_audio"]},
            "recovered": bool(s["recovered"]), "deleted": bool(s["deleted"]), "deleted_reason": s["deleted_reason"],
        } for s in self._rows("SELECT * FROM segments WHERE recording_id=? ORDER BY seq", (recording_id,))]
        out["gaps"] = [{
            "start": iso_millis(g["start"]) if g["start"] is not None else None,
            "end": iso_millis(g["end"]) if g["end"] is not None else None,
            "start_s": round(g["start"] - opened, 3) if g["start"] is not None else None,
            "end_s": round(g["end"] - opened, 3) if g["end"] is not None else None,
            "cause": g["cause"], "seconds": g["seconds"],
        } for g in self._rows("SELECT * FROM gaps WHERE recording_id=? ORDER BY start", (recording_id,))]
        return out

    def action_recordings(self, action_id: str) -> list[dict[str, Any]]:
        """Every recording of the action, oldest first, with its segments not deleted (by ``seq``:
        ``seq``, ``path``, ``sha256``, ``bytes``, ``start``, ``end``, ``offset_s`` and the
        ``ledger_index`` of its ``segment_sealed`` entry), how many were deleted, its gaps
        (``start``, ``end``, ``cause``) and the ledger indexes of its ``recording_opened`` and
        ``recording_closed`` entries (``opened_index``, ``closed_index``): what an export, a
        completeness statement and a per-action report need, without reading the ledger. Only this
        node's archive: its files and ledger indexes are what an export packages and proves."""
        out = []
        for r in self._rows(f"SELECT * FROM recordings WHERE action_id=?{self._own_and} ORDER BY opened_at, id",
                            (action_id,)):
            segs = self._rows("SELECT * FROM segments WHERE recording_id=? ORDER BY seq", (r["id"],))
            gaps = self._rows("SELECT * FROM gaps WHERE recording_id=? ORDER BY start", (r["id"],))
            out.append({
                "recording_id": r["id"], "unit_id": r["unit_id"],
                "opened": iso_millis(r["opened_at"]) if r["opened_at"] is not None else None,
                "closed": iso_millis(r["closed_at"]) if r["closed_at"] is not None else None,
                "end_cause": r["end_cause"], "close_reason": r["close_reason"],
                "opened_index": r["opened_index"], "closed_index": r["closed_index"],
                "segments": [{"seq": s["seq"], "path": s["path"], "sha256": s["sha256"], "bytes": s["bytes"],
                              "start": iso_millis(s["start"]) if s["start"] is not None else None,
                              "end": iso_millis(s["end"]) if s["end"] is not None else None,
                              "offset_s": s["offset_s"] or 0.0, "ledger_index": s["sealed_index"]}
                             for s in segs if not s["deleted"]],
                "deleted_segments": sum(1 for s in segs if s["deleted"]),
                "gaps": [{"start": iso_millis(g["start"]) if g["start"] is not None else None,
                          "end": iso_millis(g["end"]) if g["end"] is not None else None, "cause": g["cause"]}
                         for g in gaps],
            })
        return out

    def segment(self, recording_id: str, seq: int) -> SegmentRow | None:
        rows = self._rows("SELECT * FROM segments WHERE recording_id=? AND seq=?", (recording_id, seq))
        if not rows:
            return None
        s = rows[0]
        return SegmentRow(s["recording_id"], s["seq"], s["path"], s["sha256"] or "", s["bytes"] or 0,
                          s["offset_s"] or 0.0, s["duration_s"] or 0.0, bool(s["deleted"]), self._elsewhere(s))

    def _elsewhere(self, row: Any) -> str | None:
        """The node whose archive holds the file of ``row``, unless it is this one."""
        return None if self._node is None or row["ledger_node"] == self._node else str(row["ledger_node"])

    def search(self, query: Query, tracks: TrackSource | None = None) -> list[dict[str, Any]]:
        """Recordings matching ``query``, newest first, at most ``query.limit``. A place criterion
        needs ``tracks``; it examines at most ``MAX_PLACE_CANDIDATES`` recordings."""
        where, args = [], []  # type: list[str], list[Any]
        for column, value in (("r.case_number", query.case_number), ("r.action_id", query.action_id),
                              ("r.unit_id", query.unit_id)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if query.officer is not None:
            where.append("r.id IN (SELECT recording_id FROM recording_officers WHERE officer=?)")
            args.append(query.officer)
        if query.until is not None:
            where.append("r.opened_at < ?")
            args.append(query.until)
        if query.since is not None:
            where.append("(r.closed_at IS NULL OR r.closed_at >= ?)")
            args.append(query.since)
        sql = self._SUMMARY + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.opened_at DESC, r.id"
        if query.near is None:
            return [self._summary(r) for r in self._rows(sql + " LIMIT ?", (*args, query.limit))]
        if tracks is None:
            raise ValueError("a place search needs a track source")
        found = []
        for row in self._rows(sql + " LIMIT ?", (*args, MAX_PLACE_CANDIDATES)):
            if row["unit_id"] is None or row["opened_at"] is None:
                continue
            points = tracks(row["unit_id"], row["opened_at"], row["closed_at"])
            if track_passes_near(points, query.near):
                found.append(self._summary(row))
                if len(found) >= query.limit:
                    break
        return found

    # -- stills -----------------------------------------------------------------------------------

    def snapshots(self, query: StillQuery) -> list[dict[str, Any]]:
        """Stills matching ``query``, newest first (by the server's ``received_at``), at most
        ``query.limit``; each with ``held`` (its case is under a legal hold)."""
        return still_catalog.views(self._rows(*still_catalog.search_sql(query)))

    def snapshot(self, snapshot_id: str) -> StillRow | None:
        rows = self._rows(*still_catalog.one_sql(snapshot_id))
        found = still_catalog.still_row(rows)
        return found if found is None else dataclasses.replace(found, elsewhere=self._elsewhere(rows[0]))

    # -- the operators' audit trail -----------------------------------------------------------------

    def operator_actions(self, where: Sequence[str] = (), args: Sequence[Any] = (),
                         limit: int = 500) -> list[dict[str, Any]]:
        """The audit trail's rows the ledger holds, newest first (``n`` descending), that meet
        every SQL condition of ``where`` (over the columns of :data:`audit_catalog.SCHEMA`)."""
        return [audit_catalog.view(r) for r in self._rows(*audit_catalog.search_sql(where, args, limit))]

    def operator_action_seqs(self, after_index: int) -> list[tuple[int, int]]:
        """``(seq, ledger_index)`` of every operator action after ledger index ``after_index`` (of this
        node's ledger)."""
        return [(r[0], r[1]) for r in self._rows(
            f"SELECT seq, ledger_index FROM operator_actions WHERE ledger_index > ?{self._own_and} "
            "ORDER BY ledger_index", (after_index,))]

    def last_operator_action_seq(self) -> int:
        """The last ``seq`` this node's ledger holds (0: none)."""
        return int(self._rows(f"SELECT COALESCE(MAX(seq), 0) FROM operator_actions{self._own_where}")[0][0])

    # -- statistics (recordings.catalog_stats) -------------------------------------------------------

    def stats_days(self, days: Sequence[tuple[float, float]], now: float) -> list[CatalogDay]:
        """What was recorded each of ``days`` (ascending ``[start, end)`` spans; see
        :mod:`recordings.catalog_stats`), from the kept summaries where current."""
        with self._lock:
            return catalog_stats.days(self._conn, list(days), now, self._stats_days)

    def warm_stats_days(self, days: Sequence[tuple[float, float]], now: float) -> int:
        """Compute and keep the summaries of ``days`` not current yet (see :meth:`stats_days`); how many."""
        with self._lock:
            return catalog_stats.warm(self._conn, list(days), now, self._stats_days)

    def earliest_segment(self) -> float | None:
        """When the oldest segment began (None: no segment)."""
        with self._lock:
            found = self._conn.execute(catalog_stats.EARLIEST_SQL).fetchone()[0]
            return None if found is None else float(found)

    def live_bytes(self) -> int:
        """The size of the archive now: the segments not deleted (summed again only after a change)."""
        with self._lock:
            stamp = day_cache.latest_stamp(self._conn, catalog_stats.PREFIX)
            if self._live_bytes is None or self._live_bytes[0] != stamp:
                self._live_bytes = (stamp, int(self._conn.execute(catalog_stats.LIVE_BYTES_SQL).fetchone()[0]))
            return self._live_bytes[1]

    # -- holds and retention ----------------------------------------------------------------------

    def holds(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT h.*, (SELECT COUNT(*) FROM recordings r WHERE r.case_number=h.case_number) AS n "
                          "FROM holds h ORDER BY h.set_at")
        return [{"case_number": h["case_number"], "reason": h["reason"], "set_by": h["actor"],
                 "set_at": iso_millis(h["set_at"]) if h["set_at"] is not None else None, "recordings": h["n"]}
                for h in rows]

    def held_cases(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT case_number FROM holds")}

    def retention_view(self) -> tuple[list[dict[str, Any]], int]:
        """Closed recordings of this node's archive that still have segments (id, category,
        case_number, closed_at, segments: [{seq, path, sha256, bytes}]) and the number of segments
        not deleted archive-wide."""
        recs: dict[str, dict[str, Any]] = {}
        for r in self._rows("SELECT id, category, case_number, closed_at FROM recordings WHERE state='closed' "
                            f"AND closed_at IS NOT NULL{self._own_and} ORDER BY closed_at"):
            recs[r["id"]] = {"id": r["id"], "category": r["category"], "case_number": r["case_number"],
                             "closed_at": r["closed_at"], "segments": []}
        for s in self._rows("SELECT recording_id, seq, path, sha256, bytes FROM segments "
                            f"WHERE deleted=0{self._own_and} ORDER BY recording_id, seq"):
            if s["recording_id"] in recs:
                recs[s["recording_id"]]["segments"].append(
                    {"seq": s["seq"], "path": s["path"], "sha256": s["sha256"], "bytes": s["bytes"] or 0})
        live = self._rows(f"SELECT COUNT(*) FROM segments WHERE deleted=0{self._own_and}")[0][0]
        return [r for r in recs.values() if r["segments"]], int(live)

    def deleted_paths(self) -> list[str]:
        """Archive-relative paths of every segment this node's ledger records as deleted."""
        return [r[0] for r in self._rows(f"SELECT path FROM segments WHERE deleted=1{self._own_and}")]

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
