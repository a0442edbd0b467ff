"""One catalog in PostgreSQL for every node's archive: each node syncs its own part from its own
real ledger; searches, statistics and holds cover every node; retention, deleted paths, exports
and the audit trail's ledger indexes keep to the node's own archive; a rebuild touches only the
node's own rows."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from recordings.catalog import Catalog, Query
from recordings.catalog_postgres import Connection
from recordings.still_catalog import StillQuery
from tests.recordings.test_catalog import T0, FakeArchive

CASE = "（2026）冀0916执7号"
DAY = 86400.0
MIDNIGHT = 1_790_035_200.0  # 2026-09-22 00:00 UTC, the day after T0


class Node:
    """A node: its own archive and ledger (files), its part of the shared catalog."""

    def __init__(self, root: Path, url: str, name: str) -> None:
        self.archive = FakeArchive(root / name)
        self.url, self.name = url, name
        self.catalog = Catalog(Connection(url, name))

    def sync(self) -> int:
        return self.catalog.sync_from(self.archive.ledger)

    def close(self) -> None:
        self.catalog.close()
        self.archive.ledger.close()


@pytest.fixture
def nodes(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Node, Node]]:
    a, b = Node(tmp_path, postgres_url, "node-a"), Node(tmp_path, postgres_url, "node-b")
    yield a, b
    a.close()
    b.close()


def ids(catalog: Catalog, **kw: object) -> list[str]:
    return [r["id"] for r in catalog.search(Query(**kw))]  # type: ignore[arg-type]


def test_every_node_finds_every_nodes_recordings_and_plays_only_its_own(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    # The same ledger indexes on both nodes: a gap and an operator action each, at the same index.
    a.archive.recording("rec-a", unit="bc-01", case=CASE, action="act-1", gap=(3.0, 5.0), segments=3)
    b.archive.recording("rec-b", unit="bc-02", case=CASE, action="act-1", gap=(3.0, 5.0), segments=3,
                        opened=T0 + 60)
    for node in (a, b):
        node.archive.append("operator_action", {"seq": 1, "at": "2026-09-21T12:00:00.000Z", "verb": "action.created",
                                                "subject": node.name, "detail": {"unit_id": f"bc-{node.name}"}},
                            actor="user:op")
    b.archive.append("snapshot_sealed", {"snapshot_id": "snap-b", "path": "snapshots/snap-b.jpg", "sha256": "0" * 64,
                                         "bytes": 10, "unit_id": "bc-02", "received_at": "2026-09-21T12:00:00.000Z"})
    assert a.sync() == a.archive.ledger.size and b.sync() == b.archive.ledger.size

    for node in (a, b):
        assert ids(node.catalog) == ["rec-b", "rec-a"]
        assert ids(node.catalog, case_number=CASE, unit_id="bc-02") == ["rec-b"]
        for rid in ("rec-a", "rec-b"):
            rec = node.catalog.recording(rid)
            assert rec is not None and rec["gap_count"] == 1 and rec["segment_count"] == 3
    gap_at = [[e["index"] for e in n.archive.ledger.entries() if e["type"] == "gap"] for n in (a, b)]
    assert gap_at[0] == gap_at[1] and len(gap_at[0]) == 1

    # A segment is played where its file is: the other node names the node that has it.
    here, there = a.catalog.segment("rec-a", 1), a.catalog.segment("rec-b", 1)
    assert here is not None and here.elsewhere is None
    assert there is not None and there.elsewhere == "node-b" and there.path == "recordings/rec-b/000001.webm"
    other = b.catalog.segment("rec-a", 2)
    assert other is not None and other.elsewhere == "node-a"
    still, own = a.catalog.snapshot("snap-b"), b.catalog.snapshot("snap-b")
    assert still is not None and still.elsewhere == "node-b" and own is not None and own.elsewhere is None
    assert [s["snapshot_id"] for s in a.catalog.snapshots(StillQuery(unit_id="bc-02"))] == ["snap-b"]

    # What acts on the node's own files and ledger reads only its own part.
    recs, live = a.catalog.retention_view()
    assert [r["id"] for r in recs] == ["rec-a"] and live == 3
    assert [r["recording_id"] for r in b.catalog.action_recordings("act-1")] == ["rec-b"]
    last = a.archive.ledger.size - 1
    assert a.catalog.operator_action_seqs(-1) == [(1, last)] and a.catalog.last_operator_action_seq() == 1
    trail = a.catalog.operator_actions()
    assert sorted(r["subject"] for r in trail) == ["node-a", "node-b"], "the audit trail of every node"
    by_unit = b.catalog.operator_actions(["json_extract(detail, '$.unit_id') = ?", "verb LIKE ? ESCAPE '\\'"],
                                         ["bc-node-a", "action.%"])
    assert [r["subject"] for r in by_unit] == ["node-a"]

    # Statistics cover every node: both units' segments are in the day.
    [day] = a.catalog.stats_days([(MIDNIGHT - DAY, MIDNIGHT)], MIDNIGHT + 5 * DAY)
    assert sorted(day.spans) == ["bc-01", "bc-02"] and day.segments_sealed == 6 and len(day.gaps) == 2
    assert a.catalog.live_bytes() == b.catalog.live_bytes() > 0


def test_a_rebuild_of_one_nodes_part_leaves_the_others_alone(nodes: tuple[Node, Node], tmp_path: Path,
                                                             postgres_url: str) -> None:
    a, b = nodes
    a.archive.recording("rec-a")
    b.archive.recording("rec-b", opened=T0 + 60)
    a.sync()
    before = a.catalog.recording("rec-a")

    # node-b's part was built from another ledger (a longer one): it is rebuilt from node-b's own.
    stranger = FakeArchive(tmp_path / "stranger")
    for i in range(3):
        stranger.recording(f"rec-x{i}", opened=T0 + 100 * i)
    b.catalog.sync_from(stranger.ledger)
    assert stranger.ledger.size > b.archive.ledger.size
    assert set(ids(a.catalog)) == {"rec-a", "rec-x0", "rec-x1", "rec-x2"}
    b.sync()
    assert ids(a.catalog) == ["rec-b", "rec-a"] and a.catalog.recording("rec-a") == before
    stranger.ledger.close()

    # A node opened again finds its place in its part; a second process of node-a shares it.
    b.catalog.close()
    b.catalog = Catalog(Connection(postgres_url, "node-b"))
    assert b.catalog.next_index == b.archive.ledger.size and b.sync() == 0
    again = Catalog(Connection(postgres_url, "node-a"))
    assert again.next_index == a.archive.ledger.size
    again.reset()
    assert ids(b.catalog) == ["rec-b"], "node-a's rows are gone, node-b's are not"
    assert again.sync_from(a.archive.ledger) == a.archive.ledger.size
    assert ids(b.catalog) == ["rec-b", "rec-a"]
    again.close()


def test_a_hold_set_on_one_node_holds_on_every_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.archive.recording("rec-a", case=CASE)
    b.archive.recording("rec-b", case=CASE, opened=T0 + 60)
    a.archive.append("hold_set", {"case_number": CASE, "reason": "appeal"}, actor="user:sup")
    a.sync()
    b.sync()
    assert b.catalog.held_cases() == {CASE}, "node-b's retention keeps the case"
    [hold] = b.catalog.holds()
    assert hold["set_by"] == "user:sup" and hold["recordings"] == 2
    found = b.catalog.recording("rec-b")
    assert found is not None and found["held"]
    b.archive.append("hold_released", {"case_number": CASE}, actor="user:sup")
    b.sync()
    assert a.catalog.held_cases() == set() and a.catalog.holds() == []


def test_a_node_without_a_name_is_refused(postgres_url: str) -> None:
    with pytest.raises(ValueError):
        Connection(postgres_url, "")


def test_a_lost_connection_is_opened_again(nodes: tuple[Node, Node], postgres_url: str) -> None:
    a, b = nodes
    a.archive.recording("rec-a")
    a.sync()
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # an administrator ends node-a's session
        ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = 'evidence_catalog node-a'").fetchall()
        assert ended == [(True,)]
    assert ids(a.catalog) == ["rec-a"], "the search meets the loss, connects again and runs"
    a.archive.recording("rec-a2", opened=T0 + 60)
    assert a.sync() > 0 and ids(b.catalog) == ["rec-a2", "rec-a"]
