"""Alerts to the command room: SOS, units dropping out of a running action, overdue acknowledgements.

Every alert is stored, written to the audit trail and pushed to consoles (``alert``). An open
alert nobody acknowledges within ``escalate_after_s`` is escalated once (``alert_update``).
At most one open alert per (unit, kind) exists for the automatic kinds, so a flapping link does
not bury the operator; SOS always raises a new alert.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import secrets
import time
from functools import partial
from typing import Any, Awaitable, Callable, cast

from utctime import iso_seconds

from .audit import AuditTrail
from .auth import Person
from .errors import Conflict, NotFound
from .metrics import Metrics
from .stores.database import Database

logger = logging.getLogger(__name__)

# Each alert carries ``code`` (its kind: the console's catalogue has a text for each) and ``params``
# (the values that text names: unit_id, case_number, ...); ``message`` is the English sentence for
# logs and API clients.
KINDS = ("sos", "unit_offline", "stopped_publishing", "ack_overdue", "geofence_exit", "geofence_enter",
         "recording_degraded", "recording_resumed", "retention_halted",
         # 流程预警 (compliance.py): a rule of procedure broke in a running action
         "procedure_min_recorders", "procedure_record_before_start", "procedure_stay_in_area", "procedure_notice")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


def view(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    # Alerts stored before codes existed: their kind is their code.
    out.setdefault("code", doc.get("kind"))
    out.setdefault("params", {"unit_id": doc.get("unit_id"), "case_number": doc.get("case_number")})
    for k in ("created_at", "acknowledged_at", "escalated_at"):
        out[k] = iso_seconds(out.get(k))
    return out


class AlertService:
    def __init__(self, db: Database, audit: AuditTrail, emit: Emit, escalate_after_s: float,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._metrics = metrics
        self._audit = audit
        self._emit = emit
        self._escalate_after_s = escalate_after_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def _save(self, conn: Any, doc: dict[str, Any], actor: str, verb: str) -> None:
        conn.execute(
            "INSERT INTO alerts(id, doc, state, created_at) VALUES (?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, state=excluded.state",
            (doc["id"], json.dumps(doc, ensure_ascii=False), doc["state"], doc["created_at"]),
        )
        self._audit.append_sync(conn, actor, verb, doc["id"], kind=doc["kind"], unit_id=doc["unit_id"],
                                action_id=doc.get("action_id"))

    def _open_of(self, unit_id: str, kind: str) -> dict[str, Any] | None:
        for (doc,) in self._db.query("SELECT doc FROM alerts WHERE state='open'"):
            d: dict[str, Any] = json.loads(doc)
            if d["unit_id"] == unit_id and d["kind"] == kind:
                return d
        return None

    async def raise_alert(self, kind: str, unit_id: str, message: str, *, actor: str = "system",
                          action_id: str | None = None, case_number: str | None = None,
                          position: dict[str, Any] | None = None, position_age_s: float | None = None,
                          instruction_id: str | None = None, dedupe: bool | None = None,
                          params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``dedupe`` (default: every kind but SOS) returns the open alert of the same unit and kind instead.
        ``params`` are the values the console's text for ``kind`` names (``unit_id`` and
        ``case_number`` are always among them)."""
        if (kind != "sos") if dedupe is None else dedupe:
            existing = await self._db.run(self._open_of, unit_id, kind)
            if existing is not None:
                return view(existing)
        doc = {
            "id": f"al-{secrets.token_hex(6)}", "kind": kind, "unit_id": unit_id, "action_id": action_id,
            "case_number": case_number, "position": position, "position_age_s": position_age_s,
            "code": kind, "params": {"unit_id": unit_id, "case_number": case_number, **(params or {})},
            "message": message, "state": "open",
            "escalated": False, "escalated_at": None, "created_at": self._clock(), "acknowledged_by": None,
            "acknowledged_at": None, "instruction_id": instruction_id,
        }
        await self._db.write(lambda c: self._save(c, doc, actor, f"alert.{kind}"))
        logger.warning("unit %s: alert %s %s: %s", unit_id, doc["id"], kind, message)
        if self._metrics is not None:
            self._metrics.alerts.labels(kind).inc()
        await self._emit("alert", view(doc))
        return view(doc)

    async def get(self, alert_id: str) -> dict[str, Any]:
        rows = await self._db.run(self._db.query, "SELECT doc FROM alerts WHERE id=?", (alert_id,))
        if not rows:
            raise NotFound(f"unknown alert {alert_id!r}", code="unknown_alert")
        return json.loads(rows[0][0])  # type: ignore[no-any-return]

    async def list(self, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, args = "SELECT doc FROM alerts", cast(tuple[Any, ...], ())
        if state:
            sql, args = sql + " WHERE state=?", (state,)
        rows = await self._db.run(self._db.query, sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit))
        return [view(json.loads(r[0])) for r in rows]

    async def for_action(self, action_id: str, limit: int = 1000) -> builtins.list[dict[str, Any]]:
        """The alerts raised for an action (its ``action_id``), oldest first, at most ``limit``."""
        rows = await self._db.run(self._db.query, "SELECT doc FROM alerts WHERE json_extract(doc, '$.action_id')=? "
                                  "ORDER BY created_at LIMIT ?", (action_id, limit))
        return [view(json.loads(r[0])) for r in rows]

    async def ack(self, alert_id: str, person: Person) -> dict[str, Any]:
        doc = await self.get(alert_id)
        if doc["state"] != "open":
            raise Conflict(f"alert {alert_id} was already acknowledged by {doc['acknowledged_by']}",
                           code="already_acknowledged")
        doc.update(state="acknowledged", acknowledged_by=person.username, acknowledged_at=self._clock())
        await self._db.write(lambda c: self._save(c, doc, person.username, "alert.acknowledged"))
        if self._metrics is not None:
            waited = max(0.0, doc["acknowledged_at"] - doc["created_at"])
            self._metrics.alert_ack_seconds.labels(doc["kind"]).observe(waited)
        await self._emit("alert_update", view(doc))
        return view(doc)

    # escalation --------------------------------------------------------------------------
    def start(self, interval_s: float = 1.0) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(interval_s), name="alert-escalation")

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.escalate_due()
            except Exception:
                logger.exception("alert escalation pass failed")

    async def escalate_due(self) -> int:
        now = self._clock()
        rows = await self._db.run(self._db.query, "SELECT doc FROM alerts WHERE state='open'")
        count = 0
        for (raw,) in rows:
            doc = json.loads(raw)
            if doc["escalated"] or now - doc["created_at"] < self._escalate_after_s:
                continue
            doc.update(escalated=True, escalated_at=now)
            await self._db.write(partial(self._save, doc=doc, actor="system", verb="alert.escalated"))
            await self._emit("alert_update", view(doc))
            count += 1
        return count

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
