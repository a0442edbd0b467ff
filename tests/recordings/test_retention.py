"""Retention over a real ledger and segment files: keep times by category, legal holds, the
share guard, deletions as ledger entries the verifier accepts, an injected clock."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from recordings.retention import DAY_S, Policy, Retention, plan_retention
from recordings.verify import verify_archive
from tests.recordings.conftest import OpenCatalog
from tests.recordings.test_catalog import T0, Clock, FakeArchive

CASE = "（2026）冀0916执7号"
POLICY = Policy({"standard": 30.0, "incident": 3650.0}, "standard", 0.5)


@pytest.fixture
def archive(tmp_path: Path) -> Any:
    a = FakeArchive(tmp_path)
    yield a
    a.ledger.close()


def ledger_of(archive: FakeArchive, type: str) -> list[dict[str, Any]]:
    return [e for e in archive.ledger.entries() if e["type"] == type]


def test_plan_is_pure_and_follows_categories_holds_and_the_share() -> None:
    def rec(rid: str, category: str | None, closed_days_ago: float, n: int, case: str | None = None) -> dict[str, Any]:
        return {"id": rid, "category": category, "case_number": case, "closed_at": T0 - closed_days_ago * DAY_S,
                "segments": [{"seq": i, "path": f"recordings/{rid}/{i:06d}.webm", "sha256": "a" * 64, "bytes": 10}
                             for i in range(1, n + 1)]}

    recordings = [rec("old", "standard", 31, 2), rec("young", "standard", 29, 2), rec("incident", "incident", 400, 2),
                  rec("unknown-category", "parade", 31, 1), rec("held", "standard", 300, 3, CASE)]
    plan = plan_retention(recordings, 20, {CASE}, POLICY, T0)
    assert [d.recording_id for d in plan.due] == ["old", "unknown-category"]
    assert plan.due[1].category == "standard" and plan.due[1].reason == "retention: standard keep_days=30"
    assert plan.held == ["held"] and plan.segments == 3 and plan.bytes == 30 and plan.share == 3 / 20
    assert not plan.halted
    assert plan_retention(recordings, 5, {CASE}, POLICY, T0).halted, "3 of 5 segments is more than half"
    assert plan_retention(recordings, 6, {CASE}, POLICY, T0).share == 0.5
    assert not plan_retention(recordings, 6, {CASE}, POLICY, T0).halted, "exactly the share is allowed"
    # Exactly at the keep time the recording is due.
    edge = plan_retention([rec("edge", "standard", 30, 1)], 10, set(), POLICY, T0)
    assert [d.recording_id for d in edge.due] == ["edge"]


def test_run_deletes_due_segments_as_ledger_entries_and_the_archive_still_verifies(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-old", opened=T0)
    archive.recording("rec-held", opened=T0 + 10, case=CASE)
    archive.recording("rec-incident", opened=T0 + 20, category="incident")
    archive.recording("rec-new", opened=T0 + 40 * DAY_S, segments=3)
    archive.recording("rec-open", opened=T0 + 40 * DAY_S, close=False)
    archive.append("hold_set", {"case_number": CASE, "reason": "appeal pending"}, actor="user:sup")
    clock = Clock(T0 + 35 * DAY_S)
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    retention = Retention(catalog, archive.ledger, archive.root, POLICY, clock)

    dry = retention.run(dry_run=True, actor="user:admin", where="http:127.0.0.1")
    assert [d.recording_id for d in dry.plan.due] == ["rec-old"] and dry.plan.held == ["rec-held"]
    assert dry.deleted == 0 and not ledger_of(archive, "segment_deleted") and not ledger_of(archive, "retention_run")
    assert (archive.root / "recordings/rec-old/000001.webm").is_file()

    result = retention.run(dry_run=False, actor="user:admin", where="http:127.0.0.1")
    assert result.deleted == 2 and not result.halted and result.errors == []
    deleted = [e["data"] for e in ledger_of(archive, "segment_deleted")]
    assert [(d["recording_id"], d["seq"]) for d in deleted] == [("rec-old", 1), ("rec-old", 2)]
    assert all(d["reason"] == "retention: standard keep_days=30" and d["path"].startswith("recordings/rec-old/")
               for d in deleted)
    sealed = {e["data"]["path"]: e["data"]["sha256"] for e in ledger_of(archive, "segment_sealed")}
    assert all(sealed[d["path"]] == d["sha256"] for d in deleted)
    [summary] = ledger_of(archive, "retention_run")
    assert summary["outcome"] == "ok" and summary["actor"] == "user:admin" and summary["data"]["deleted"] == 2
    assert not (archive.root / "recordings/rec-old/000001.webm").exists()
    assert (archive.root / "recordings/rec-old/recording.json").is_file(), "metadata outlives the video"
    for rid in ("rec-held", "rec-incident", "rec-new", "rec-open"):
        assert (archive.root / f"recordings/{rid}/000001.webm").is_file()
    rec = catalog.recording("rec-old")
    assert rec is not None and rec["segment_count"] == 0 and rec["deleted_segments"] == 2

    # Nothing more is due; releasing the hold makes the held case's recordings deletable.
    assert retention.run(dry_run=False, actor="user:admin", where="cli").deleted == 0
    archive.append("hold_released", {"case_number": CASE}, actor="user:sup")
    assert [d.recording_id for d in retention.run(dry_run=True, actor="a", where="b").plan.due] == ["rec-held"]

    archive.ledger.sign_tree_head()
    report = verify_archive(archive.root, allow_unanchored=True)
    assert report.failures == [], report.failures
    catalog.close()


def test_run_above_the_share_deletes_nothing_and_is_recorded_as_failed(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-1", opened=T0, segments=3)
    archive.recording("rec-2", opened=T0 + 100, segments=1)
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    # A clock a year ahead (or keep_days set too short) makes everything due.
    retention = Retention(catalog, archive.ledger, archive.root, POLICY, Clock(T0 + 365 * DAY_S))
    result = retention.run(dry_run=False, actor="system", where="cli")
    assert result.halted and result.deleted == 0
    assert result.plan.figures()["share"] == 1.0 and result.plan.figures()["segments"] == 4
    assert not ledger_of(archive, "segment_deleted")
    [halted] = ledger_of(archive, "retention_run")
    assert halted["outcome"] == "failed" and halted["data"]["halted"] is True
    assert all((archive.root / f"recordings/rec-1/{i:06d}.webm").is_file() for i in (1, 2, 3))
    catalog.close()


def test_leftover_file_of_an_interrupted_run_is_removed_and_paths_stay_inside(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-1", opened=T0, segments=1)
    archive.recording("rec-2", opened=T0 + 50 * DAY_S, segments=4)
    leftover = archive.root / "recordings/rec-1/000001.webm"
    # A crash between the ledger entry and the unlink: the ledger says deleted, the file is there.
    archive.append("segment_deleted", {"recording_id": "rec-1", "seq": 1, "path": "recordings/rec-1/000001.webm",
                                       "sha256": hashlib.sha256(leftover.read_bytes()).hexdigest(),
                                       "reason": "retention: standard keep_days=30"})
    # A forged entry naming a file outside the archive is never touched.
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    archive.append("segment_sealed", {"recording_id": "rec-1", "seq": 2, "path": "recordings/../../precious.txt",
                                      "sha256": "b" * 64, "bytes": 7, "start": "2026-09-21T14:13:20.000Z",
                                      "end": "2026-09-21T14:13:21.000Z", "offset_s": 3.0})
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    retention = Retention(catalog, archive.ledger, archive.root, Policy({"standard": 30.0}, "standard", 0.5),
                          Clock(T0 + 40 * DAY_S))
    result = retention.run(dry_run=False, actor="system", where="cli")
    assert result.leftovers_removed == 1 and not leftover.exists()
    assert result.deleted == 1, "the forged segment is due and recorded, but its file is not touched"
    assert outside.read_text() == "keep me"
    catalog.close()
