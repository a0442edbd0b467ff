"""Viewers on any node (docs/cluster.md, "Viewers on any node"): a node pulls a unit's stream once
from the node it publishes on and fans it out to its own viewers; when the owner dies (SIGKILL)
the unit moves to another node by itself and the pulling node's viewers get frames again without a
new WHEP request. Real ``dispatch-server`` processes, redis-server, PostgreSQL, a real
``field-client`` and aiortc viewers."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import pytest

from dispatch_server.appkeys import AUDIT
from dispatch_server.node_tokens import NodeTokens
from field_client.encoded_loop import EncodedLoop
from tests.conftest import LiveServer
from tests.recordings.archive_support import ffprobe, of_type
from tests.support.cluster import node_config, published_on, start_whip_unit
from tests.support.peers import Viewer, make_publisher, make_viewer, whep_view, whip_publish
from tests.support.processes import Process
from tests.support.server import ServerProcess, add_unit, add_user, login
from tests.support.waits import until

SECRET = "pull-test-cluster-secret-0123456789abcdef"
METRICS_TOKEN = "pull-test-metrics-token-0123456789"


def pulling_node(tmp_path: Path, name: str, postgres_url: str, redis_url: str) -> Path:
    """A node of :func:`node_config` that pulls, with ``/metrics`` on its public port, and no periodic
    keyframe request: a keyframe a new viewer gets comes from its own request."""
    cfg = node_config(tmp_path, name, postgres_url, redis_url)
    text = cfg.read_text(encoding="utf-8").replace("[metrics]\n", f'[metrics]\ntoken = "{METRICS_TOKEN}"\n', 1)
    text += f'[cluster]\nsecret = "{SECRET}"\npull_linger_s = 1.0\npull_retry_max_s = 1.0\n'
    # into write_config's [media] section (it keeps media in the node's process): a second one is an error
    assert "[media]\n" in text, text
    text = text.replace("[media]\n", "[media]\nkeyframe_interval_s = 0\n", 1)
    cfg.write_text(text, encoding="utf-8")
    return cfg


async def metric(http: aiohttp.ClientSession, node: ServerProcess, name: str) -> float:
    """The value of one sample (``name`` with its labels, as exposed) on ``node``'s ``/metrics``."""
    async with http.get(f"{node.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        text = await r.text()
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


@pytest.mark.timeout(300)
async def test_viewers_on_another_node_share_one_pull_and_follow_the_unit_when_its_node_dies(
    tmp_path: Path, postgres_url: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    cfgs = {name: pulling_node(tmp_path, name, postgres_url, redis_url) for name in ("node-a", "node-b", "node-c")}
    token = add_unit(cfgs["node-a"], "bc-01")
    add_user(cfgs["node-a"], "op", "operator", "operator-pass-1")
    a, b, c = (ServerProcess(cfgs[n]).start() for n in ("node-a", "node-b", "node-c"))
    unit: Process | None = None
    viewers: list[Viewer] = []
    try:
        op = await login(b.url, "op", "operator-pass-1")

        unit = await start_whip_unit([a.url, c.url], "bc-01", token)
        await until(lambda: published_on(http, b.url, op, "bc-01", "node-a"), 60, "publishing on node A", interval=0.1)

        # Two viewers on node B: B pulls from A once and both get frames. The second one's keyframe
        # request reaches the unit through B's pull and A (no periodic request runs).
        for n in range(2):
            viewer = await make_viewer(audio=False)
            viewers.append(viewer)
            plis = await metric(http, a, 'dispatch_relay_plis_sent_total{kind="video"}')
            await whep_view(http, b.url, "bc-01", op, viewer)
            await viewer.wait_frames(10, timeout=60)
            assert viewer.frames[0][2], "a viewer starts at a keyframe"
            if n == 1:
                assert await metric(http, a, 'dispatch_relay_plis_sent_total{kind="video"}') > plis, \
                    "A's relay got a keyframe request from B's pull"
        assert await metric(http, a, "dispatch_viewers") == 1, "one pull for two viewers"
        assert sum("node node-b pulls it" in line for line in a.log) == 1
        assert sum("pulling from node node-a" in line for line in b.log) == 1
        assert await metric(http, b, "dispatch_viewers") == 2

        # Node A dies. The unit moves to node C by itself; B pulls from C and its viewers, still on
        # their first peer connection, get frames again.
        await asyncio.to_thread(a.kill, signal.SIGKILL)
        counts = [len(v.frames) for v in viewers]
        after = len(unit.lines)
        await unit.line_with(f"link connected to {c.url}", timeout=60, after=after)
        await until(lambda: published_on(http, b.url, op, "bc-01", "node-c"), 60, "publishing on node C", interval=0.1)
        await until(lambda: any("pulling from node node-c" in line for line in b.log), 60, "B pulling from C",
                    interval=0.1)
        for viewer, before in zip(viewers, counts, strict=True):
            await viewer.wait_frames(before + 10, timeout=60)
            assert viewer.pc.connectionState == "connected"
        assert sum("node node-b pulls it" in line for line in c.log) == 1

        # The unit stops publishing: B's viewers stay attached and wait, as viewers on the unit's
        # own node do; when it publishes again they get frames again on the same connection.
        await unit.stop()
        await until(lambda: any("pulled source from node node-c ended" in line for line in b.log), 30,
                    "B seeing the source end", interval=0.1)
        assert all(v.pc.connectionState == "connected" for v in viewers)
        counts = [len(v.frames) for v in viewers]
        unit = await start_whip_unit([c.url], "bc-01", token)
        for viewer, before in zip(viewers, counts, strict=True):
            await viewer.wait_frames(before + 10, timeout=60)

        # The viewers leave: after the linger B ends its pull, and C's session for it ends.
        for viewer in viewers:
            async with http.delete(f"{b.url}{viewer.location}", headers={"Authorization": f"Bearer {op}"}) as r:
                assert r.status == 200, await r.text()
        await until(lambda: any("no viewer left" in line for line in b.log), 30, "B ending its pull", interval=0.1)
        await until(lambda: any("pull of node node-b ended" in line for line in c.log), 30,
                    "C ending the pull session", interval=0.1)

        # The recording on C begins with the fail-over gap, naming node A.
        await unit.stop()
        c.stop()
        archive = tmp_path / "data-node-c" / "archive"
        [first, *_] = of_type(archive, "recording_opened")
        gaps = of_type(archive, "gap", first["recording_id"])
        assert gaps and gaps[0]["cause"] == "node_failover" and "node-a" in gaps[0]["detail"], gaps
        assert 0 < gaps[0]["seconds"] < 60, gaps
        segments = sorted((archive / "recordings" / first["recording_id"]).glob("000001.*"))
        assert segments and ffprobe(segments[0])["streams"], "the first segment on C plays"
    finally:
        for viewer in viewers:
            await viewer.close()
        if unit is not None:
            await unit.stop()
        for node in (b, c):
            node.stop()  # fails on a traceback or an unawaited coroutine in its output
        a.kill()


async def two_nodes(make_live: Callable[..., Awaitable[LiveServer]], tmp_path: Path, postgres_url: str,
                    redis_url: str, **cluster: object) -> tuple[LiveServer, LiveServer]:
    nodes = [await make_live(storage={"url": postgres_url, "data_dir": str(tmp_path / name)}, redis={"url": redis_url},
                             server={"node_id": name}, archive={"enabled": False}, cluster=dict(cluster))
             for name in ("node-a", "node-b")]
    return nodes[0], nodes[1]


@pytest.mark.timeout(120)
async def test_without_a_cluster_secret_a_viewer_on_another_node_gets_409_naming_the_owner(
    make_live: Callable[..., Awaitable[LiveServer]], tmp_path: Path, postgres_url: str, redis_url: str,
    http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    a, b = await two_nodes(make_live, tmp_path, postgres_url, redis_url)
    token = a.add_unit("bc-01")
    a.add_user("op", "operator")
    op = await b.login("op")
    pub = await make_publisher(vp8_loop)
    viewer = await make_viewer(audio=False)
    try:
        await whip_publish(http, a.url, "bc-01", token, pub)
        async with http.post(f"{b.url}/whep/bc-01", data=viewer.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {op}"}) as r:
            body = await r.json()
            assert r.status == 409, body
        assert body["error"]["code"] == "publishing_elsewhere", body
        assert "node-a" in body["error"]["message"] and "cluster.secret" in body["error"]["message"], body
    finally:
        await viewer.close()
        await pub.close()


@pytest.mark.timeout(60)
async def test_a_forged_expired_or_misdirected_node_token_is_refused_and_audited(
    make_live: Callable[..., Awaitable[LiveServer]], http: aiohttp.ClientSession
) -> None:
    live = await make_live(cluster={"secret": SECRET}, archive={"enabled": False})
    live.add_unit("bc-01")
    viewer = await make_viewer(audio=False)
    audit = live.app[AUDIT]
    good = NodeTokens(SECRET, "node-x", 30.0, audit)
    expired = NodeTokens(SECRET, "node-x", 30.0, audit, clock=lambda: time.time() - 60).sign("bc-01")
    forged = NodeTokens("another-secret-of-32-characters-or-more!", "node-evil", 30.0, audit).sign("bc-01")
    tampered = good.sign("bc-01")[:-4] + "AAAA"
    cases = {forged: "bad signature", expired: "token expired", good.sign("bc-02"): "token is for unit 'bc-02'",
             tampered: "bad signature", "dn1.not-base64!.x": "malformed token"}
    try:
        for token, reason in cases.items():
            async with http.post(f"{live.url}/whep/bc-01", data=viewer.pc.localDescription.sdp,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
                body = await r.json()
                assert r.status == 401 and body["error"]["code"] == "bad_node_token", body
                assert reason in body["error"]["message"], (reason, body)
        refused = [e for e in await audit.entries("bc-01") if e["verb"] == "node_token_refused"]
        assert sorted(e["detail"]["reason"].split(" (")[0] for e in refused) == sorted(
            r.split(" (")[0] for r in cases.values())
        assert {e["actor"] for e in refused} >= {"node:node-evil", "node:node-x"}
        # A valid token is accepted, but a node serves only a unit publishing on it (no chains).
        async with http.post(f"{live.url}/whep/bc-01", data=viewer.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp",
                                      "Authorization": f"Bearer {good.sign('bc-01')}"}) as r:
            body = await r.json()
            assert r.status == 409 and body["error"]["code"] == "not_publishing", body
    finally:
        await viewer.close()
