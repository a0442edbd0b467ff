"""A three-node cluster on PostgreSQL + Redis loses nothing acknowledged when a node dies: real
``dispatch-server`` processes, one killed with SIGKILL while 200 instructions are on their way to
the unit it serves, and a real ``field-client`` that knows every node (docs/cluster.md, "Fail-over").
Also: the writers of several nodes keep each unit's ``seq`` gap-free and race-free."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import psycopg
import pytest
import socketio
from aiortc import RTCSessionDescription

from field_client.encoded_loop import EncodedLoop
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_delivery_processes import applied_lines
from tests.support.cluster import node_config, published_on, start_whip_unit
from tests.support.peers import Viewer, make_publisher, make_viewer, whep_view
from tests.support.processes import Process
from tests.support.server import ServerProcess, add_unit, add_user, login
from tests.support.waits import until

CASE = "（2026）冀0916执777号"
INSTRUCTIONS = 200


async def outbox(postgres_url: str, unit_id: str) -> list[tuple[int, str, str]]:
    """``(seq, id, state)`` of every instruction of the unit, straight from PostgreSQL."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT seq, id, state FROM instructions WHERE unit_id=%s ORDER BY seq", (unit_id,))
        return [(int(seq), str(iid), str(state)) for seq, iid, state in await cur.fetchall()]


@pytest.mark.timeout(300)
async def test_killing_the_node_a_unit_talks_to_loses_no_instruction_alert_action_or_request(
    tmp_path: Path, postgres_url: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    cfgs = {name: node_config(tmp_path, name, postgres_url, redis_url) for name in ("node-a", "node-b", "node-c")}
    token = add_unit(cfgs["node-a"], "veh-01", "vehicle")
    add_user(cfgs["node-b"], "op", "operator", "operator-pass-1")
    add_user(cfgs["node-c"], "judge", "supervisor", "judge-pass-1")
    nodes = {name: ServerProcess(cfg).start() for name, cfg in cfgs.items()}
    a, b, c = (nodes[n] for n in ("node-a", "node-b", "node-c"))
    applied = tmp_path / "applied.jsonl"
    unit: Process | None = None
    sender: asyncio.Task[None] | None = None
    try:
        op = await login(b.url, "op", "operator-pass-1")  # a session made on one node is good on all
        judge = await login(a.url, "judge", "judge-pass-1")

        # Acknowledged before the kill, through node A: an action, an SOS alert (acknowledged by
        # the operator) and a party's footage request.
        status, action = await api(http, "POST", f"{a.url}/api/actions", op, {
            "case_number": CASE, "title": "查封 车辆", "type": "seizure", "address": "石家庄市 某路 1 号",
            "planned_at": "2026-12-03T01:00:00Z", "units": ["veh-01"], "officers": ["王法警"], "judge": "李法官"})
        assert status == 201, action
        status, started = await api(http, "POST", f"{a.url}/api/actions/{action['id']}/start", op)
        assert status == 200 and started["state"] == "running", started
        sos = await Process.start("-m", "field_client", "--server", a.url, "--server", b.url, "--unit", "veh-01",
                                  "--token", token, "--gps", "sim:38.04,114.51,50", "--sos", "需要支援")
        assert await sos.finished(timeout=60) == 0, sos.output()
        [alert_id] = [line.strip() for line in sos.lines if line.startswith("al-")]  # printed alone on stdout
        status, acked = await api(http, "POST", f"{a.url}/api/alerts/{alert_id}/ack", op)
        assert status == 200 and acked["state"] == "acknowledged", acked
        status, code = await api(http, "POST", f"{a.url}/api/party/codes", judge,
                                 {"case_number": CASE, "party_name": "张三"})
        assert status == 201, code
        async with http.post(f"{a.url}/api/party/login",
                             json={"case_number": CASE, "code": code["code"], "name": "张三"}) as r:
            assert r.status == 200, await r.text()
            party = (await r.json())["token"]
        status, request = await api(http, "POST", f"{a.url}/api/party/requests", party,
                                    {"action_id": action["id"], "reason": "查看执行过程是否合规"})
        assert status == 201, request

        # The unit knows all three nodes and talks to A.
        unit = await Process.start(
            "-m", "field_client", "--server", a.url, "--server", b.url, "--server", c.url, "--unit", "veh-01",
            "--token", token, "--applied-log", str(applied), "--video", "none", "--audio", "none", "--gps", "none",
            "--auto-ack")
        await unit.line_with(f"link connected to {a.url}", timeout=60)

        ids: list[str] = []

        async def send(first: int, last: int) -> None:
            for n in range(first, last):
                status, body = await api(http, "POST", f"{b.url}/api/instructions", op,
                                         {"unit": "veh-01", "type": "text", "text": f"指令 #{n}", "ttl_s": 3600})
                assert status == 201, body
                ids.append(body["id"])

        # The operator on node B queues instructions; the unit applies the first through A while
        # the rest are still being queued, and A dies in the middle of it.
        await send(0, 20)
        await until(lambda: len(applied_lines(applied)) >= 5, 60, "the unit applying through node A", interval=0.1)
        sender = asyncio.create_task(send(20, INSTRUCTIONS))
        await until(lambda: len(ids) >= 30, 60, "more instructions queued", interval=0.1)
        await asyncio.to_thread(a.kill, signal.SIGKILL)
        queued_at_kill, applied_at_kill = len(ids), len(applied_lines(applied))
        assert queued_at_kill < INSTRUCTIONS and applied_at_kill < INSTRUCTIONS, "the kill came too late to test"
        at_kill = await outbox(postgres_url, "veh-01")
        assert sum(state != "acknowledged" for _, _, state in at_kill) + INSTRUCTIONS - len(at_kill) > 0

        # By itself the unit tries A again, then moves on to B, and catches up there.
        await unit.line_with(f"link connected to {b.url}", timeout=60)
        await asyncio.wait_for(sender, timeout=120)
        await until(lambda: len(applied_lines(applied)) >= INSTRUCTIONS, 120, f"{INSTRUCTIONS} applied", interval=0.1)
        lines = applied_lines(applied)
        assert [line["id"] for line in lines] == ids, "every instruction applied exactly once, in order"
        assert [line["seq"] for line in lines] == list(range(1, INSTRUCTIONS + 1))

        async def all_acknowledged() -> bool:
            rows = await outbox(postgres_url, "veh-01")
            return len(rows) == INSTRUCTIONS and all(state == "acknowledged" for _, _, state in rows)

        await until(all_acknowledged, 60, "every instruction acknowledged in PostgreSQL", interval=0.1)
        assert [(seq, iid) for seq, iid, _ in await outbox(postgres_url, "veh-01")] == list(
            zip(range(1, INSTRUCTIONS + 1), ids, strict=True))
        status, listed = await api(http, "GET", f"{c.url}/api/instructions?unit=veh-01&limit=1000", op)
        assert status == 200 and len(listed["instructions"]) == INSTRUCTIONS
        assert {i["state"] for i in listed["instructions"]} == {"acknowledged"}

        # Node C serves what node A took before it died.
        status, got = await api(http, "GET", f"{c.url}/api/actions/{action['id']}", op)
        assert status == 200 and got["state"] == "running" and got["units"] == ["veh-01"], got
        status, alerts = await api(http, "GET", f"{c.url}/api/alerts", op)
        [alert] = [x for x in alerts["alerts"] if x["id"] == alert_id]
        assert alert["kind"] == "sos" and alert["state"] == "acknowledged" and "需要支援" in alert["message"]
        status, got = await api(http, "GET", f"{c.url}/api/footage-requests/{request['id']}", judge)
        assert status == 200 and got["state"] == "pending" and got["action_id"] == action["id"], got
        status, units = await api(http, "GET", f"{c.url}/api/units", op)
        [veh] = units["units"]
        assert veh["online"] and veh["node"] == "node-b", veh
        await unit.line_with(f"applied (#{INSTRUCTIONS} ", timeout=30)  # its log may trail the applied log
        assert unit.count("applied (#") == INSTRUCTIONS, "no instruction applied twice"
    finally:
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        if unit is not None:
            await unit.stop()  # fails on a traceback or an unawaited coroutine in its output
        for node in (b, c):
            node.stop()  # likewise
        a.kill()


@pytest.mark.timeout(120)
async def test_writers_on_three_nodes_keep_each_units_seq_gap_free(
    make_live: Callable[..., Awaitable[LiveServer]], tmp_path: Path, postgres_url: str, redis_url: str,
    http: aiohttp.ClientSession
) -> None:
    nodes = [await make_live(storage={"url": postgres_url, "data_dir": str(tmp_path / f"node-{i}")},
                             redis={"url": redis_url}, server={"node_id": f"node-{i}"}, archive={"enabled": False})
             for i in range(3)]
    units = ["bc-01", "bc-02", "bc-03"]
    for unit_id in units:
        nodes[0].add_unit(unit_id)
    nodes[0].add_user("op", "operator")
    tokens = [await node.login("op") for node in nodes]
    status, action = await api(http, "POST", f"{nodes[0].url}/api/actions", tokens[0], {
        "case_number": CASE, "title": "搜查", "type": "search", "address": "石家庄市 某路 2 号",
        "planned_at": "2026-12-03T01:00:00Z", "units": units[:2], "officers": ["王法警"], "judge": "李法官"})
    assert status == 201, action
    per_writer = 40

    async def writer(node: LiveServer, token: str, target: dict[str, Any]) -> None:
        for n in range(per_writer):
            status, body = await api(http, "POST", f"{node.url}/api/instructions", token,
                                     {**target, "type": "text", "text": f"#{n}", "ttl_s": 600})
            assert status == 201, body

    # Every node writes for every unit at once: one writer per unit per node, and on each node a
    # writer whose instructions go to the action's team (several units in one transaction).
    jobs = [writer(node, token, {"unit": unit_id}) for node, token in zip(nodes, tokens, strict=True)
            for unit_id in units]
    jobs += [writer(node, token, {"action": action["id"]}) for node, token in zip(nodes, tokens, strict=True)]
    await asyncio.gather(*jobs)

    for unit_id in units:
        rows = await outbox(postgres_url, unit_id)
        expected = per_writer * 3 * (2 if unit_id in units[:2] else 1)
        assert [seq for seq, _, _ in rows] == list(range(1, expected + 1)), f"{unit_id}: seqs with a gap or twice"
        assert len({iid for _, iid, _ in rows}) == expected


@pytest.mark.timeout(180)
async def test_a_unit_publishing_over_whip_publishes_on_the_node_its_link_moved_to(
    tmp_path: Path, postgres_url: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    cfgs = [node_config(tmp_path, name, postgres_url, redis_url) for name in ("node-a", "node-b")]
    token = add_unit(cfgs[0], "bc-01")
    add_user(cfgs[0], "op", "operator", "operator-pass-1")
    a, b = (ServerProcess(cfg).start() for cfg in cfgs)
    unit: Process | None = None
    viewer: Viewer | None = None
    try:
        op = await login(b.url, "op", "operator-pass-1")

        unit = await start_whip_unit([a.url, b.url], "bc-01", token)
        await until(lambda: published_on(http, b.url, op, "bc-01", "node-a"), 60, "publishing on node A", interval=0.1)
        await asyncio.to_thread(a.kill, signal.SIGKILL)
        after = len(unit.lines)
        await unit.line_with(f"link connected to {b.url}", timeout=60, after=after)
        # The WHIP session follows the link at once, not after its peer connection times out.
        await unit.line_with(f"WHIP session ends: the link moved to {b.url}", timeout=30, after=after)
        post = unit.lines.index(await unit.line_with(f"WHIP POST {b.url}/whip/bc-01", timeout=60, after=after))
        await unit.line_with("publishing via WHIP", timeout=60, after=post)
        await until(lambda: published_on(http, b.url, op, "bc-01", "node-b"), 30, "publishing on node B", interval=0.1)
        viewer = await make_viewer(audio=False)
        await whep_view(http, b.url, "bc-01", op, viewer)  # node B relays the unit's video now
        await viewer.wait_frames(10, timeout=30)
    finally:
        if viewer is not None:
            await viewer.close()
        if unit is not None:
            await unit.stop()
        b.stop()
        a.kill()


@pytest.mark.timeout(120)
async def test_a_unit_linked_to_another_node_after_a_crash_is_not_shown_publishing_there(
    tmp_path: Path, postgres_url: str, redis_url: str, http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    cfgs = [node_config(tmp_path, name, postgres_url, redis_url) for name in ("node-a", "node-b")]
    token = add_unit(cfgs[0], "bc-01")
    add_user(cfgs[0], "op", "operator", "operator-pass-1")
    a, b = (ServerProcess(cfg).start() for cfg in cfgs)
    auth = {"unit_id": "bc-01", "token": token}
    on_a, on_b = socketio.AsyncClient(reconnection=False), socketio.AsyncClient(reconnection=False)
    pub = await make_publisher(vp8_loop)
    try:
        op = await login(b.url, "op", "operator-pass-1")

        async def bc01() -> dict[str, Any]:
            status, body = await api(http, "GET", f"{b.url}/api/units", op)
            [unit] = body["units"]
            return dict(unit)

        await on_a.connect(a.url, namespaces=["/unit"], auth=auth, transports=["websocket"])
        ack = await on_a.call("publish", {"sdp": pub.pc.localDescription.sdp}, namespace="/unit", timeout=10)
        assert ack["ok"], ack
        await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        assert (await bc01())["publishing"]
        await asyncio.to_thread(a.kill, signal.SIGKILL)  # nothing tells anyone the publish ended
        await on_a.disconnect()

        # The unit links to node B and does not publish there (its camera is off now).
        await on_b.connect(b.url, namespaces=["/unit"], auth=auth, transports=["websocket"])
        unit = await bc01()
        assert unit["online"] and unit["reachable"] and unit["node"] == "node-b", unit
        assert not unit["publishing"], "node A's publish is not shown as node B's"
        await on_b.disconnect()
        await until(lambda: _offline(bc01), 30, "the unit offline", interval=0.1)
    finally:
        await pub.close()
        for client in (on_a, on_b):
            if client.connected:
                await client.disconnect()
        b.stop()
        a.kill()


async def _offline(unit: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    return not (await unit())["online"]
