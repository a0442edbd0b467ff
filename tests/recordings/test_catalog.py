"""The catalog: a projection of a real ledger, synced incrementally, rebuilt from the ledger
alone, searched by case, action, unit, officer, time range and place."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from recordings.catalog import CatalogError, Near, Query, distance_m, track_passes_near
from recordings.ledger import Ledger
from tests.recordings.conftest import OpenCatalog
from utctime import iso_millis

T0 = 1_790_000_000.0  # 2026-09-21


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeArchive:
    """A real ledger and real segment files, written the way the recorder writes them."""

    def __init__(self, root: Path, clock: Clock | None = None) -> None:
        self.root = root / "archive"
        self.clock = clock or Clock()
        self.ledger = Ledger(self.root, root / "keys" / "ledger.pem", where="recorder@test", clock=self.clock)
        self.ledger.open()

    def append(self, type: str, data: dict[str, Any], actor: str = "system") -> dict[str, Any]:
        return self.ledger.append(type, actor=actor, data=data)

    def recording(self, rid: str, *, unit: str = "bc-01", case: str | None = None, action: str | None = None,
                  officers: Sequence[str] = (), category: str = "standard", opened: float = T0, segments: int = 2,
                  segment_s: float = 3.0, gap: tuple[float, float] | None = None, close: bool = True) -> None:
        """A recording opened at ``opened`` with ``segments`` back-to-back segments (a ``gap``
        (start_s, end_s) on its timeline shifts the later ones), closed at the end."""
        self.append("recording_opened", {
            "recording_id": rid, "unit_id": unit, "action_id": action, "case_number": case,
            "officers": list(officers), "category": category, "node": "n1", "video_codec": "vp8",
            "audio_codec": "opus", "server_time": iso_millis(opened)})
        t = 0.0
        for seq in range(1, segments + 1):
            if gap is not None and t >= gap[0] and not getattr(self, "_gapped", False):
                self.append("gap", {"recording_id": rid, "start": iso_millis(opened + gap[0]),
                                    "end": iso_millis(opened + gap[1]), "cause": "link_lost",
                                    "seconds": gap[1] - gap[0]})
                t = gap[1]
                self._gapped = True
            rel = f"recordings/{rid}/{seq:06d}.webm"
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            blob = f"{rid} segment {seq}".encode() * 50
            path.write_bytes(blob)
            self.append("segment_sealed", {
                "recording_id": rid, "seq": seq, "path": rel, "sha256": hashlib.sha256(blob).hexdigest(),
                "bytes": len(blob), "start": iso_millis(opened + t), "end": iso_millis(opened + t + segment_s),
                "frames": {"video": 90, "audio": 150}, "recovered": False, "offset_s": t,
                "pts": {"video": [int(t * 90000), int((t + segment_s) * 90000)]}})
            t += segment_s
        self._gapped = False
        if close:
            meta = json.dumps({"recording_id": rid}).encode()
            (self.root / "recordings" / rid).mkdir(parents=True, exist_ok=True)
            (self.root / "recordings" / rid / "recording.json").write_bytes(meta)
            self.append("recording_closed", {
                "recording_id": rid, "segments": segments, "reason": "test", "end_cause": None,
                "metadata_sha256": hashlib.sha256(meta).hexdigest(), "server_time": iso_millis(opened + t + 1)})


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[FakeArchive]:
    a = FakeArchive(tmp_path)
    yield a
    a.ledger.close()


def test_sync_is_incremental_idempotent_and_keeps_its_place(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-a", case="（2026）冀0916执1号", officers=["王法警", "李法警"], gap=(3.0, 8.0), segments=3)
    catalog = open_catalog(tmp_path / "catalog.sqlite3")
    applied = catalog.sync_from(archive.ledger)
    assert applied == archive.ledger.size and catalog.next_index == archive.ledger.size
    assert catalog.sync_from(archive.ledger) == 0
    assert catalog.sync(archive.ledger.entries()) == 0, "entries already applied are skipped"

    rec = catalog.recording("rec-a")
    assert rec is not None and rec["state"] == "closed" and rec["segment_count"] == 3
    assert rec["officers"] == ["王法警", "李法警"] and rec["case_number"] == "（2026）冀0916执1号"
    assert [s["offset_s"] for s in rec["segments"]] == [0.0, 8.0, 11.0]
    assert [s["duration_s"] for s in rec["segments"]] == [3.0, 3.0, 3.0]
    assert rec["gaps"] == [{"start": iso_millis(T0 + 3), "end": iso_millis(T0 + 8), "start_s": 3.0, "end_s": 8.0,
                            "cause": "link_lost", "seconds": 5.0}]
    assert rec["duration_s"] == 14.0 and rec["gap_count"] == 1

    # A new entry arrives: only it is applied; a restart reads the stored place.
    archive.recording("rec-b", unit="bc-02", opened=T0 + 100)
    catalog.close()
    again = open_catalog(tmp_path / "catalog.sqlite3")
    before = again.next_index
    assert again.sync_from(archive.ledger) == archive.ledger.size - before
    assert {r["id"] for r in again.search(Query())} == {"rec-a", "rec-b"}
    with pytest.raises(CatalogError):
        again.sync([{"index": again.next_index + 3, "type": "gap", "data": {}}])
    again.close()


def test_catalog_is_rebuilt_from_the_ledger_alone(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-a")
    first = open_catalog(tmp_path / "one.sqlite3")
    first.sync_from(archive.ledger)
    view = first.recording("rec-a")
    first.close()
    (tmp_path / "one.sqlite3").unlink()
    rebuilt = open_catalog(tmp_path / "one.sqlite3")
    rebuilt.sync_from(archive.ledger)
    assert rebuilt.recording("rec-a") == view
    rebuilt.close()

    # A catalog built from another (longer) ledger rebuilds itself rather than mixing the two.
    other = FakeArchive(tmp_path / "other")
    for i in range(3):
        other.recording(f"rec-x{i}", opened=T0 + i * 100)
    stale = open_catalog(tmp_path / "stale.sqlite3")
    stale.sync_from(other.ledger)
    stale.sync_from(archive.ledger)
    assert [r["id"] for r in stale.search(Query())] == ["rec-a"]
    stale.close()
    other.ledger.close()


def test_search_by_case_action_unit_officer_and_time_overlap(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-1", unit="bc-01", case="（2026）冀0916执1号", action="act-1", officers=["王"], opened=T0)
    archive.recording("rec-2", unit="bc-02", case="（2026）冀0916执1号", action="act-1", officers=["李"], opened=T0 + 5)
    archive.recording("rec-3", unit="bc-01", case="（2026）冀0916执2号", action="act-2", officers=["王", "李"],
                      opened=T0 + 1000)
    archive.recording("rec-open", unit="bc-03", opened=T0 + 2000, close=False)
    catalog = open_catalog(tmp_path / "c.sqlite3")
    catalog.sync_from(archive.ledger)

    def ids(**kw: Any) -> list[str]:
        return [r["id"] for r in catalog.search(Query(**kw))]

    assert ids(case_number="（2026）冀0916执1号") == ["rec-2", "rec-1"]
    assert ids(action_id="act-2") == ["rec-3"]
    assert ids(unit_id="bc-01") == ["rec-3", "rec-1"]
    assert ids(officer="李") == ["rec-3", "rec-2"]
    assert ids(officer="李", unit_id="bc-01") == ["rec-3"]
    # rec-1 spans T0..T0+7: a range touching any of it finds it; the open one reaches into the future.
    assert ids(since=T0 + 6.5, until=T0 + 7) == ["rec-2", "rec-1"]
    assert ids(since=T0 + 500, until=T0 + 900) == []
    assert ids(since=T0 + 10_000) == ["rec-open"]
    assert ids(until=T0 + 1) == ["rec-1"]
    assert ids(limit=2) == ["rec-open", "rec-3"]
    summary = catalog.search(Query(unit_id="bc-03"))[0]
    assert summary["state"] == "open" and summary["closed_at"] is None and summary["segment_count"] == 2
    catalog.close()


def test_place_search_follows_the_units_track_during_the_recording(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-1", unit="bc-01", opened=T0)  # T0 .. T0+7
    archive.recording("rec-2", unit="bc-02", opened=T0)
    archive.recording("rec-3", unit="bc-01", opened=T0 + 1000)
    # bc-01 walks north along lon 114.5 through (38.0, 114.5) during rec-1, with fixes 40 s apart
    # on either side of the point; bc-02 stays 5 km away; bc-01 passes the point again after rec-3.
    tracks = {
        "bc-01": [(T0 - 20, 37.999, 114.5), (T0 + 20, 38.001, 114.5), (T0 + 1200, 38.0, 114.5)],
        "bc-02": [(T0 + 1, 38.045, 114.5), (T0 + 5, 38.046, 114.5)],
    }
    asked: list[tuple[str, float, float | None]] = []

    def source(unit: str, since: float, until: float | None) -> list[tuple[float, float, float]]:
        asked.append((unit, since, until))
        # The store keeps every fix; the catalog asks for the recording's span with a margin.
        return [p for p in tracks.get(unit, []) if since - 60 <= p[0] <= (until or 1e18) + 60]

    catalog = open_catalog(tmp_path / "c.sqlite3")
    catalog.sync_from(archive.ledger)
    near = Near(38.0, 114.5, 50.0)
    assert [r["id"] for r in catalog.search(Query(near=near), source)] == ["rec-1"]
    assert [r["id"] for r in catalog.search(Query(near=Near(38.045, 114.5, 300.0)), source)] == ["rec-2"]
    assert catalog.search(Query(near=near, unit_id="bc-02"), source) == []
    assert ("bc-01", T0, T0 + 7.0) in asked
    with pytest.raises(ValueError):
        catalog.search(Query(near=near))
    catalog.close()


def test_track_geometry() -> None:
    assert abs(distance_m(38.0, 114.5, 38.001, 114.5) - 111.2) < 0.5
    near = Near(38.0, 114.5, 20.0)
    # The straight line between two fixes 10 s apart passes the point although neither fix is near.
    assert track_passes_near([(0, 37.999, 114.5), (10, 38.001, 114.5)], near)
    # The same fixes 10 minutes apart are not joined: the unit may have gone anywhere in between.
    assert not track_passes_near([(0, 37.999, 114.5), (600, 38.001, 114.5)], near)
    assert not track_passes_near([(0, 37.999, 114.501), (10, 38.001, 114.501)], near)
    assert track_passes_near([(0, 38.0001, 114.5)], near)
    assert not track_passes_near([], near)


def test_holds_and_deletions_are_projected(archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-1", case="（2026）冀0916执1号")
    archive.append("hold_set", {"case_number": "（2026）冀0916执1号", "reason": "appeal"}, actor="user:sup")
    archive.append("segment_deleted", {"recording_id": "rec-1", "seq": 1, "path": "recordings/rec-1/000001.webm",
                                       "sha256": "0" * 64, "reason": "retention: standard keep_days=1"})
    catalog = open_catalog(tmp_path / "c.sqlite3")
    catalog.sync_from(archive.ledger)
    [hold] = catalog.holds()
    assert hold["case_number"] == "（2026）冀0916执1号" and hold["set_by"] == "user:sup" and hold["recordings"] == 1
    rec = catalog.recording("rec-1")
    assert rec is not None and rec["held"] and rec["segment_count"] == 1 and rec["deleted_segments"] == 1
    assert rec["segments"][0]["deleted"] and rec["segments"][0]["deleted_reason"].startswith("retention")
    seg = catalog.segment("rec-1", 1)
    assert seg is not None and seg.deleted and seg.path == "recordings/rec-1/000001.webm"
    assert catalog.segment("rec-1", 9) is None
    archive.append("hold_released", {"case_number": "（2026）冀0916执1号"}, actor="user:sup")
    catalog.sync_from(archive.ledger)
    assert catalog.holds() == [] and catalog.held_cases() == set()
    catalog.close()
