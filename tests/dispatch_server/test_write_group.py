"""Write groups: the writes of many callers applied by one call, each caller answered after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch_server.stores.database import Database, SqliteDatabase
from dispatch_server.stores.write_group import WriteGroup, WriteGroupClosed


class Notes:
    """A table of notes written through a group; ``apply`` refuses empty notes and breaks on ``"boom"``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[list[str]] = []  # the items of every apply call
        db.execute("CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL)")

    def apply(self, conn: sqlite3.Connection, items: list[str]) -> list[int | Exception]:
        self.calls.append(list(items))
        out: list[int | Exception] = []
        for text in items:
            if not text:
                out.append(ValueError("empty note"))
                continue
            if text == "boom":
                raise sqlite3.OperationalError("the disk caught fire")
            out.append(conn.execute("INSERT INTO notes(text) VALUES (?)", (text,)).lastrowid or 0)
        return out

    def stored(self) -> list[str]:
        return [row[0] for row in self.db.query("SELECT text FROM notes ORDER BY n")]


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notes]:
    db = SqliteDatabase(tmp_path)
    yield Notes(db)
    db.close()


async def test_items_written_together_are_applied_in_one_call_and_answered_each(notes: Notes) -> None:
    group: WriteGroup[str, int] = WriteGroup(notes.db, notes.apply, "notes")
    first = await group.write("lone")  # a lone item goes at once, alone
    texts = [f"n{i}" for i in range(200)]
    rows = await asyncio.gather(*(group.write(t) for t in texts))
    assert first == 1 and rows == list(range(2, 202))
    assert notes.calls[0] == ["lone"] and notes.calls[1] == texts  # submitted in one loop turn: one call
    assert notes.stored() == ["lone", *texts]  # committed when answered, in the order written
    assert group.writes == 2
    await group.close()


async def test_a_refused_item_fails_only_its_own_caller(notes: Notes) -> None:
    group: WriteGroup[str, int] = WriteGroup(notes.db, notes.apply, "notes")
    results = await asyncio.gather(group.write("a"), group.write(""), group.write("b"), return_exceptions=True)
    assert isinstance(results[1], ValueError) and results[0] == 1 and results[2] == 2
    assert len(notes.calls) == 1 and notes.stored() == ["a", "b"]
    await group.close()


async def test_a_group_that_breaks_the_database_is_written_again_item_by_item(notes: Notes) -> None:
    group: WriteGroup[str, int] = WriteGroup(notes.db, notes.apply, "notes")
    results = await asyncio.gather(group.write("a"), group.write("boom"), group.write("b"), return_exceptions=True)
    assert isinstance(results[1], sqlite3.OperationalError)
    assert notes.stored() == ["a", "b"]  # the failed group left nothing behind; each good item stored alone
    assert notes.calls[0] == ["a", "boom", "b"] and sorted(notes.calls[1:]) == [["a"], ["b"], ["boom"]]
    await group.close()


async def test_close_writes_what_is_queued_then_refuses(notes: Notes) -> None:
    group: WriteGroup[str, int] = WriteGroup(notes.db, notes.apply, "notes")
    queued = [asyncio.ensure_future(group.write(f"q{i}")) for i in range(5)]
    await asyncio.sleep(0)  # queued, not yet written
    await group.close()
    assert [await q for q in queued] == [1, 2, 3, 4, 5]
    with pytest.raises(WriteGroupClosed):
        await group.write("late")
    await group.close()  # idempotent
