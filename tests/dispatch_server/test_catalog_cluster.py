"""Two nodes on one PostgreSQL database (and Redis), each with its own evidence archive: each node's
search lists both nodes' recordings, a segment plays on the node whose disk holds it, and the other
node answers 409 naming that node (in its ledger too), never a 500."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_server.appkeys import ARCHIVE, EVIDENCE
from dispatch_server.node import archive_node
from tests.conftest import LiveServer, settings_for
from tests.dispatch_server.test_api_recordings import get, ledger
from utctime import iso_millis

T0 = 1_790_000_000.0


async def record(live: LiveServer, rid: str, unit: str) -> bytes:
    """A closed recording of one segment, written the way the recorder writes it (a sealed file
    in the node's archive, the ledger's entries through the archive); the segment's bytes."""
    archive = live.app[ARCHIVE]
    rel = f"recordings/{rid}/000001.webm"
    blob = f"{rid} on {live.settings.server.node_id}".encode() * 100
    (archive.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (archive.root / rel).write_bytes(blob)
    await archive.record_many([
        ("recording_opened", "system", "recorder", "ok", {
            "recording_id": rid, "unit_id": unit, "action_id": None, "case_number": None, "officers": [],
            "category": "standard", "node": live.settings.server.node_id, "video_codec": "vp8",
            "audio_codec": "opus", "server_time": iso_millis(T0)}),
        ("segment_sealed", "system", "recorder", "ok", {
            "recording_id": rid, "seq": 1, "path": rel, "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob), "start": iso_millis(T0), "end": iso_millis(T0 + 3), "frames": {"video": 90},
            "recovered": False, "offset_s": 0.0, "pts": {"video": [0, 270000]}}),
        ("recording_closed", "system", "recorder", "ok", {
            "recording_id": rid, "segments": 1, "reason": "test", "end_cause": None,
            "server_time": iso_millis(T0 + 4)}),
    ])
    await live.app[EVIDENCE].sync()
    return blob


async def test_each_node_finds_both_nodes_recordings_and_plays_its_own(
        make_live: Any, tmp_path: Path, postgres_url: str, redis_url: str, http: aiohttp.ClientSession) -> None:
    nodes: dict[str, LiveServer] = {}
    for name in ("node-a", "node-b"):
        nodes[name] = await make_live(storage={"url": postgres_url, "data_dir": str(tmp_path / name)},
                                      redis={"url": redis_url}, server={"node_id": name})
    a, b = nodes["node-a"], nodes["node-b"]
    assert a.settings.archive_dir != b.settings.archive_dir
    blobs = {"rec-a": await record(a, "rec-a", "bc-01"), "rec-b": await record(b, "rec-b", "bc-02")}
    a.add_user("op", "operator")  # one database: a person of one node is a person of every node

    for live in (a, b):
        token = await live.login("op")
        status, body, _ = await get(http, f"{live.url}/api/recordings", token)
        assert status == 200, body
        assert sorted((r["id"], r["unit_id"]) for r in body["recordings"]) == [("rec-a", "bc-01"),
                                                                               ("rec-b", "bc-02")]
        status, rec, _ = await get(http, f"{live.url}/api/recordings/rec-b", token)
        assert status == 200 and rec["segment_count"] == 1 and rec["segments"][0]["url"]

    token = await a.login("op")
    status, body, _ = await get(http, f"{a.url}/api/recordings/rec-a/segments/1", token)
    assert status == 200 and body == blobs["rec-a"]
    status, body, _ = await get(http, f"{a.url}/api/recordings/rec-b/segments/1", token)
    assert status == 409 and body["error"]["code"] == "segment_elsewhere" and "node-b" in body["error"]["message"]
    status, body, _ = await get(http, f"{b.url}/api/recordings/rec-b/segments/1", await b.login("op"))
    assert status == 200 and body == blobs["rec-b"]
    played = [(e["data"]["recording_id"], e["outcome"], e["data"].get("reason")) for e in ledger(a, "played")]
    assert played == [("rec-a", "ok", None), ("rec-b", "failed", "on node node-b")]


def test_a_node_without_a_node_id_is_named_by_its_host_and_archive(tmp_path: Path) -> None:
    one, other = settings_for(tmp_path / "one"), settings_for(tmp_path / "other")
    assert archive_node(one) == archive_node(settings_for(tmp_path / "one")), "the same after a restart"
    assert archive_node(one) != archive_node(other) and archive_node(one).endswith(str(one.archive_dir))
    assert archive_node(settings_for(tmp_path / "one", server={"node_id": "node-a"})) == "node-a"
