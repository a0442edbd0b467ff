"""Retention of the evidence archive: which segments are past their category's keep time, and
deleting them as ledger entries.

A closed recording of category ``c`` is due when ``closed_at + keep_days(c) * 86400 <= now``
(a category without a rule takes the default category's). Every recording of a case under a
legal hold is kept, whatever its age. A run that would delete more than ``max_delete_share`` of
the segments the archive still has deletes nothing: it is *halted* (a misconfigured rule or a
wrong clock must not empty the archive); the caller raises the alarm.

Deleting a segment appends ``segment_deleted`` (``recording_id``, ``seq``, ``path``, ``sha256``,
``reason``) to the ledger *before* the file is removed, so a crash in between leaves a file the
ledger says is gone (the verifier warns, the next run removes it), never a missing file the
ledger still vouches for. Each run that deletes ends with one ``retention_run`` summary entry;
a halted run is recorded with outcome ``failed``. ``recording.json`` stays: it is metadata, like
the ledger entries that outlive the video.

Stills (``snapshots/``, :mod:`recordings.snapshots`) are not part of retention: a run never
plans, deletes or counts them, whether or not their case is held.

:func:`plan_retention` is pure; :class:`Retention` reads the catalog, asks the clock and writes.
Its methods block (file and ledger I/O): async callers use a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from utctime import iso_millis

from .catalog import Catalog
from .ledger import LedgerError

logger = logging.getLogger(__name__)

DAY_S = 86400.0


class LedgerWriter(Protocol):
    def append(self, type: str, *, actor: str, where: str | None = None, outcome: str = "ok",
               data: dict[str, Any]) -> dict[str, Any]: ...

    @property
    def size(self) -> int: ...

    def entries(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Policy:
    """``keep_days`` per category; ``default_category`` must have a rule; share in (0, 1]."""

    keep_days: Mapping[str, float]
    default_category: str
    max_delete_share: float

    def rule_for(self, category: str | None) -> tuple[str, float]:
        """(category whose rule applies, keep_days)."""
        if category is not None and category in self.keep_days:
            return category, float(self.keep_days[category])
        return self.default_category, float(self.keep_days[self.default_category])


@dataclass(frozen=True)
class DueRecording:
    recording_id: str
    category: str
    keep_days: float
    closed_at: float
    segments: tuple[Mapping[str, Any], ...]  # {seq, path, sha256, bytes}

    @property
    def reason(self) -> str:
        return f"retention: {self.category} keep_days={self.keep_days:g}"


@dataclass
class Plan:
    now: float
    due: list[DueRecording]
    held: list[str]  # recording ids past their time but kept for a legal hold
    total_segments: int  # segments the archive has that are not deleted
    max_delete_share: float
    segments: int = 0
    bytes: int = 0
    share: float = 0.0
    halted: bool = False

    def figures(self) -> dict[str, Any]:
        return {"now": iso_millis(self.now), "recordings": len(self.due), "segments": self.segments,
                "bytes": self.bytes, "total_segments": self.total_segments, "share": round(self.share, 4),
                "max_delete_share": self.max_delete_share, "held_recordings": len(self.held),
                "halted": self.halted}

    def listing(self) -> list[dict[str, Any]]:
        return [{"recording_id": d.recording_id, "category": d.category, "keep_days": d.keep_days,
                 "closed_at": iso_millis(d.closed_at), "segments": len(d.segments),
                 "bytes": sum(int(s["bytes"]) for s in d.segments)} for d in self.due]


@dataclass
class RunResult:
    plan: Plan
    dry_run: bool
    deleted: int = 0
    deleted_bytes: int = 0
    leftovers_removed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def halted(self) -> bool:
        return self.plan.halted

    def view(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "figures": self.plan.figures(), "due": self.plan.listing(),
                "held": self.plan.held, "deleted": self.deleted, "deleted_bytes": self.deleted_bytes,
                "leftovers_removed": self.leftovers_removed, "errors": self.errors}


def plan_retention(recordings: Sequence[Mapping[str, Any]], total_segments: int, held_cases: set[str],
                   policy: Policy, now: float) -> Plan:
    """What a run at ``now`` deletes. ``recordings`` are closed ones with their live segments
    (:meth:`Catalog.retention_view`); ``held_cases`` the case numbers under a legal hold."""
    due: list[DueRecording] = []
    held: list[str] = []
    for r in recordings:
        category, keep_days = policy.rule_for(r.get("category"))
        closed_at = float(r["closed_at"])
        if not r["segments"] or closed_at + keep_days * DAY_S > now:
            continue
        if r.get("case_number") and r["case_number"] in held_cases:
            held.append(r["id"])
            continue
        due.append(DueRecording(r["id"], category, keep_days, closed_at, tuple(r["segments"])))
    plan = Plan(now, due, held, total_segments, policy.max_delete_share)
    plan.segments = sum(len(d.segments) for d in due)
    plan.bytes = sum(int(s["bytes"]) for d in due for s in d.segments)
    plan.share = plan.segments / total_segments if total_segments else 0.0
    plan.halted = plan.share > policy.max_delete_share
    return plan


def _inside(archive_root: Path, rel: str) -> Path | None:
    """The file ``rel`` names under ``<archive>/recordings``, or None if it would lie elsewhere."""
    base = (archive_root / "recordings").resolve()
    path = (archive_root / rel).resolve()
    return path if path.is_relative_to(base) and path != base else None


class Retention:
    """Runs retention over ``catalog`` (a projection of ``ledger``) for the archive at ``archive_root``."""

    def __init__(self, catalog: Catalog, ledger: LedgerWriter, archive_root: Path, policy: Policy,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.ledger = ledger
        self.root = Path(archive_root)
        self.policy = policy
        self.clock = clock

    def plan(self) -> Plan:
        self.catalog.sync_from(self.ledger)
        recordings, total = self.catalog.retention_view()
        return plan_retention(recordings, total, self.catalog.held_cases(), self.policy, self.clock())

    def run(self, *, dry_run: bool, actor: str, where: str) -> RunResult:
        """Plan and, unless ``dry_run`` or halted, delete. A halted run is in the ledger."""
        plan = self.plan()
        result = RunResult(plan, dry_run)
        if dry_run:
            return result
        if plan.halted:
            self.ledger.append("retention_run", actor=actor, where=where, outcome="failed",
                               data={**plan.figures(), "reason": "would delete more than max_delete_share"})
            logger.error("retention halted: %d of %d segments (%.1f %%) due, more than %.1f %%", plan.segments,
                         plan.total_segments, plan.share * 100, plan.max_delete_share * 100)
            return result
        result.leftovers_removed = self._remove_leftovers()
        for due in plan.due:
            for seg in due.segments:
                try:
                    self._delete(due, seg, actor, where)
                except LedgerError as exc:  # the ledger refused the entry (disk full): stop here
                    result.errors.append(f"{seg['path']}: {exc}")
                    logger.error("retention stopped at %s: %s", seg["path"], exc)
                    break
                result.deleted += 1
                result.deleted_bytes += int(seg["bytes"])
            if result.errors:
                break
        self.ledger.append("retention_run", actor=actor, where=where, outcome="failed" if result.errors else "ok",
                           data={**plan.figures(), "deleted": result.deleted, "deleted_bytes": result.deleted_bytes,
                                 "rules": {k: float(v) for k, v in sorted(self.policy.keep_days.items())},
                                 "default_category": self.policy.default_category})
        self.catalog.sync_from(self.ledger)
        return result

    def _delete(self, due: DueRecording, seg: Mapping[str, Any], actor: str, where: str) -> None:
        path = _inside(self.root, str(seg["path"]))
        self.ledger.append("segment_deleted", actor=actor, where=where, data={
            "recording_id": due.recording_id, "seq": int(seg["seq"]), "path": seg["path"], "sha256": seg["sha256"],
            "reason": due.reason})
        if path is None:
            logger.error("retention: %s lies outside the archive's recordings; not touched", seg["path"])
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # recorded as deleted: the next run retries the file
            logger.error("retention: %s not removed: %s", path, exc)

    def _remove_leftovers(self) -> int:
        """Files of segments deleted by an earlier run that a crash or an error left behind."""
        removed = 0
        for rel in self.catalog.deleted_paths():
            path = _inside(self.root, rel)
            if path is not None and path.is_file():
                try:
                    path.unlink()
                    removed += 1
                except OSError as exc:
                    logger.error("retention: leftover %s not removed: %s", path, exc)
        return removed
