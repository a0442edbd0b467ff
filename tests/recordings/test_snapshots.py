"""Stills in the archive over a real ledger: sealed, ledgered and verified; every tampering named;
a crash at either side of the ledger append recovered at the next start; refusals leave nothing;
the catalog indexes them; retention leaves them alone."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from recordings.archive import ActionContext, ArchiveService
from recordings.ledger import Ledger, LedgerWriteError
from recordings.retention import DAY_S, Policy, Retention
from recordings.snapshots import SnapshotError, StillInfo, seal_snapshot
from recordings.still_catalog import StillQuery
from recordings.verify import Report, verify_archive
from tests.recordings.conftest import OpenCatalog
from tests.recordings.test_catalog import T0, Clock, FakeArchive
from utctime import iso_millis

CASE = "（2026）冀0916执7号"
WHERE = "http:127.0.0.1"


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    image = np.full((size[1], size[0], 3), seed % 256, dtype=np.uint8)
    cv2.putText(image, str(seed), (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


def info(unit: str = "bc-01", case: str | None = CASE, action: str | None = "act-1",
         instruction: str | None = "ins-1", taken_at: float | None = T0 - 0.25) -> StillInfo:
    return StillInfo(unit, action, case, instruction, taken_at)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[FakeArchive]:
    a = FakeArchive(tmp_path)
    yield a
    a.ledger.close()


def verified(archive: FakeArchive) -> Report:
    """The archive checked as a stopped server's (this test holds its ledger open)."""
    archive.ledger.sign_tree_head()
    return verify_archive(archive.root, archive.ledger.public_key_pem(), live=False)


def seal(archive: FakeArchive, data: bytes, still: StillInfo | None = None, ledger: Any = None) -> dict[str, Any]:
    return seal_snapshot(archive.root, ledger or archive.ledger, still or info(), data, archive.clock(),
                         actor="unit:bc-01", where=WHERE)


class Killed(BaseException):
    """The process dies here: nothing after it runs, no ``except Exception`` catches it."""


class LedgerThat:
    """The real ledger, with a crash or a full disk at the append."""

    def __init__(self, ledger: Ledger, *, fail: BaseException, after_append: bool = False) -> None:
        self.ledger, self.fail, self.after_append = ledger, fail, after_append

    def append(self, type: str, *, actor: str, where: str | None = None, outcome: str = "ok",
               data: dict[str, Any]) -> dict[str, Any]:
        if self.after_append:
            self.ledger.append(type, actor=actor, where=where, outcome=outcome, data=data)
        raise self.fail


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "snapshots").rglob("*") if p.is_file())


async def restart(archive: FakeArchive) -> list[str]:
    """Close the ledger and start an archive service on the directory, as the server does."""
    archive.ledger.close()

    async def action_for(unit_id: str) -> ActionContext:
        return ActionContext(None, None, (), "standard")

    async def alarm(kind: str, message: str, detail: dict[str, Any]) -> None:
        raise AssertionError(f"unexpected alarm {kind}: {message}")

    service = ArchiveService(archive.root, archive.root.parent / "keys" / "ledger.pem", "n1", segment_s=3.0,
                             queue_frames=100, reconnect_grace_s=0.1, sign_interval_s=60.0, min_free_bytes=0,
                             action_for=action_for, alarm=alarm, clock=archive.clock)
    notes = await service.start()
    await service.close()
    archive.ledger = Ledger(archive.root, archive.root.parent / "keys" / "ledger.pem", where="recorder@test",
                            clock=archive.clock)
    archive.ledger.open()
    return notes


def test_a_sealed_still_is_on_disk_in_the_ledger_and_verifies(archive: FakeArchive) -> None:
    first, second = jpeg(1), jpeg(2)
    a = seal(archive, first)
    b = seal(archive, second, info(instruction=None, action=None, case=None, taken_at=None))
    assert a["path"] == f"snapshots/{a['received_at'][:10].replace('-', '')}/{a['snapshot_id']}.jpg"
    assert (archive.root / a["path"]).read_bytes() == first and (archive.root / b["path"]).read_bytes() == second
    assert files_under(archive.root) == sorted([a["path"], b["path"]]), "no .part left behind"
    [ea, eb] = [e for e in archive.ledger.entries() if e["type"] == "snapshot_sealed"]
    assert ea["data"] == a and ea["actor"] == "unit:bc-01" and ea["where"] == WHERE and ea["outcome"] == "ok"
    assert a == {"snapshot_id": a["snapshot_id"], "path": a["path"], "sha256": hashlib.sha256(first).hexdigest(),
                 "bytes": len(first), "unit_id": "bc-01", "action_id": "act-1", "case_number": CASE,
                 "instruction_id": "ins-1", "taken_at": iso_millis(T0 - 0.25), "received_at": iso_millis(T0),
                 "content_type": "image/jpeg"}
    assert eb["data"]["instruction_id"] is None and eb["data"]["taken_at"] is None and eb["data"]["case_number"] is None
    report = verified(archive)
    assert report.failures == [] and report.warnings == []
    assert report.snapshots == 2 and report.snapshots_proven == 2 and report.files_hashed == 2


def test_not_a_jpeg_is_refused_before_anything_is_written(archive: FakeArchive) -> None:
    size = archive.ledger.size
    with pytest.raises(ValueError, match="FF D8 FF"):
        seal(archive, b"\x89PNG\r\n\x1a\n" + jpeg()[3:])
    assert archive.ledger.size == size and not (archive.root / "snapshots").exists()


def test_every_tampering_of_a_still_is_named(archive: FakeArchive) -> None:
    altered, deleted, kept = (seal(archive, jpeg(n)) for n in range(3))
    path = archive.root / altered["path"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    (archive.root / deleted["path"]).unlink()
    extra = archive.root / "snapshots" / "20260101" / "planted.jpg"
    extra.parent.mkdir()
    extra.write_bytes(jpeg(9))
    report = verified(archive)
    assert sorted((f.kind, f.item) for f in report.failures) == sorted([
        ("altered", altered["path"]), ("missing", deleted["path"]), ("extra", "snapshots/20260101/planted.jpg")])
    assert kept["path"] not in str(report.failures)


def test_a_bad_snapshot_entry_is_reported(archive: FakeArchive) -> None:
    entry = archive.append("snapshot_sealed", {"snapshot_id": "x", "path": "snapshots/../../etc/passwd",
                                               "sha256": "0" * 64, "bytes": 1})
    report = verified(archive)
    assert [(f.kind, f.item) for f in report.failures] == [("bad_entry", f"entry {entry['index']}")]


def test_a_full_disk_at_the_ledger_leaves_nothing_behind(archive: FakeArchive) -> None:
    size = archive.ledger.size
    full = LedgerThat(archive.ledger, fail=LedgerWriteError("entries.jsonl: write failed: no space", errno.ENOSPC))
    with pytest.raises(SnapshotError) as caught:
        seal(archive, jpeg(), ledger=full)
    assert caught.value.disk_full and "refused" in str(caught.value)
    assert archive.ledger.size == size and files_under(archive.root) == []
    assert verified(archive).failures == []


async def test_a_crash_before_the_ledger_append_is_undone_at_the_next_start(archive: FakeArchive) -> None:
    with pytest.raises(Killed):
        seal(archive, jpeg(), ledger=LedgerThat(archive.ledger, fail=Killed()))
    [part] = files_under(archive.root)
    assert part.endswith(".jpg.part")
    before = verified(archive)
    assert before.failures == [] and [(w.kind, w.item) for w in before.warnings] == [("unsealed", part)]
    notes = await restart(archive)
    assert any("never recorded" in n for n in notes), notes
    assert files_under(archive.root) == []
    after = verified(archive)
    assert after.failures == [] and after.warnings == []


async def test_a_crash_between_the_ledger_append_and_the_rename_is_completed_at_the_next_start(
        archive: FakeArchive) -> None:
    data = jpeg(5)
    with pytest.raises(Killed):
        seal(archive, data, ledger=LedgerThat(archive.ledger, fail=Killed(), after_append=True))
    [entry] = [e["data"] for e in archive.ledger.entries() if e["type"] == "snapshot_sealed"]
    assert files_under(archive.root) == [entry["path"] + ".part"]
    before = verified(archive)
    assert [(f.kind, f.item) for f in before.failures] == [("missing", entry["path"])]
    assert "start the server" in before.failures[0].message
    notes = await restart(archive)
    assert any("renamed to its final name" in n for n in notes), notes
    assert files_under(archive.root) == [entry["path"]] and (archive.root / entry["path"]).read_bytes() == data
    after = verified(archive)
    assert after.failures == [] and after.warnings == [] and after.snapshots_proven == 1


def test_the_catalog_finds_stills_newest_first_by_unit_case_and_action(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    sealed = []
    for n, (unit, case, action) in enumerate([("bc-01", CASE, "act-1"), ("bc-02", None, None),
                                              ("bc-01", CASE, "act-2"), ("bc-02", CASE, "act-1")]):
        archive.clock.now = T0 + n
        sealed.append(seal(archive, jpeg(n), info(unit=unit, case=case, action=action)))
    archive.append("hold_set", {"case_number": CASE, "reason": "appeal"}, actor="user:sup")
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    catalog.sync_from(archive.ledger)
    ids = [s["snapshot_id"] for s in sealed]

    def found(**criteria: Any) -> list[str]:
        return [v["snapshot_id"] for v in catalog.snapshots(StillQuery(**criteria))]

    assert found() == ids[::-1]
    assert found(unit_id="bc-01") == [ids[2], ids[0]]
    assert found(case_number=CASE) == [ids[3], ids[2], ids[0]]
    assert found(action_id="act-1") == [ids[3], ids[0]]
    assert found(unit_id="bc-02", action_id="act-1") == [ids[3]]
    assert found(limit=1) == [ids[3]]
    row = catalog.snapshot(ids[0])
    assert row is not None and row.path == sealed[0]["path"]
    assert row.view == {k: sealed[0][k] for k in ("snapshot_id", "sha256", "bytes", "unit_id", "action_id",
                                                   "case_number", "instruction_id", "taken_at", "received_at",
                                                   "content_type")} | {"held": True}
    assert catalog.snapshots(StillQuery(unit_id="bc-02"))[1]["held"] is False
    assert catalog.snapshot("snap-none") is None
    # Rebuilt from the ledger alone, the same.
    catalog.reset()
    catalog.sync_from(archive.ledger)
    assert found() == ids[::-1]
    catalog.close()


def test_retention_runs_leave_stills_of_held_and_free_cases_alone(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-old", opened=T0, case=CASE)
    archive.recording("rec-free", opened=T0 + 5)
    held = seal(archive, jpeg(1), info(case=CASE))
    free = seal(archive, jpeg(2), info(case="（2026）冀0916执8号", action="act-2"))
    archive.append("hold_set", {"case_number": CASE, "reason": "appeal"}, actor="user:sup")
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    policy = Policy({"standard": 30.0}, "standard", 1.0)
    result = Retention(catalog, archive.ledger, archive.root, policy, Clock(T0 + 400 * DAY_S)).run(
        dry_run=False, actor="user:admin", where=WHERE)
    assert result.errors == [] and result.deleted == 2 and result.plan.held == ["rec-old"]
    assert (archive.root / held["path"]).is_file() and (archive.root / free["path"]).is_file()
    assert len(catalog.snapshots(StillQuery())) == 2
    assert verified(archive).failures == []
    catalog.close()
