"""The instructions and alerts of one day, summed up for statistics and kept (:mod:`recordings.day_cache`).

A day's summary holds, per **cell** (an action and a unit: what every grouping of
:mod:`dispatch_server.statistics` is made of), the instructions queued that day counted by type
and state, their delivery and acknowledgement latencies (every value, so that percentiles stay
exact), the alerts raised that day counted by kind (still open, escalated) and the SOS →
acknowledged times. It is msgpack of numpy arrays' bytes; :class:`DaySummary` reads it back.

An item belongs to a day by its ``created_at``; the triggers of :data:`SCHEMA` mark the hour of
every instruction and alert written, changed or deleted, so a stored day is redone when one of
its items changes (an instruction acknowledged late, an alert acknowledged the next morning).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import msgpack
import numpy as np

from recordings import day_cache

from . import dialect

PREFIX = "stats"
_MARKED = (("instructions", ("created_at", "action_id", "unit_id", "type", "state", "delivered_at", "acknowledged_at")),
           ("alerts", ("created_at", "doc", "state")))
SCHEMA = day_cache.schema(PREFIX) + "".join(
    day_cache.change_triggers(PREFIX, table, ("ROW.created_at",), columns) for table, columns in _MARKED)
SCHEMA_POSTGRES = dialect.ddl(day_cache.schema(PREFIX)) + "".join(
    day_cache.change_triggers_postgres(PREFIX, table, ("ROW.created_at",), columns, dialect.WRITE_LOCK)
    for table, columns in _MARKED)

_INSTRUCTIONS = (
    "SELECT COALESCE(action_id, ''), COALESCE(unit_id, ''), type, state, "
    "CASE WHEN delivered_at IS NOT NULL THEN MAX(0, delivered_at - created_at) END, "
    "CASE WHEN delivered_at IS NOT NULL AND acknowledged_at IS NOT NULL "
    "THEN MAX(0, acknowledged_at - delivered_at) END "
    "FROM instructions WHERE created_at >= ? AND created_at < ?")
_ALERTS = (
    "SELECT COALESCE(json_extract(doc, '$.action_id'), ''), COALESCE(json_extract(doc, '$.unit_id'), ''), "
    "json_extract(doc, '$.kind'), state = 'open', COALESCE(json_extract(doc, '$.escalated') = 1, 0), "
    "CASE WHEN json_extract(doc, '$.kind') = 'sos' AND json_extract(doc, '$.acknowledged_at') IS NOT NULL "
    "THEN MAX(0, json_extract(doc, '$.acknowledged_at') - created_at) END "
    "FROM alerts WHERE created_at >= ? AND created_at < ?")
dialect.variant(_ALERTS, (  # typed JSON values: SQLite's json_extract gives numbers and 1 for true
    "SELECT COALESCE(doc::jsonb->>'action_id', ''), COALESCE(doc::jsonb->>'unit_id', ''), doc::jsonb->>'kind', "
    "(state = 'open')::INT, COALESCE(doc::jsonb->'escalated' IN ('true'::jsonb, '1'::jsonb), false)::INT, "
    "CASE WHEN doc::jsonb->>'kind' = 'sos' AND jsonb_typeof(doc::jsonb->'acknowledged_at') = 'number' "
    "THEN GREATEST(0, (doc::jsonb->>'acknowledged_at')::DOUBLE PRECISION - created_at) END "
    "FROM alerts WHERE created_at >= ? AND created_at < ?"))


def _values(by_cell: dict[int, list[float]], cells: int) -> dict[str, bytes]:
    counts = np.array([len(by_cell.get(c, ())) for c in range(cells)], dtype=np.int32)
    values = np.array([x for c in range(cells) for x in by_cell.get(c, ())], dtype=np.float64)
    return {"n": counts.tobytes(), "x": values.tobytes()}


def compute(conn: sqlite3.Connection, start: float, end: float) -> bytes:
    """The summary of ``[start, end)`` (blocking; :func:`recordings.day_cache.summaries` calls it)."""
    cells: dict[tuple[str, str], int] = {}
    codes: dict[tuple[str, str], int] = {}
    counted: dict[tuple[int, int], int] = defaultdict(int)
    delivery: dict[int, list[float]] = defaultdict(list)
    ack: dict[int, list[float]] = defaultdict(list)
    for action, unit, typ, state, delivered, acked in conn.execute(_INSTRUCTIONS, (start, end)):
        c = cells.setdefault((action, unit), len(cells))
        counted[c, codes.setdefault((typ, state), len(codes))] += 1
        if delivered is not None:
            delivery[c].append(delivered)
        if acked is not None:
            ack[c].append(acked)
    kinds: dict[str, int] = {}
    alerts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    sos: dict[int, list[float]] = defaultdict(list)
    for action, unit, kind, still_open, escalated, sos_ack in conn.execute(_ALERTS, (start, end)):
        c = cells.setdefault((action, unit), len(cells))
        row = alerts[c, kinds.setdefault(str(kind), len(kinds))]
        row[0] += 1
        row[1] += int(still_open or 0)
        row[2] += int(escalated or 0)
        if sos_ack is not None:
            sos[c].append(sos_ack)
    n = len(cells)
    keys = list(counted)
    akeys = list(alerts)
    body: bytes = msgpack.packb({
        "cells": [list(k) for k in cells],
        "codes": [list(k) for k in codes],
        "ins": {"cell": np.array([k[0] for k in keys], np.int32).tobytes(),
                "code": np.array([k[1] for k in keys], np.int32).tobytes(),
                "n": np.array([counted[k] for k in keys], np.int64).tobytes()},
        "delivery": _values(delivery, n), "ack": _values(ack, n), "sos": _values(sos, n),
        "kinds": list(kinds),
        "alerts": {"cell": np.array([k[0] for k in akeys], np.int32).tobytes(),
                   "kind": np.array([k[1] for k in akeys], np.int32).tobytes(),
                   "n": np.array([alerts[k] for k in akeys], np.int64).reshape(-1, 3).tobytes()},
    })
    return body


SUMMARY = day_cache.Summary(1, compute)


@dataclass(frozen=True)
class Values:
    """Values by cell: ``n[c]`` of them for cell ``c``, one after the other in ``x``."""

    n: np.ndarray
    x: np.ndarray

    @classmethod
    def read(cls, d: dict[str, bytes]) -> "Values":
        return cls(np.frombuffer(d["n"], np.int32), np.frombuffer(d["x"], np.float64))


@dataclass(frozen=True)
class DaySummary:
    """One day's summary read back (see :func:`compute`)."""

    start: float  # the day's
    stamp: int | None  # its version (recordings.day_cache); None while the day runs
    cells: list[tuple[str, str]]  # (action id or "", unit id or "")
    codes: list[tuple[str, str]]  # (instruction type, state)
    ins_cell: np.ndarray
    ins_code: np.ndarray
    ins_n: np.ndarray
    delivery: Values
    ack: Values
    sos: Values
    kinds: list[str]
    alert_cell: np.ndarray
    alert_kind: np.ndarray
    alert_n: np.ndarray  # rows (count, still open, escalated)

    @classmethod
    def read(cls, start: float, stamp: int | None, body: bytes) -> "DaySummary":
        d: dict[str, Any] = msgpack.unpackb(body)
        return cls(start, stamp, [tuple(c) for c in d["cells"]], [tuple(c) for c in d["codes"]],
                   np.frombuffer(d["ins"]["cell"], np.int32), np.frombuffer(d["ins"]["code"], np.int32),
                   np.frombuffer(d["ins"]["n"], np.int64), Values.read(d["delivery"]), Values.read(d["ack"]),
                   Values.read(d["sos"]), list(d["kinds"]), np.frombuffer(d["alerts"]["cell"], np.int32),
                   np.frombuffer(d["alerts"]["kind"], np.int32),
                   np.frombuffer(d["alerts"]["n"], np.int64).reshape(-1, 3))


def warm(conn: sqlite3.Connection, spans: Sequence[tuple[float, float]], now: float,
         decoded: day_cache.Decoded[DaySummary]) -> int:
    """Compute and store the summaries of ``spans`` that are not current, read them all into
    ``decoded``; how many were computed (blocking)."""
    return day_cache.warm(conn, PREFIX, spans, now, SUMMARY, decoded)


def earliest(conn: sqlite3.Connection) -> float | None:
    """When the oldest instruction or alert was created (None: there is none)."""
    row = conn.execute("SELECT (SELECT MIN(created_at) FROM instructions), (SELECT MIN(created_at) FROM alerts)")
    found = [float(x) for x in row.fetchone() if x is not None]
    return min(found) if found else None


def days(conn: sqlite3.Connection, spans: Sequence[tuple[float, float]], now: float,
         decoded: day_cache.Decoded[DaySummary]) -> list[DaySummary]:
    """The summaries of ``spans`` (days, ascending), stored ones where current (blocking; run it
    through :meth:`Database.read`)."""
    return day_cache.summaries(conn, PREFIX, spans, now, SUMMARY, decoded)
