"""Positions end to end: msgpack batches, tracks (GeoJSON/GPX), staleness, geofences, nearest units."""

from __future__ import annotations

import asyncio
import random
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgpack
import psycopg

from dispatch_server.position_feed import PositionFeed
from geo.distance import haversine_m
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.support.unit_client import Console, RawUnit


async def test_batches_are_validated_stored_and_served_as_tracks(
    make_live: object, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(geo={"stale_after_s": 5})  # type: ignore[operator]
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    unit = await RawUnit(live.url, "bc-01", token).connect()
    t0 = time.time() - 120
    fixes = [{"lat": 38.04 + i * 1e-4, "lon": 114.51, "ts": t0 + i, "speed": 1.2} for i in range(100)]
    ack = await unit.call("positions", msgpack.packb(fixes))
    assert ack == {"ok": True, "accepted": 100, "duplicates": 0, "rejected": []}
    # A resend after a reconnect is harmless; bad fixes are named, good ones in the same batch kept.
    mixed = fixes[:10] + [{"lat": 95, "lon": 0, "ts": t0}, {"lat": 1, "lon": 1, "ts": time.time() + 3600},
                          {"lat": 38.1, "lon": 114.6, "ts": t0 + 110}, "junk"]
    ack = await unit.call("positions", msgpack.packb(mixed))
    assert ack["accepted"] == 1 and ack["duplicates"] == 10
    assert [r["index"] for r in ack["rejected"]] == [10, 11, 13]
    assert "lat" in ack["rejected"][0]["error"] and "future" in ack["rejected"][1]["error"]
    for garbage in (b"\xc1\xc1\xc1", b"not msgpack at all \xff", msgpack.packb({"lat": 1}), "text not bytes",
                    msgpack.packb([{}] * 501)):
        refused = await unit.call("positions", garbage)
        assert refused["ok"] is False and refused["error"]["code"] == "bad_message", refused
    assert unit.sio.connected

    auth = {"Authorization": f"Bearer {op}"}
    frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1))
    async with http.get(f"{live.url}/api/units/bc-01/track?from={frm}", headers=auth) as r:
        assert r.status == 200 and r.content_type == "application/geo+json"
        doc = await r.json()
    assert doc["properties"]["count"] == 101
    line = next(f for f in doc["features"] if f["geometry"]["type"] == "LineString")
    assert line["geometry"]["coordinates"][0] == [114.51, 38.04]  # RFC 7946: [lon, lat]
    async with http.get(f"{live.url}/api/units/bc-01/track?from={frm}&format=gpx", headers=auth) as r:
        assert r.status == 200 and r.content_type == "application/gpx+xml"
        root = ET.fromstring(await r.text())
    assert len(root.findall(".//{http://www.topografix.com/GPX/1/1}trkpt")) == 101
    for bad in ("from=yesterday", "format=kml", f"from={frm}&to=2000-01-01T00:00:00Z"):
        async with http.get(f"{live.url}/api/units/bc-01/track?{bad}", headers=auth) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_query"
    async with http.get(f"{live.url}/api/units/ghost/track", headers=auth) as r:
        assert r.status == 404

    # The live position is the newest fix; it is 10 s old, over the 5 s staleness threshold.
    async with http.get(f"{live.url}/api/units", headers=auth) as r:
        [u] = (await r.json())["units"]
    assert u["position"]["lat"] == 38.1 and u["stale"] is True and u["fix_age_s"] >= 9
    assert (await unit.call("position", {"lat": 38.2, "lon": 114.6, "ts": time.time()}))["ok"]
    async with http.get(f"{live.url}/api/units", headers=auth) as r:
        [u] = (await r.json())["units"]
    assert u["position"]["lat"] == 38.2 and u["stale"] is False
    await unit.close()


async def test_moves_reach_consoles_as_lists_and_a_first_fix_as_unit_status(
    make_live: Any, mode: dict[str, Any]
) -> None:
    """On one node in memory, and on a node in Redis mode (the lists go through Redis like any event)."""
    live: LiveServer = await make_live(**mode)
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    units = [await RawUnit(live.url, f"bc-{i:02d}", live.add_unit(f"bc-{i:02d}")).connect() for i in range(5)]
    t0 = time.time() - 10

    def fix(i: int, k: int) -> bytes:
        return cast(bytes, msgpack.packb([{"lat": 38 + i / 100, "lon": 114.5 + k / 1000, "ts": t0 + k}]))

    # A unit's first fix changes its whole view (it appears on the map): a full unit_status.
    for i, unit in enumerate(units):
        assert (await unit.call("positions", fix(i, 0)))["ok"]
        s = await console.next("unit_status", lambda s, u=unit.unit_id: s["id"] == u and s["position"] is not None)
        assert s["position"]["lat"] == 38 + i / 100
    # Later fixes of all units come as unit_positions items, newest last, never one per fix as unit_status.
    for k in range(1, 6):
        acks = await asyncio.gather(*(unit.call("positions", fix(i, k)) for i, unit in enumerate(units)))
        assert all(a["ok"] for a in acks)
    seen: dict[str, list[float]] = {unit.unit_id: [] for unit in units}
    while any(not lons or lons[-1] != 114.505 for lons in seen.values()):
        item = await console.next("unit_positions")
        assert set(item) == {"id", "position", "last_seen", "fix_age_s", "stale"}
        assert item["stale"] is False and 4 <= item["fix_age_s"] <= 60 and item["last_seen"].endswith("Z")
        seen[item["id"]].append(item["position"]["lon"])
    assert all(lons == sorted(lons) for lons in seen.values())
    while not console.queues["unit_status"].empty():
        assert console.queues["unit_status"].get_nowait()["position"]["lon"] == 114.5
    for unit in units:
        await unit.close()
    await console.close()


async def test_the_feed_sends_each_moved_unit_once_per_interval_with_its_newest_fix() -> None:
    pushed: list[list[dict[str, Any]]] = []
    got = asyncio.Event()

    async def push(items: list[dict[str, Any]]) -> None:
        pushed.append(items)
        got.set()

    feed = PositionFeed(push, stale_after_s=30, interval_s=0.2, clock=lambda: 1000.0)
    feed.add("a", {"lat": 1}, 990.0, 999.0)  # after a quiet spell: out at once
    await asyncio.wait_for(got.wait(), 5)
    got.clear()
    for k in range(10):  # within the interval: only the newest goes out, in the next list
        feed.add("a", {"lat": k}, 990.0 + k, 999.0)
    feed.add("b", {"lat": 5}, 950.0, 999.0)
    await asyncio.wait_for(got.wait(), 5)
    assert pushed[0] == [{"id": "a", "position": {"lat": 1}, "last_seen": "1970-01-01T00:16:39Z", "fix_age_s": 10.0,
                          "stale": False}]
    assert [(i["id"], i["position"]["lat"], i["fix_age_s"], i["stale"]) for i in pushed[1]] == [
        ("a", 9, 1.0, False), ("b", 5, 50.0, True)]
    await feed.close()
    feed.add("c", {"lat": 1}, 999.0, 999.0)  # closed: ignored
    assert len(pushed) == 2


async def test_a_stale_unit_comes_back_with_a_full_unit_status(make_live: Any) -> None:
    live: LiveServer = await make_live(geo={"stale_after_s": 5})
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    unit = await RawUnit(live.url, "bc-01", live.add_unit("bc-01")).connect()
    assert (await unit.call("positions", msgpack.packb([{"lat": 38.04, "lon": 114.51, "ts": time.time() - 60}])))["ok"]
    first = await console.next("unit_status", lambda s: s["position"] is not None)
    assert first["stale"] is True
    # The stale sweep tells operators, and from then on the unit counts as shown stale.
    await console.next("unit_status", lambda s: s["stale"])
    assert (await unit.call("positions", msgpack.packb([{"lat": 38.05, "lon": 114.51, "ts": time.time()}])))["ok"]
    back = await console.next("unit_status", lambda s: s["position"]["lat"] == 38.05)
    assert back["stale"] is False and back["online"] is True
    await unit.close()
    await console.close()


async def test_crossing_the_action_area_gives_one_exit_and_one_enter(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)  # circle 200 m around 38.04, 114.51
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    unit = await RawUnit(live.url, "bc-01", token).connect()
    now = time.time()
    # inside → jitter inside → out (300 m north) → further out → back inside → inside
    path = [(38.0400, 114.51), (38.0401, 114.51), (38.0427, 114.51), (38.0440, 114.51), (38.0405, 114.51),
            (38.0400, 114.5101)]
    for i, (lat, lon) in enumerate(path):
        assert (await unit.call("positions", msgpack.packb([{"lat": lat, "lon": lon, "ts": now - 10 + i}])))["ok"]
    exit_alert = await console.next("alert", lambda a: a["kind"] == "geofence_exit")
    enter_alert = await console.next("alert", lambda a: a["kind"] == "geofence_enter")
    assert exit_alert["action_id"] == enter_alert["action_id"] == action["id"]
    _, alerts = await api(http, "GET", f"{live.url}/api/alerts", op)
    kinds = [a["kind"] for a in alerts["alerts"] if a["kind"].startswith("geofence")]
    assert sorted(kinds) == ["geofence_enter", "geofence_exit"]
    live.add_user("sup", "supervisor")
    _, trail = await api(http, "GET", f"{live.url}/api/audit?subject={action['id']}", await live.login("sup"))
    assert [e["verb"] for e in trail["entries"] if "geofence" in e["verb"]] == ["action.geofence_enter",
                                                                                "action.geofence_exit"]
    frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    async with http.get(f"{live.url}/api/units/bc-01/track?from={frm}", headers={"Authorization": f"Bearer {op}"}) as r:
        assert (await r.json())["properties"]["case_numbers"] == [action["case_number"]]
    await unit.close()
    await console.close()


async def test_nearest_units_match_brute_force(
    make_live: Any, mode: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    """On one node in memory, and on a node in Redis mode (positions in Redis GEO, shared by nodes)."""
    live: LiveServer = await make_live(**mode)
    live.add_user("op", "operator")
    op = await live.login("op")
    rng = random.Random(7)
    units = {}
    for i in range(40):
        uid = f"u{i:02d}"
        token = live.add_unit(uid)
        lat, lon = 38 + rng.uniform(-0.5, 0.5), 114.5 + rng.uniform(-0.5, 0.5)
        unit = await RawUnit(live.url, uid, token).connect()
        assert (await unit.call("position", {"lat": lat, "lon": lon, "ts": time.time()}))["ok"]
        units[uid] = (lat, lon, unit)
    auth = {"Authorization": f"Bearer {op}"}
    for _ in range(20):
        qlat, qlon = 38 + rng.uniform(-0.6, 0.6), 114.5 + rng.uniform(-0.6, 0.6)
        async with http.get(f"{live.url}/api/units/nearest?lat={qlat}&lon={qlon}&k=5", headers=auth) as r:
            got = [(u["id"], u["distance_m"]) for u in (await r.json())["units"]]
        brute = sorted((haversine_m(qlat, qlon, lat, lon), uid) for uid, (lat, lon, _) in units.items())[:5]
        assert [uid for uid, _ in got] == [uid for _, uid in brute]
        assert all(abs(d - b) < 0.5 for (_, d), (b, _) in zip(got, brute, strict=True))
    for bad in ("lat=91&lon=0", "lat=x&lon=0", "lon=1", "lat=1&lon=1&k=0"):
        async with http.get(f"{live.url}/api/units/nearest?{bad}", headers=auth) as r:
            assert r.status == 400
    # available=true leaves out units that are offline (once the server has seen it go).
    console = await Console(live.url, op).connect()
    await units["u00"][2].close()
    await console.next("unit_status", lambda u: u["id"] == "u00" and not u["online"], timeout=30)
    await console.close()
    lat0, lon0, _ = units["u00"]
    async with http.get(f"{live.url}/api/units/nearest?lat={lat0}&lon={lon0}&k=1&available=true", headers=auth) as r:
        [first] = (await r.json())["units"]
    assert first["id"] != "u00"
    for _, _, unit in list(units.values())[1:]:
        await unit.close()


async def test_tracks_on_postgresql_are_served_by_every_node(
    make_live: Any, postgres_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """``[storage] url`` puts the tracks in PostgreSQL: a node with another data directory on the
    same database serves the track a unit sent through the first one."""
    first: LiveServer = await make_live(storage={"url": postgres_url})
    token = first.add_unit("bc-01")
    first.add_user("op", "operator")
    unit = await RawUnit(first.url, "bc-01", token).connect()
    t0 = time.time() - 120
    fixes = [{"lat": 38.04 + i * 1e-4, "lon": 114.51, "ts": t0 + i + 0.25, "speed": 1.2} for i in range(60)]
    assert await unit.call("positions", msgpack.packb(fixes)) == {"ok": True, "accepted": 60, "duplicates": 0,
                                                                  "rejected": []}
    ack = await unit.call("positions", msgpack.packb(fixes[50:] + [{"lat": 38.1, "lon": 114.6, "ts": t0 + 70}]))
    assert ack["accepted"] == 1 and ack["duplicates"] == 10  # a resend is recognised in PostgreSQL too
    await unit.close()
    assert not (first.settings.data_dir / "tracks.sqlite3").exists()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM track_fixes WHERE unit_id = 'bc-01'").fetchone() == (61,)

    second: LiveServer = await make_live(storage={"url": postgres_url, "data_dir": str(tmp_path / "second")})
    assert second.settings.data_dir != first.settings.data_dir
    frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1))
    docs = []
    for node in (first, second):
        auth = {"Authorization": f"Bearer {await node.login('op')}"}
        async with http.get(f"{node.url}/api/units/bc-01/track?from={frm}", headers=auth) as r:
            assert r.status == 200, await r.text()
            docs.append(await r.json())
    for doc in docs:
        assert doc["properties"]["count"] == 61
        points = [f for f in doc["features"] if f["geometry"]["type"] == "Point"]
        assert [p["geometry"]["coordinates"] for p in points] == [[114.51, 38.04 + i * 1e-4] for i in range(60)] + [
            [114.6, 38.1]]
    assert docs[0]["features"] == docs[1]["features"]
