"""The operators' audit trail in the evidence ledger (issue #15, finding 3): what ``/api/audit``
shows is what the ledger holds, so editing or erasing rows in the database changes nothing, and
``dispatch-audit verify`` checks every operator action."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_server.app import create_app
from dispatch_server.appkeys import ACCOUNTS, ARCHIVE, AUDIT_LEDGER, AUTH
from dispatch_server.auth import hash_token, new_token
from dispatch_server.config import Settings
from recordings.ledger import ENTRIES_FILE
from recordings.verify import verify_archive
from tests.conftest import OPERATOR_PASSWORD, settings_for
from tests.dispatch_server.test_actions import ACTION, api
from tests.recordings.archive_support import entries


async def start(aiohttp_server: Any, settings: Settings) -> tuple[Any, str]:
    app = create_app(settings)
    server = await aiohttp_server(app)
    return server, str(server.make_url("")).rstrip("/")


async def login(http: aiohttp.ClientSession, url: str, name: str) -> str:
    async with http.post(f"{url}/api/login", json={"username": name, "password": OPERATOR_PASSWORD}) as r:
        return str((await r.json())["token"])


def add_user(app: Any, name: str, role: str) -> None:
    app[ACCOUNTS].add_user(name, role, app[AUTH].hash_password(OPERATOR_PASSWORD), time.time())


def add_units(app: Any) -> None:
    for unit in ACTION["units"]:
        app[ACCOUNTS].add_unit(unit, "body", hash_token(new_token()), time.time())


def db(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.data_dir / "dispatch.sqlite3", isolation_level=None)


# The operators' own trail only: no procedure rule that would add the server's rule breaks to it.
NO_RULES = {"rules": [{"type": ACTION["type"], "min_recorders": 0, "record_before_start": False,
                       "stay_in_area": False, "notice_within_s": 0}]}


async def test_finding_3_erasing_or_editing_audit_rows_in_the_database_changes_nothing(
        aiohttp_server: Any, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    settings = settings_for(tmp_path, procedure=NO_RULES)
    server, url = await start(aiohttp_server, settings)
    add_user(server.app, "op", "operator")
    add_units(server.app)
    add_user(server.app, "sup", "supervisor")
    op = await login(http, url, "op")
    status, action = await api(http, "POST", f"{url}/api/actions", op, ACTION)
    assert status == 201
    aid = action["id"]
    assert (await api(http, "POST", f"{url}/api/actions/{aid}/start", op))[0] == 200
    await server.app[AUDIT_LEDGER].ship()
    archive = settings.archive_dir
    shipped = [e for e in entries(archive) if e["type"] == "operator_action" and e["data"]["subject"] == aid]
    assert [(e["actor"], e["data"]["verb"]) for e in shipped] == [("user:op", "action.created"),
                                                                 ("user:op", "action.started")]

    with db(settings) as conn:  # whoever can write the database
        conn.execute("DELETE FROM audit WHERE subject=? AND verb='action.started'", (aid,))
        conn.execute("UPDATE audit SET actor='someone-else' WHERE subject=?", (aid,))
    sup = await login(http, url, "sup")
    _, trail = await api(http, "GET", f"{url}/api/audit?subject={aid}", sup)
    assert [(e["actor"], e["verb"]) for e in reversed(trail["entries"])] == [("op", "action.created"),
                                                                           ("op", "action.started")]
    assert all(isinstance(e["ledger_index"], int) for e in trail["entries"])

    server.app[ARCHIVE].ledger.sign_tree_head()
    pem = server.app[ARCHIVE].ledger.public_key_pem()
    report = verify_archive(archive, pem)
    assert report.failures == [] and report.operator_actions >= 2
    await server.close()

    # Editing the ledger instead is caught by verify and refused by the next start.
    path = archive / ENTRIES_FILE
    path.write_bytes(path.read_bytes().replace(b'"actor":"user:op"', b'"actor":"user:ox"', 1))
    assert "chain_broken" in [f.kind for f in verify_archive(archive, pem).failures]
    again, _ = await start(aiohttp_server, settings)
    assert again.app[ARCHIVE].refused
    await again.close()


async def test_rows_a_crash_left_behind_are_shipped_once_and_a_vanished_row_is_recorded(
        aiohttp_server: Any, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    settings = settings_for(tmp_path)
    server, url = await start(aiohttp_server, settings)
    add_user(server.app, "op", "operator")
    add_units(server.app)
    op = await login(http, url, "op")
    status, action = await api(http, "POST", f"{url}/api/actions", op, ACTION)
    assert status == 201
    await server.app[AUDIT_LEDGER].ship()
    await server.close()
    with db(settings) as conn:
        # A crash after the ledger append, before the rows were marked shipped ...
        conn.execute("UPDATE audit SET ledger_index=NULL")
        # ... and rows committed with their actions but never shipped (kill -9), one then erased.
        for verb in ("action.updated", "action.started", "action.ended"):
            conn.execute("INSERT INTO audit(ts, actor, verb, subject, detail) VALUES (?,?,?,?,?)",
                         (time.time(), "op", verb, action["id"], json.dumps({})))
        conn.execute("DELETE FROM audit WHERE verb='action.started'")

    server, url = await start(aiohttp_server, settings)
    seqs = [e["data"]["seq"] for e in entries(settings.archive_dir) if e["type"] == "operator_action"]
    assert len(seqs) == len(set(seqs)), "a row was shipped twice"
    gaps = [e for e in entries(settings.archive_dir) if e["type"] == "audit_gap"]
    assert len(gaps) == 1 and gaps[0]["data"]["from_seq"] == gaps[0]["data"]["to_seq"]
    with db(settings) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit WHERE ledger_index IS NULL").fetchone()[0] == 0
    add_user(server.app, "adm", "admin")
    _, alerts = await api(http, "GET", f"{url}/api/alerts", await login(http, url, "adm"))
    assert "audit_gap" in [a["kind"] for a in alerts["alerts"]]
    server.app[ARCHIVE].ledger.sign_tree_head()
    report = verify_archive(settings.archive_dir, server.app[ARCHIVE].ledger.public_key_pem())
    assert report.failures == [] and "audit_gap" in [w.kind for w in report.warnings]


async def test_nodes_on_one_database_ship_each_row_to_one_ledger_once_and_the_next_takes_over(
        guarded_server: Any, tmp_path: Path, postgres_url: str, http: aiohttp.ClientSession) -> None:
    """Two nodes on one PostgreSQL database write audit rows in turn: one node ships the whole trail
    (each row in one ledger, once; their interleaved rows are no hole, so no ``audit_gap``). When that
    node stops, the other ships what comes next, after what was shipped."""
    import asyncio

    from dispatch_server.appkeys import DATABASE

    servers: dict[str, Any] = {}
    for name in ("node-a", "node-b"):
        settings = settings_for(tmp_path / name, storage={"url": postgres_url}, server={"node_id": name})
        app = create_app(settings)
        servers[name] = (await guarded_server(app), settings)
    a_app = servers["node-a"][0].app
    add_user(a_app, "op", "operator")
    add_units(a_app)
    urls = {name: str(s.make_url("")).rstrip("/") for name, (s, _) in servers.items()}

    async def act(name: str, n: int) -> None:
        token = await login(http, urls[name], "op")
        status, body = await api(http, "POST", f"{urls[name]}/api/actions", token, {**ACTION, "title": f"第{n}次"})
        assert status == 201, body

    async def all_shipped(name: str) -> list[int]:
        db = servers[name][0].app[DATABASE]
        deadline = time.monotonic() + 60
        while await db.run(db.query, "SELECT COUNT(*) FROM audit WHERE ledger_index IS NULL") != [(0,)]:
            assert time.monotonic() < deadline, "audit rows not shipped"
            await asyncio.sleep(0.1)
        return sorted(r[0] for r in await db.run(db.query, "SELECT n FROM audit"))

    def shipped_by(name: str) -> list[int]:
        found = entries(servers[name][1].archive_dir)
        assert not [e for e in found if e["type"] == "audit_gap"], f"{name}: a hole that is none"
        return [e["data"]["seq"] for e in found if e["type"] == "operator_action"]

    for n in range(6):
        await act(("node-a", "node-b")[n % 2], n)
    rows = await all_shipped("node-a")
    a_seqs, b_seqs = shipped_by("node-a"), shipped_by("node-b")
    assert sorted(a_seqs + b_seqs) == rows, "each row in one ledger, once"
    shipper = "node-a" if a_seqs else "node-b"
    other = "node-b" if shipper == "node-a" else "node-a"
    assert not (a_seqs and b_seqs), "one node ships"

    await servers[shipper][0].close()  # the shipper stops; its session (and its role) ends
    for n in range(6, 10):
        await act(other, n)
    later = await all_shipped(other)
    assert sorted(shipped_by(other)) == sorted(set(later) - set(rows)), "the other node took over after it"
    assert sorted(shipped_by(shipper)) == rows
