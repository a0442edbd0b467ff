"""Rule breaks of the rules of procedure (流程预警) and the spoken notices, as they are kept.

A :class:`ProcedureBreak` is one stretch of a running action during which one rule did not hold:
``min_recorders`` (fewer units recording at once than the action type requires; ``unit_id`` is
None), ``record_before_start`` (a team unit not recording when the action started), ``stay_in_area``
(a team unit outside the action's area) or ``notice`` (the spoken notice not marked within the
allowed time; ``unit_id`` None). It opens when the rule breaks (``ended_at`` None) and closes
when the rule holds again or the action ends. Times are epoch seconds.

A :class:`Notice` is the spoken notice (为保护您的合法权益，本次执行全程录音录像) as marked by an
officer on a field unit: the first mark of an action counts, later marks leave it as it is.

:class:`ProcedureBreakStore` keeps both in the ``procedure_breaks`` and ``procedure_notices``
tables. Its writes take ``also(connection)``, run in the same transaction (the audit entry), as
:meth:`dispatch_server.actions.ActionStore.save` does. The per-action report and the statistics
read breaks through :meth:`~ProcedureBreakStore.for_action` and :meth:`~ProcedureBreakStore.between`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from utctime import iso_seconds

from .stores.database import Database

RULES = ("min_recorders", "record_before_start", "stay_in_area", "notice")
Also = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class ProcedureBreak:
    id: str
    action_id: str
    rule: str  # one of RULES
    unit_id: str | None  # the unit concerned; None for rules of the whole action
    started_at: float
    ended_at: float | None  # None while the break is open
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"running": 1, "required": 2}

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "action_id": self.action_id, "rule": self.rule, "unit_id": self.unit_id,
                "started_at": iso_seconds(self.started_at), "ended_at": iso_seconds(self.ended_at),
                "detail": dict(self.detail)}


@dataclass(frozen=True)
class Notice:
    action_id: str
    notice_at: float  # when the officer marked it
    marked_by: str  # who marked it: the officer's name as the unit sent it, else "unit:<id>"
    unit_id: str  # the field unit it was marked on

    def view(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "notice_at": iso_seconds(self.notice_at),
                "marked_by": self.marked_by, "unit_id": self.unit_id}


_COLUMNS = "id, action_id, rule, unit_id, started_at, ended_at, detail"


def _break(row: tuple[Any, ...]) -> ProcedureBreak:
    bid, action_id, rule, unit_id, started_at, ended_at, detail = row
    return ProcedureBreak(bid, action_id, rule, unit_id, started_at, ended_at, json.loads(detail))


def _nothing(conn: sqlite3.Connection) -> None:
    return None


class ProcedureBreakStore:
    """The ``procedure_breaks`` and ``procedure_notices`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # breaks -------------------------------------------------------------------------------
    async def record(self, brk: ProcedureBreak, also: Also = _nothing) -> ProcedureBreak:
        """Store ``brk`` as it is (insert, or replace the break of the same id)."""
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO procedure_breaks({_COLUMNS}) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET ended_at=excluded.ended_at, detail=excluded.detail",
                (brk.id, brk.action_id, brk.rule, brk.unit_id, brk.started_at, brk.ended_at,
                 json.dumps(brk.detail, ensure_ascii=False)))
            also(conn)

        await self._db.write(write)
        return brk

    async def open(self, action_id: str, rule: str, unit_id: str | None, started_at: float,
                   detail: dict[str, Any] | None = None, also: Also = _nothing) -> tuple[ProcedureBreak, bool]:
        """Open a break of ``rule`` for ``unit_id`` in the action: ``(break, True)``; when one is
        already open for the same action, rule and unit, ``(that break, False)`` and nothing is
        written (so an alert is not repeated for it)."""
        if rule not in RULES:
            raise ValueError(f"unknown procedure rule {rule!r}")
        brk = ProcedureBreak(f"pb-{secrets.token_hex(6)}", action_id, rule, unit_id, started_at, None,
                             dict(detail or {}))

        def write(conn: sqlite3.Connection) -> tuple[ProcedureBreak, bool]:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM procedure_breaks WHERE action_id=? AND rule=? AND unit_id IS ? "
                "AND ended_at IS NULL", (action_id, rule, unit_id)).fetchone()
            if row is not None:
                return _break(row), False
            conn.execute(f"INSERT INTO procedure_breaks({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                         (brk.id, action_id, rule, unit_id, started_at, None,
                          json.dumps(brk.detail, ensure_ascii=False)))
            also(conn)
            return brk, True

        return await self._db.write(write)

    async def close(self, break_id: str, ended_at: float, also: Also = _nothing) -> ProcedureBreak | None:
        """Close an open break at ``ended_at``: the closed break, or None when it was not open
        (unknown or already closed; nothing is written then)."""
        def write(conn: sqlite3.Connection) -> ProcedureBreak | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM procedure_breaks WHERE id=? AND ended_at IS NULL",
                               (break_id,)).fetchone()
            if row is None:
                return None
            brk = _break(row)
            closed = replace(brk, ended_at=max(ended_at, brk.started_at))
            conn.execute("UPDATE procedure_breaks SET ended_at=? WHERE id=?", (closed.ended_at, break_id))
            also(conn)
            return closed

        return await self._db.write(write)

    async def open_breaks(self, action_id: str | None = None) -> list[ProcedureBreak]:
        """The breaks still open (of one action, or of all), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM procedure_breaks WHERE ended_at IS NULL"
        args: tuple[Any, ...] = ()
        if action_id is not None:
            sql, args = sql + " AND action_id=?", (action_id,)
        rows = await self._db.run(self._db.query, sql + " ORDER BY started_at, id", args)
        return [_break(r) for r in rows]

    async def for_action(self, action_id: str) -> list[ProcedureBreak]:
        """Every break of the action, open and closed, oldest first."""
        rows = await self._db.run(self._db.query, f"SELECT {_COLUMNS} FROM procedure_breaks WHERE action_id=? "
                                  "ORDER BY started_at, id", (action_id,))
        return [_break(r) for r in rows]

    async def between(self, start: float, end: float) -> list[ProcedureBreak]:
        """Every break that overlaps ``[start, end)`` (an open one runs on), oldest first."""
        rows = await self._db.run(self._db.query, f"SELECT {_COLUMNS} FROM procedure_breaks WHERE started_at < ? "
                                  "AND (ended_at IS NULL OR ended_at > ? OR started_at >= ?) "
                                  "ORDER BY started_at, id", (end, start, start))
        return [_break(r) for r in rows]

    # notices ------------------------------------------------------------------------------
    async def mark_notice(self, notice: Notice, also: Also = _nothing) -> tuple[Notice, bool]:
        """Record the notice of an action: ``(notice, True)``; when the action already has one,
        ``(the first, False)`` and nothing is written."""
        def write(conn: sqlite3.Connection) -> tuple[Notice, bool]:
            row = conn.execute("SELECT action_id, notice_at, marked_by, unit_id FROM procedure_notices "
                               "WHERE action_id=?", (notice.action_id,)).fetchone()
            if row is not None:
                return Notice(*row), False
            conn.execute("INSERT INTO procedure_notices(action_id, notice_at, marked_by, unit_id) VALUES (?,?,?,?)",
                         (notice.action_id, notice.notice_at, notice.marked_by, notice.unit_id))
            also(conn)
            return notice, True

        return await self._db.write(write)

    async def notice(self, action_id: str) -> Notice | None:
        rows = await self._db.run(self._db.query, "SELECT action_id, notice_at, marked_by, unit_id "
                                  "FROM procedure_notices WHERE action_id=?", (action_id,))
        return Notice(*rows[0]) if rows else None

    async def notices_between(self, start: float, end: float) -> list[Notice]:
        """Notices marked in ``[start, end)``, oldest first."""
        rows = await self._db.run(self._db.query, "SELECT action_id, notice_at, marked_by, unit_id "
                                  "FROM procedure_notices WHERE notice_at >= ? AND notice_at < ? ORDER BY notice_at",
                                  (start, end))
        return [Notice(*r) for r in rows]


# How a break reads in a completeness statement and a report: (Chinese, English), by rule.
def _min_recorders_text(detail: dict[str, Any]) -> tuple[str, str]:
    running, required = int(detail.get("running", 0)), int(detail.get("required", 2))
    if running == 0:
        return f"无记录仪在录（要求至少 {required} 台）", f"no recorder running (at least {required} required)"
    if running == 1:
        return (f"仅一台记录仪在录（要求至少 {required} 台）",
                f"only one recorder running (at least {required} required)")
    return (f"仅 {running} 台记录仪在录（要求至少 {required} 台）",
            f"only {running} recorders running (at least {required} required)")


def describe(brk: ProcedureBreak, zone: ZoneInfo) -> tuple[str, str]:
    """The break as a line of a completeness statement, times in the court's zone ``zone``:
    ``("10:02:11–10:07:40 仅一台记录仪在录（要求至少 2 台）", "10:02:11–10:07:40 only one recorder
    running (at least 2 required)")``; an open break reads ``10:02:11–（未结束）`` / ``10:02:11– (ongoing)``."""
    unit = brk.unit_id or ""
    if brk.rule == "min_recorders":
        zh, en = _min_recorders_text(brk.detail)
    elif brk.rule == "record_before_start":
        zh, en = f"行动开始时单位 {unit} 未在录像", f"unit {unit} not recording when the action started"
    elif brk.rule == "stay_in_area":
        zh, en = f"单位 {unit} 不在行动区域内", f"unit {unit} outside the action's area"
    else:
        minutes = f"{float(brk.detail.get('within_s', 0)) / 60:g}"
        zh, en = (f"开始后 {minutes} 分钟内未标记告知（全程录音录像告知）",
                  f"spoken notice not marked within {minutes} min of the start")

    def hms(ts: float) -> str:
        return datetime.fromtimestamp(ts, zone).strftime("%H:%M:%S")

    start = hms(brk.started_at)
    if brk.ended_at is None:
        return f"{start}–（未结束） {zh}", f"{start}– (ongoing) {en}"
    return f"{start}–{hms(brk.ended_at)} {zh}", f"{start}–{hms(brk.ended_at)} {en}"
