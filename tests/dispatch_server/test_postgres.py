"""The PostgreSQL engine (dispatch_server/stores/postgres.py, dialect.py) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from dispatch_server.stores import migrations
from dispatch_server.stores.accounts import Accounts
from dispatch_server.stores.dialect import translate
from dispatch_server.stores.migrations import SchemaTooNew
from dispatch_server.stores.postgres import PostgresDatabase
from dispatch_server.stores.write_group import WriteGroup
from sqlcompat import display
from tests.support.postgres_server import PostgresServer


def test_translation_of_sqlite_statements() -> None:
    assert translate("SELECT a FROM t WHERE b=? AND c LIKE '%?x'") == "SELECT a FROM t WHERE b=%s AND c LIKE '%?x'"
    assert translate("SELECT 100 % 7 FROM t WHERE x = ?") == "SELECT 100 %% 7 FROM t WHERE x = %s"
    assert translate("SELECT 1 FROM t WHERE unit_id IS ? AND x IS NOT ?") == \
        "SELECT 1 FROM t WHERE unit_id IS NOT DISTINCT FROM %s AND x IS DISTINCT FROM %s"
    assert translate("INSERT OR IGNORE INTO t(a, b) VALUES (?,?)") == \
        "INSERT INTO t(a, b) VALUES (%s,%s) ON CONFLICT DO NOTHING"
    assert translate("INSERT OR IGNORE INTO t(a) VALUES (?) RETURNING a") == \
        "INSERT INTO t(a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING a"
    with pytest.raises(ValueError, match="its key is not known"):
        translate("INSERT OR REPLACE INTO nowhere(a) VALUES (?)")


def test_display_hides_the_password() -> None:
    assert display("postgresql://court:s3cret@db.example:5433/dispatch") == "postgresql://court:***@db.example:5433/dispatch"
    assert display("postgresql://court@db/dispatch") == "postgresql://court@db/dispatch"


def test_a_new_database_gets_every_version_and_what_sqlite_has_built_in(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url)
    try:
        assert db.migrated == (0, migrations.LATEST)
        assert db.versions() == (migrations.LATEST, migrations.LATEST)
        row = db.query("SELECT json_extract(?, '$.a.b'), json_extract(?, '$.missing'), MAX(1, 2.5), MIN(1, 2.5)",
                       ('{"a": {"b": "x"}}', "{}"))[0]
        assert row == ("x", None, 2.5, 1.0)
        assert db.query("SELECT TOTAL(x) FROM (VALUES (1.5), (2.0)) v(x) WHERE x > ?", (5,))[0][0] == 0.0
        tables = {r[0] for r in db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"units", "users", "sessions", "actions", "instructions", "unit_seq", "alerts", "audit", "party_codes",
                "party_sessions", "party_failures", "footage_requests", "party_links", "procedure_breaks",
                "procedure_notices", "stats_days", "stats_changes", "schema_version"} <= tables
        kinds = dict(db.query("SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'instructions'"))
        assert kinds["created_at"] == "double precision" and kinds["seq"] == "bigint"
    finally:
        db.close()
    again = PostgresDatabase(postgres_url)
    assert again.migrated == (migrations.LATEST, migrations.LATEST)
    again.close()


def test_nodes_starting_together_apply_each_step_once(postgres_url: str) -> None:
    opened: list[Any] = []

    def start() -> None:
        db = PostgresDatabase(postgres_url)
        opened.append(db.migrated)
        db.close()
    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(opened) == 3 and {m[1] for m in opened} == {migrations.LATEST}
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(migrations.LATEST,)]


def test_a_newer_schema_is_refused_and_left_alone(postgres_url: str) -> None:
    PostgresDatabase(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (migrations.LATEST + 1,))
    with pytest.raises(SchemaTooNew, match=f"schema version {migrations.LATEST + 1}.*newer release"):
        PostgresDatabase(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (migrations.LATEST + 1,)


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(ConnectionError, match=r"PostgreSQL at postgresql://court:\*\*\*@127.0.0.1:1/x: .*refused") as e:
        PostgresDatabase("postgresql://court:hunter2@127.0.0.1:1/x", connect_timeout_s=1.0)
    assert "hunter2" not in str(e.value)


def test_duplicate_keys_raise_the_engine_neutral_integrity_error(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url)
    try:
        accounts = Accounts(db)
        accounts.add_unit("u-1", "body", "hash", time.time())
        with pytest.raises(KeyError):
            accounts.add_unit("u-1", "body", "hash", time.time())
        assert [u.id for u in accounts.list_units()] == ["u-1"]
    finally:
        db.close()


async def test_group_commit_rolls_back_only_the_write_that_failed(postgres_url: str) -> None:
    db = PostgresDatabase(postgres_url)
    try:
        def insert(uid: str) -> Any:
            return lambda c: c.execute("INSERT INTO units(id, kind, token_hash, created_at) VALUES (?,?,?,?)",
                                       (uid, "body", "h", 1.0)).rowcount
        results = await asyncio.gather(db.write(insert("a")), db.write(insert("a")), db.write(insert("b")),
                                       return_exceptions=True)
        assert results[0] == 1 and isinstance(results[1], psycopg.IntegrityError) and results[2] == 1
        assert sorted(r[0] for r in db.query("SELECT id FROM units")) == ["a", "b"]
    finally:
        db.close()


async def test_a_lone_write_that_fails_leaves_nothing_and_holds_no_lock(postgres_url: str) -> None:
    """A write alone in its commit that fails after writing: all it wrote is rolled back, its
    caller gets the error, and the single-writer lock is free for the next write of this node and
    of another."""
    one, two = PostgresDatabase(postgres_url), PostgresDatabase(postgres_url)
    try:
        def half(conn: Any) -> None:
            conn.execute("INSERT INTO units(id, kind, token_hash, created_at) VALUES ('half', 'body', 'h', 1.0)")
            conn.execute("INSERT INTO units(id, kind, token_hash, created_at) VALUES ('half', 'body', 'h', 1.0)")

        with pytest.raises(psycopg.IntegrityError):
            await one.write(half)
        assert await asyncio.wait_for(two.write(lambda c: c.execute(
            "INSERT INTO units(id, kind, token_hash, created_at) VALUES ('b', 'body', 'h', 1.0)").rowcount), 10) == 1
        with pytest.raises(ZeroDivisionError):
            await one.write(lambda c: c.execute("DELETE FROM units") and 1 / 0)
        assert await one.write(lambda c: c.execute(
            "INSERT INTO units(id, kind, token_hash, created_at) VALUES ('a', 'body', 'h', 1.0)").rowcount) == 1
        assert sorted(r[0] for r in one.query("SELECT id FROM units")) == ["a", "b"]
        assert one.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0] == 0
    finally:
        one.close()
        two.close()


async def test_writers_of_two_nodes_are_serialised(postgres_url: str) -> None:
    """Two databases (two nodes) read-then-write the same counter in many write groups at once: with
    the single-writer lock no increment is lost, as with SQLite's BEGIN IMMEDIATE."""
    one, two = PostgresDatabase(postgres_url), PostgresDatabase(postgres_url)
    try:
        one.execute("INSERT INTO unit_seq(unit_id, last_seq) VALUES ('u', 0)")

        def bump(conn: Any, items: list[int]) -> list[int | Exception]:
            out: list[int | Exception] = []
            for _ in items:
                last = conn.execute("SELECT last_seq FROM unit_seq WHERE unit_id = 'u'").fetchone()[0]
                time.sleep(0.001)  # widen the window a lost update would need
                conn.execute("UPDATE unit_seq SET last_seq = ? WHERE unit_id = 'u'", (last + 1,))
                out.append(last + 1)
            return out
        groups = [WriteGroup(one, bump, "one"), WriteGroup(two, bump, "two")]
        seqs = await asyncio.gather(*(groups[i % 2].write(i) for i in range(200)))
        assert sorted(seqs) == list(range(1, 201))
        assert one.query("SELECT last_seq FROM unit_seq")[0][0] == 200
        for g in groups:
            await g.close()
    finally:
        one.close()
        two.close()


async def test_a_database_that_goes_away_gets_503_and_the_server_carries_on_when_it_is_back(
        make_live: Any, http: Any) -> None:
    """PostgreSQL cut off mid-run (``pg_ctl -m immediate``): requests that need it are answered
    ``503 storage_unavailable`` saying so, nothing crashes, and once it is back the same server
    serves again without a restart, with what was written before."""
    own = PostgresServer()
    try:
        live = await make_live(storage={"url": own.fresh_database()})
        live.add_unit("bc-1")
        token = await live.admin()
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{live.url}/api/instructions", headers=headers,
                             json={"unit": "bc-1", "type": "text", "text": "前", "ttl_s": 600}) as r:
            assert r.status == 201, await r.text()
            first = await r.json()
        own.halt()
        async with http.post(f"{live.url}/api/instructions", headers=headers,
                             json={"unit": "bc-1", "type": "text", "text": "中", "ttl_s": 600}) as r:
            body = await r.json()
            assert r.status == 503, body
            assert body["error"]["code"] == "storage_unavailable"
            assert "cannot be reached" in body["error"]["message"] and "***" not in body["error"]["message"]
        own.start()
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{live.url}/api/instructions/{first['id']}", headers=headers) as r:
                if r.status == 200:
                    assert (await r.json())["payload"] == {"text": "前"}
                    break
                assert r.status == 503 and time.monotonic() < deadline, await r.text()
            await asyncio.sleep(0.2)
        async with http.post(f"{live.url}/api/instructions", headers=headers,
                             json={"unit": "bc-1", "type": "text", "text": "后", "ttl_s": 600}) as r:
            assert r.status == 201, await r.text()
            third = await r.json()
        async with http.get(f"{live.url}/api/instructions", headers=headers) as r:
            seqs = {i["id"]: i["seq"] for i in (await r.json())["instructions"]}
        assert seqs == {first["id"]: 1, third["id"]: 2}  # nothing half-written by the refused request
    finally:
        own.stop()
