"""The catalog's day summaries for statistics: what was recorded each day, by action and unit,
each unit's spans, what was sealed and deleted; kept, and redone when the ledger adds to a day."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from recordings.catalog_stats import CatalogDay
from tests.recordings.conftest import OpenCatalog
from tests.recordings.test_catalog import FakeArchive

DAY = 86400.0
MIDNIGHT = 1_790_035_200.0  # 2026-09-22 00:00 UTC
DAYS = [(MIDNIGHT - DAY, MIDNIGHT), (MIDNIGHT, MIDNIGHT + DAY)]
LATER = MIDNIGHT + 5 * DAY  # both days have ended


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[FakeArchive]:
    a = FakeArchive(tmp_path)
    yield a
    a.ledger.close()


def by_cell(day: CatalogDay) -> dict[tuple[str, str], float]:
    return {c: round(float(s), 3) for c, s in zip(day.cells, day.seconds, strict=True)}


def spans(days: list[CatalogDay], unit: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for d in days:
        for s, e in d.spans.get(unit, []):
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(e, out[-1][1]))
            else:
                out.append((float(s), float(e)))
    return out


def test_a_day_holds_what_was_recorded_inside_it_by_action_and_unit(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    # bc-01 records across midnight for action act-1: 4 segments of 10 s from 23:59:40; bc-02 (no
    # action) records 2 segments on the first day with a gap between them.
    archive.recording("rec-a", unit="bc-01", action="act-1", opened=MIDNIGHT - 20, segments=4, segment_s=10.0)
    archive.recording("rec-b", unit="bc-02", opened=MIDNIGHT - 3600, segments=3, segment_s=10.0, gap=(10.0, 25.0))
    catalog = open_catalog(tmp_path / "c.sqlite3")
    catalog.sync_from(archive.ledger)
    first, second = catalog.stats_days(DAYS, LATER)

    assert by_cell(first) == {("act-1", "bc-01"): 20.0, ("", "bc-02"): 30.0}
    assert by_cell(second) == {("act-1", "bc-01"): 20.0}
    assert spans([first, second], "bc-01") == [(MIDNIGHT - 20, MIDNIGHT + 20)], "joined again across midnight"
    assert spans([first], "bc-02") == [(MIDNIGHT - 3600, MIDNIGHT - 3590), (MIDNIGHT - 3575, MIDNIGHT - 3555)]
    assert (first.segments_sealed, second.segments_sealed) == (5, 2), "by when each segment began"
    assert first.bytes_sealed > 0 and first.bytes_deleted == second.bytes_deleted == 0
    assert first.stamp is not None and second.stamp is not None
    assert [(g.unit_id, g.action_id, g.cause, g.seconds) for g in first.gaps] == [("bc-02", None, "link_lost", 15.0)]
    assert second.gaps == []
    catalog.close()


def test_a_segment_sealed_or_deleted_later_redoes_only_its_days(
        archive: FakeArchive, tmp_path: Path, open_catalog: OpenCatalog) -> None:
    archive.recording("rec-a", unit="bc-01", action="act-1", opened=MIDNIGHT - 7200, segments=2, segment_s=10.0)
    catalog = open_catalog(tmp_path / "c.sqlite3")
    catalog.sync_from(archive.ledger)
    first, second = catalog.stats_days(DAYS, LATER)
    assert by_cell(first) == {("act-1", "bc-01"): 20.0} and by_cell(second) == {}
    assert catalog.stats_days(DAYS, LATER) == [first, second], "kept: the same summaries"

    # A recording the ledger adds later (a unit's upload after it came back) for the first day.
    archive.recording("rec-late", unit="bc-03", action="act-1", opened=MIDNIGHT - 600, segments=1, segment_s=30.0)
    catalog.sync_from(archive.ledger)
    again_first, again_second = catalog.stats_days(DAYS, LATER)
    assert by_cell(again_first) == {("act-1", "bc-01"): 20.0, ("act-1", "bc-03"): 30.0}
    assert again_first.stamp != first.stamp and again_second is second, "the second day was not touched"

    # Retention deletes a segment on the second day: its bytes count there; what was recorded stays.
    archive.clock.now = MIDNIGHT + 3600
    archive.append("segment_deleted", {"recording_id": "rec-a", "seq": 1, "path": "recordings/rec-a/000001.webm",
                                       "sha256": "0" * 64, "reason": "retention: standard keep_days=1"})
    catalog.sync_from(archive.ledger)
    third_first, third_second = catalog.stats_days(DAYS, LATER)
    assert third_second.bytes_deleted > 0 and third_first.bytes_deleted == 0
    assert by_cell(third_first) == by_cell(again_first), "deleted segments were still recorded"
    assert catalog.live_bytes() == third_first.bytes_sealed - third_second.bytes_deleted

    # A rebuild from the ledger empties what was kept and comes to the same figures.
    catalog.reset()
    assert catalog.stats_days(DAYS, LATER)[0].cells == []
    catalog.sync_from(archive.ledger)
    rebuilt = catalog.stats_days(DAYS, LATER)
    assert [by_cell(d) for d in rebuilt] == [by_cell(third_first), by_cell(third_second)]
    assert [d.bytes_deleted for d in rebuilt] == [0, third_second.bytes_deleted]
    catalog.close()
