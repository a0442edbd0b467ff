"""The store of rule breaks and notices (流程预警), on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

from dispatch_server.procedure_breaks import Notice, ProcedureBreak, ProcedureBreakStore
from dispatch_server.stores.database import SqliteDatabase


async def test_a_break_opens_once_closes_once_and_is_found_by_action_and_time(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path)
    store = ProcedureBreakStore(db)
    brk, new = await store.open("act-1", "min_recorders", None, 100.0, {"running": 1, "required": 2})
    assert new and brk.open and brk.detail == {"running": 1, "required": 2}
    again, new = await store.open("act-1", "min_recorders", None, 105.0)
    assert not new and again == brk  # the open break, not a second one
    other, new = await store.open("act-1", "stay_in_area", "bc-01", 101.0)
    assert new and other.unit_id == "bc-01"
    assert [b.id for b in await store.open_breaks("act-1")] == [brk.id, other.id]

    closed = await store.close(brk.id, 160.0)
    assert closed is not None and closed.ended_at == 160.0 and not closed.open
    assert await store.close(brk.id, 170.0) is None  # already closed: nothing changes
    reopened, new = await store.open("act-1", "min_recorders", None, 200.0)
    assert new and reopened.id != brk.id
    await store.record(ProcedureBreak("pb-x", "act-2", "notice", None, 300.0, 300.0, {}))

    assert [b.id for b in await store.for_action("act-1")] == [brk.id, other.id, reopened.id]
    assert [b.id for b in await store.between(0, 150)] == [brk.id, other.id]
    assert [b.id for b in await store.between(160, 199)] == [other.id]  # the open one runs on
    assert [b.id for b in await store.between(250, 400)] == [other.id, reopened.id, "pb-x"]
    assert await store.for_action("act-3") == []
    db.close()


async def test_the_first_notice_of_an_action_counts(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path)
    store = ProcedureBreakStore(db)
    first, new = await store.mark_notice(Notice("act-1", 120.0, "张三", "bc-01"))
    assert new
    kept, new = await store.mark_notice(Notice("act-1", 130.0, "unit:bc-02", "bc-02"))
    assert not new and kept == first
    assert await store.notice("act-1") == first and await store.notice("act-2") is None
    assert await store.notices_between(100, 125) == [first] and await store.notices_between(121, 200) == []
    db.close()
