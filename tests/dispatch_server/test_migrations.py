"""The database's schema versions: a database made before versions existed (a file the release of
2026-12-02 wrote, committed as a fixture) opens in this code with nothing lost and is served; a
newer schema than this code knows is refused with a clear message and left untouched."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_server.stores import migrations
from dispatch_server.stores.database import SqliteDatabase
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.secrets import remember
from tests.support.server import cli, write_config
from utctime import iso_millis

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dispatch-2026-12-02.sqlite3"
# What the fixture holds (made through the API of the release of 2026-12-02, archive off).
PASSWORD = "Fixture-pass-2026"
ACTION, INSTRUCTION = "act-0d759b599944", "ins-a1eb36b5afd9cc17"


def copy(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(FIXTURE, data_dir / "dispatch.sqlite3"))


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_database_made_before_versions_opens_with_every_row_kept(tmp_path: Path) -> None:
    path = copy(tmp_path / "data")
    before = contents(path)
    assert before["actions"] and before["instructions"] and before["alerts"] and before["users"], "a real fixture"
    db = SqliteDatabase(tmp_path / "data")
    assert db.migrated == (0, migrations.LATEST)
    db.close()
    after = contents(path)
    for table, rows in before.items():
        assert after[table] == rows, f"{table} changed"
    assert {"stats_days", "stats_changes"} <= set(after), "version 2's tables"
    conn = sqlite3.connect(path)
    assert migrations.version(conn) == migrations.LATEST
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"stats_instructions_ins", "stats_instructions_upd", "stats_alerts_del"} <= triggers
    conn.close()
    again = SqliteDatabase(tmp_path / "data")
    assert again.migrated == (migrations.LATEST, migrations.LATEST), "opened again: nothing to do"
    again.close()


async def test_the_server_serves_what_the_old_database_holds(make_live: Any, http: aiohttp.ClientSession,
                                                             tmp_path: Path) -> None:
    copy(tmp_path / "data")
    live: LiveServer = await make_live(archive={"enabled": False})
    op = await live.login("op1", PASSWORD)
    status, actions = await api(http, "GET", f"{live.url}/api/actions", op)
    assert status == 200
    [action] = [a for a in actions["actions"] if a["id"] == ACTION]
    assert action["title"] == "迁移前的查封" and action["state"] == "running" and action["units"] == ["bc-07"]
    status, found = await api(http, "GET", f"{live.url}/api/instructions?unit=bc-07", op)
    assert status == 200 and INSTRUCTION in {i["id"] for i in found["instructions"]}
    status, alerts = await api(http, "GET", f"{live.url}/api/alerts", op)
    assert status == 200 and any(a["kind"] == "sos" and a["action_id"] == ACTION for a in alerts["alerts"])
    sup = await live.login("sup1", PASSWORD)
    status, stats = await api(http, "GET", f"{live.url}/api/stats?period=custom&from=2026-12-01&to=2026-12-31", sup)
    assert status == 200 and stats["totals"]["actions"]["started"] >= 1
    assert stats["totals"]["instructions"]["total"] >= 1 and stats["totals"]["alerts"]["sos"] >= 1


def test_migrate_says_what_it_does_and_check_says_whether_it_is_needed(tmp_path: Path) -> None:
    path = copy(tmp_path / "data")
    config = write_config(tmp_path / "config.toml", tmp_path / "data")
    out = cli(config, "migrate", "--check")
    assert out.returncode == 1 and f"schema version 0; this release uses {migrations.LATEST}" in out.stdout, out
    assert digest(path) == digest(FIXTURE), "--check changes nothing"
    out = cli(config, "migrate")
    assert out.returncode == 0 and f"schema version 0 → {migrations.LATEST}" in out.stdout, out
    assert "statistics' day summaries" in out.stdout
    out = cli(config, "migrate", "--check")
    assert out.returncode == 0 and "up to date" in out.stdout, out


def test_a_newer_schema_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = copy(tmp_path / "data")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 7}")
    conn.close()
    before = digest(path)
    config = write_config(tmp_path / "config.toml", tmp_path / "data")
    for args in (("serve",), ("migrate",), ("migrate", "--check"), ("list-units",)):
        out = cli(config, *args)
        assert out.returncode == 2, (args, out)
        assert f"schema version {migrations.LATEST + 7}" in out.stderr and "newer release" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr, out.stderr
    assert digest(path) == before, "refused: the file is untouched"


COURT = Path(__file__).resolve().parents[1] / "fixtures" / "court-2026-12-03"
# A whole data directory of the release of 2026-12-03 (before PostgreSQL), made by `dispatch-server serve
# --demo 1` with 2-second segments and stopped with SIGTERM: the database, the archive (ledger, one
# recording of three segments), its catalog, the GPS tracks and the keys.
COURT_RECORDING = "rec-20261203T065429Z-66000fce"


async def test_a_whole_data_directory_of_the_previous_release_is_served(
        tmp_path: Path, make_live: Any, http: aiohttp.ClientSession) -> None:
    """Today's archive catalog and tracks file open in this code: the recording is found with its
    segments and the close the ledger holds, and the unit's whole track is there."""
    data = tmp_path / "data"
    shutil.copytree(COURT, data)
    catalog_before = contents(data / "catalog.sqlite3")
    tracks_before = contents(data / "tracks.sqlite3")
    assert catalog_before["segments"] and tracks_before["fixes"], "a real fixture"
    live: LiveServer = await make_live()
    password = remember((data / "initial-admin-password").read_text().strip())
    token = await live.login("admin", password)
    status, found = await api(http, "GET", f"{live.url}/api/recordings?unit_id=sim-01", token)
    assert status == 200, found
    (rec,) = [r for r in found["recordings"] if r["id"] == COURT_RECORDING]
    assert rec["unit_id"] == "sim-01" and rec["segment_count"] == len(catalog_before["segments"]) == 3
    assert rec["state"] == "closed" and rec["end_cause"] == "server_stopped", rec  # synced from the ledger
    fixes = len(tracks_before["fixes"])
    times = sorted(r[1] for r in tracks_before["fixes"])
    since, until = iso_millis(times[0] - 1).replace("+", "%2B"), iso_millis(times[-1] + 1).replace("+", "%2B")
    status, track = await api(http, "GET", f"{live.url}/api/units/sim-01/track?from={since}&to={until}", token)
    assert status == 200, track
    assert len(track["features"][0]["geometry"]["coordinates"]) == fixes


def test_a_newer_track_store_stops_the_server_with_a_message_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tracks = data / "tracks.sqlite3"
    conn = sqlite3.connect(tracks)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    out = cli(write_config(tmp_path / "config.toml", data), "serve")
    assert out.returncode == 2, out
    assert f"GPS tracks in {tracks} have schema version 9" in out.stderr and "newer release" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
