"""Day summaries kept beside their rows: stored once a day has ended, used while nothing of that
day changes, redone when something does, whoever changed it and however."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from recordings import day_cache

DAY = 86400.0
D0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # a UTC midnight
DAYS = [(D0 + i * DAY, D0 + (i + 1) * DAY) for i in range(3)]
NOW = D0 + 10 * DAY  # every day of DAYS has ended


def connect(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    return c


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(tmp_path / "t.sqlite3")
    c.executescript("CREATE TABLE items (id TEXT PRIMARY KEY, at REAL, v INTEGER, note TEXT);"
                    + day_cache.schema("t") + day_cache.change_triggers("t", "items", ("ROW.at",), ("at", "v")))
    yield c
    c.close()


class Summer:
    """A summary: the sum of ``v`` over the day's items; counts the days it computed."""

    def __init__(self, format: int = 1) -> None:
        self.computed: list[float] = []
        self.format = format

    @property
    def summary(self) -> day_cache.Summary:
        return day_cache.Summary(self.format, self)

    def __call__(self, c: sqlite3.Connection, start: float, end: float) -> bytes:
        self.computed.append(start)
        total = c.execute("SELECT COALESCE(SUM(v), 0) FROM items WHERE at >= ? AND at < ?", (start, end)).fetchone()[0]
        return str(total).encode()


def read(start: float, stamp: int | None, body: bytes) -> tuple[int | None, int]:
    return stamp, int(body)


def summaries(c: sqlite3.Connection, summer: Summer, now: float = NOW,
              memo: day_cache.Decoded[tuple[int | None, int]] | None = None) -> list[tuple[int | None, int]]:
    """``(stamp, sum)`` of each day; through a new ``Decoded`` unless one is given (so that kept
    days are fetched from the table)."""
    return day_cache.summaries(c, "t", DAYS, now, summer.summary, memo or day_cache.Decoded(read))


def sums(c: sqlite3.Connection, summer: Summer, now: float = NOW) -> list[int]:
    return [v for _, v in summaries(c, summer, now)]


def test_an_ended_day_is_summed_once_and_again_only_when_one_of_its_rows_changes(db: sqlite3.Connection) -> None:
    db.executemany("INSERT INTO items VALUES (?,?,?,?)",
                   [("a", D0 + 10, 1, ""), ("b", D0 + DAY + 10, 2, ""), ("c", D0 + 2 * DAY + 10, 4, "")])
    summer = Summer()
    assert sums(db, summer) == [1, 2, 4] and len(summer.computed) == 3
    assert sums(db, summer) == [1, 2, 4] and len(summer.computed) == 3, "stored: nothing computed again"

    db.execute("UPDATE items SET v = 20 WHERE id = 'b'")  # the second day changed
    assert sums(db, summer) == [1, 20, 4] and summer.computed[3:] == [DAYS[1][0]]
    db.execute("UPDATE items SET note = 'seen' WHERE id = 'a'")  # not a column that counts
    db.execute("DELETE FROM items WHERE id = 'c'")
    assert sums(db, summer) == [1, 20, 0] and summer.computed[4:] == [DAYS[2][0]]
    db.execute("UPDATE items SET at = ? WHERE id = 'a'", (D0 + DAY + 20,))  # moved to the next day: both change
    assert sums(db, summer) == [0, 21, 0] and sorted(summer.computed[5:]) == [DAYS[0][0], DAYS[1][0]]


def test_every_way_of_writing_a_row_marks_its_hour(db: sqlite3.Connection) -> None:
    """A trigger's statement could be overruled by the conflict policy of the statement that fired
    it (INSERT OR IGNORE, UPDATE OR REPLACE ...): the marks never meet a conflict."""
    summer = Summer()
    assert sums(db, summer) == [0, 0, 0]
    for n, sql in enumerate(("INSERT OR IGNORE INTO items VALUES ('x{n}', ?, 1, '')",
                             "INSERT OR REPLACE INTO items VALUES ('x{n}', ?, 1, '')",
                             "INSERT INTO items VALUES ('x{n}', ?, 1, '') ON CONFLICT(id) DO UPDATE SET v = v + 1")):
        db.execute(sql.format(n=n), (D0 + 3600 * n,))
        assert sums(db, summer)[0] == n + 1, sql
    db.execute("UPDATE OR IGNORE items SET v = 5 WHERE id = 'x0'")
    assert sums(db, summer)[0] == 7
    db.execute("INSERT OR IGNORE INTO items VALUES ('x0', ?, 100, '')", (D0,))  # ignored: no change, same sums
    assert sums(db, summer)[0] == 7


def test_a_day_that_has_not_ended_is_summed_every_time_and_never_stored(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO items VALUES ('a', ?, 3, '')", (D0 + 2 * DAY + 5,))
    summer = Summer()
    now = D0 + 2 * DAY + 60  # during the third day
    got = summaries(db, summer, now)
    assert [s is None for s, _ in got] == [False, False, True], "the running day has no stamp"
    assert got[2][1] == 3
    summaries(db, summer, now)
    assert summer.computed.count(DAYS[2][0]) == 2 and summer.computed.count(DAYS[0][0]) == 1
    assert db.execute("SELECT COUNT(*) FROM t_days WHERE start = ?", (DAYS[2][0],)).fetchone()[0] == 0


def test_a_change_made_while_a_day_is_summed_makes_the_stored_summary_stale_not_wrong(
        db: sqlite3.Connection, tmp_path: Path) -> None:
    db.execute("INSERT INTO items VALUES ('a', ?, 1, '')", (D0 + 10,))
    other = connect(tmp_path / "t.sqlite3")  # another process's connection
    calls: list[float] = []

    def slow(c: sqlite3.Connection, start: float, end: float) -> bytes:
        body = Summer()(c, start, end)  # read in the snapshot ...
        if start == D0 and not calls:
            other.execute("UPDATE items SET v = 50 WHERE id = 'a'")  # ... while another writer changes it
        calls.append(start)
        return body

    memo = day_cache.Decoded(read)
    assert [v for _, v in day_cache.summaries(db, "t", DAYS[:1], NOW, day_cache.Summary(1, slow), memo)] == [1]
    assert [v for _, v in day_cache.summaries(db, "t", DAYS[:1], NOW, day_cache.Summary(1, slow), memo)] == [50], \
        "redone"
    assert calls == [D0, D0]
    other.close()


def test_warm_computes_only_what_is_not_current_and_a_day_is_read_once_per_stamp(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO items VALUES ('a', ?, 1, '')", (D0 + 10,))
    reads: list[tuple[float, int | None]] = []

    def counting_read(start: float, stamp: int | None, body: bytes) -> tuple[int | None, int]:
        reads.append((start, stamp))
        return read(start, stamp, body)
    memo = day_cache.Decoded(counting_read)
    assert day_cache.warm(db, "t", DAYS, NOW, Summer().summary, memo) == 3
    assert day_cache.warm(db, "t", DAYS, NOW, Summer().summary, memo) == 0
    before = summaries(db, Summer(), memo=memo)
    assert len(reads) == 3, "warmed: the requests read nothing again"
    db.execute("UPDATE items SET v = 2")
    assert day_cache.warm(db, "t", DAYS, NOW, Summer().summary, memo) == 1
    after = summaries(db, Summer(), memo=memo)
    assert after[0][0] != before[0][0] and after[0][1] == 2 and after[1:] == before[1:]
    assert len(reads) == 4, "only the changed day read again"
    assert summaries(db, Summer()) == after, "the same from the table alone"


def test_a_kept_summary_of_another_format_is_made_again(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO items VALUES ('a', ?, 1, '')", (D0 + 10,))
    old, new = Summer(format=1), Summer(format=2)
    assert sums(db, old) == [1, 0, 0] and len(old.computed) == 3
    assert sums(db, new) == [1, 0, 0] and len(new.computed) == 3, "the new code's layout: made again"
    assert sums(db, new) == [1, 0, 0] and len(new.computed) == 3, "and kept"
