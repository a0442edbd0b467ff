"""Stills from units into the evidence archive, against a real server on port 0: the upload and
its case links, the ledger entry and the offline verifier (library and ``dispatch-audit``),
tampering, refusals that store nothing, operators listing and viewing (ledgered), the
``snapshot`` push, a full disk, and a real ``field-client`` process answering a ``snapshot``
instruction."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from dispatch_server.appkeys import ARCHIVE, DENIALS
from recordings.verify import Report, verify_archive
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import entries
from tests.recordings.test_crash_and_disk import fill, small_fs  # noqa: F401  (a fixture)
from tests.support.peers import make_viewer, whep_view
from tests.support.server import REPO
from tests.support.unit_client import Console
from utctime import iso_millis, parse_iso_millis

CASE = "（2026）冀0916执123号"
AUDIT = Path(sys.executable).parent / "dispatch-audit"
VIEW_KEYS = {"snapshot_id", "sha256", "bytes", "unit_id", "action_id", "case_number", "instruction_id", "taken_at",
             "received_at", "url"}


def still(seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    cv2.rectangle(image, (10, 10), (size[0] - 10, size[1] - 10), (0, 180, seed % 256), -1)
    cv2.putText(image, f"still {seed}", (20, size[1] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


async def upload(http: aiohttp.ClientSession, live: LiveServer, unit: str, token: str, body: bytes, *,
                 instruction: str | None = None, taken_at: str | None = None,
                 content_type: str = "image/jpeg") -> tuple[int, Any, Any]:
    params = {k: v for k, v in (("instruction", instruction), ("taken_at", taken_at)) if v is not None}
    async with http.post(f"{live.url}/api/units/{unit}/snapshots", data=body, params=params,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}) as r:
        return r.status, await r.json(), r.headers


async def get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, r.headers


def ledger(live: LiveServer, type: str) -> list[dict[str, Any]]:
    return [e for e in entries(live.settings.archive_dir) if e["type"] == type]


def signed_and_verified(live: LiveServer) -> Report:
    archive = live.app[ARCHIVE]
    archive.ledger.sign_tree_head()
    return verify_archive(archive.root, archive.ledger.public_key_pem())


async def audit_cli(archive: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(str(AUDIT), "verify", "--archive", str(archive), "--allow-unanchored",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def running_action(http: aiohttp.ClientSession, live: LiveServer, op: str, units: list[str]) -> str:
    status, action = await api(http, "POST", f"{live.url}/api/actions", op, {
        "case_number": "(2026)冀0916执123号", "title": "查封", "type": "seizure", "units": units})
    assert status == 201, action
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op))[0] == 200
    return str(action["id"])


async def instruct(http: aiohttp.ClientSession, live: LiveServer, op: str, unit: str) -> str:
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op, {"unit": unit, "type": "snapshot"})
    assert status == 201, body
    return str(body["id"])


async def test_a_unit_uploads_stills_linked_to_its_case_and_the_archive_verifies(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    try:
        action_id = await running_action(http, live, op, ["bc-01"])
        iid = await instruct(http, live, op, "bc-01")
        taken = time.time() - 2.0
        answered, free = still(1), still(2)
        status, a, headers = await upload(http, live, "bc-01", token, answered, instruction=iid,
                                          taken_at=iso_millis(taken))
        assert status == 201, a
        assert set(a) == VIEW_KEYS and headers["Location"] == a["url"] == f"/api/snapshots/{a['snapshot_id']}"
        assert a["sha256"] == hashlib.sha256(answered).hexdigest() and a["bytes"] == len(answered)
        assert (a["unit_id"], a["action_id"], a["case_number"], a["instruction_id"]) == ("bc-01", action_id, CASE, iid)
        assert a["taken_at"] == iso_millis(taken) and abs(parse_iso_millis(a["received_at"]) - time.time()) < 30
        assert await console.next("snapshot", lambda s: s["snapshot_id"] == a["snapshot_id"]) == a

        # Without an instruction: the action running for the unit now.
        status, b, _ = await upload(http, live, "bc-01", token, free)
        assert status == 201, b
        assert (b["action_id"], b["case_number"], b["instruction_id"], b["taken_at"]) == (action_id, CASE, None, None)
        # The action ended: a still answering its instruction stays with it; one without, with none.
        assert (await api(http, "POST", f"{live.url}/api/actions/{action_id}/end", op))[0] == 200
        status, c, _ = await upload(http, live, "bc-01", token, still(3), instruction=iid)
        assert status == 201 and (c["action_id"], c["case_number"]) == (action_id, CASE), c
        status, d, _ = await upload(http, live, "bc-01", token, still(4))
        assert status == 201 and (d["action_id"], d["case_number"]) == (None, None), d

        archive = live.settings.archive_dir
        for view, body in ((a, answered), (b, free)):
            day = view["received_at"][:10].replace("-", "")
            assert (archive / "snapshots" / day / f"{view['snapshot_id']}.jpg").read_bytes() == body
        sealed = {e["data"]["snapshot_id"]: e for e in ledger(live, "snapshot_sealed")}
        assert sorted(sealed) == sorted(v["snapshot_id"] for v in (a, b, c, d))
        entry = sealed[a["snapshot_id"]]
        assert entry["actor"] == "unit:bc-01" and entry["where"] == "http:127.0.0.1" and entry["outcome"] == "ok"
        assert entry["data"]["sha256"] == hashlib.sha256(answered).hexdigest()
        assert entry["data"]["content_type"] == "image/jpeg" and entry["data"]["path"].startswith("snapshots/")
        report = signed_and_verified(live)
        assert report.failures == [] and report.snapshots == 4 and report.snapshots_proven == 4
        code, output = await audit_cli(archive)
        assert code == 0 and "4 stills (4 inclusion proofs)" in output, output
    finally:
        await console.close()


async def test_operators_list_and_view_stills_and_every_view_is_ledgered(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    token, other = live.add_unit("bc-01"), live.add_unit("bc-02")
    live.add_user("op", "operator")
    live.add_user("aud", "auditor")
    op, aud = await live.login("op"), await live.login("aud")
    action_id = await running_action(http, live, op, ["bc-01"])
    body = still(7)
    mine = (await upload(http, live, "bc-01", token, body))[1]
    theirs = (await upload(http, live, "bc-02", other, still(8)))[1]

    status, listing, _ = await get(http, f"{live.url}/api/snapshots", op)
    assert status == 200 and [s["snapshot_id"] for s in listing["snapshots"]] == [theirs["snapshot_id"],
                                                                               mine["snapshot_id"]]
    [listed] = [s for s in listing["snapshots"] if s["snapshot_id"] == mine["snapshot_id"]]
    assert {k: listed[k] for k in VIEW_KEYS} == mine and listed["held"] is False
    for query, want in (("unit=bc-01", [mine]), ("unit=bc-02", [theirs]), (f"action={action_id}", [mine]),
                        ("case=(2026)冀0916执123号", [mine]), ("limit=1", [theirs])):
        status, found, _ = await get(http, f"{live.url}/api/snapshots?{query}", aud)
        assert status == 200 and [s["snapshot_id"] for s in found["snapshots"]] == [w["snapshot_id"] for w in want]
    for bad in ("limit=0", "unit=../x", "case=nonsense"):
        assert (await get(http, f"{live.url}/api/snapshots?{bad}", op))[0] == 400, bad
    assert (await get(http, f"{live.url}/api/snapshots"))[0] == 401

    # The JPEG itself: the same bytes, ledgered as viewed before it is served.
    url = f"{live.url}{mine['url']}"
    status, image, headers = await get(http, url, op)
    assert status == 200 and image == body and headers["Content-Type"] == "image/jpeg"
    assert "no-store" in headers["Cache-Control"] and headers["Repr-Digest"].startswith("sha-256=:")
    viewed = ledger(live, "viewed")[-1]
    assert viewed["actor"] == "user:op" and viewed["outcome"] == "ok" and viewed["where"] == "http:127.0.0.1"
    assert viewed["data"]["snapshot_id"] == mine["snapshot_id"] and viewed["data"]["client_ip"] == "127.0.0.1"
    # An <img> sends no header: the list's ticket opens that still, and only that one.
    status, image, _ = await get(http, f"{live.url}{listed['image_url']}")
    assert status == 200 and image == body and ledger(live, "viewed")[-1]["actor"] == "user:op"
    ticket = listed["image_url"].split("?ticket=")[1]
    status, refused, _ = await get(http, f"{live.url}{theirs['url']}?ticket={ticket}")
    assert status == 401 and refused["error"]["code"] == "bad_ticket"
    # Nobody logged in: refused, and the refusal is in the ledger (anonymous refusals from one
    # source are summarised per minute: the summary names the last one).
    status, refused, _ = await get(http, url)
    assert status == 401
    # Anonymous refusals from one address are summed up per minute (the first at once): flush now.
    await live.app[DENIALS].flush()
    denied = ledger(live, "viewed")[-1]
    assert (denied["actor"], denied["outcome"], denied["data"]["status"]) == ("anonymous", "denied", 401)
    assert denied["data"]["snapshot_id"] == mine["snapshot_id"] and denied["data"]["repeated"] == 1
    status, refused, _ = await get(http, f"{live.url}/api/snapshots/snap-20260101T000000Z-00000000", op)
    assert status == 404 and refused["error"]["code"] == "unknown_snapshot"
    status, refused, _ = await get(http, f"{live.url}/api/snapshots/..%2Fledger", op)
    assert status in (400, 404)
    assert (await get(http, f"{live.url}/api/snapshots/snap-..", op))[0] == 400

    # Tampering with the archive the server wrote: each still named by the verifier.
    archive = live.settings.archive_dir
    assert signed_and_verified(live).failures == []
    paths = {e["data"]["snapshot_id"]: archive / e["data"]["path"] for e in ledger(live, "snapshot_sealed")}
    blob = bytearray(paths[mine["snapshot_id"]].read_bytes())
    blob[100] ^= 0xFF
    paths[mine["snapshot_id"]].write_bytes(bytes(blob))
    paths[theirs["snapshot_id"]].unlink()
    planted = paths[mine["snapshot_id"]].parent / "snap-20260101T000000Z-0badc0de.jpg"
    planted.write_bytes(body)
    report = signed_and_verified(live)
    rel = {k: p.relative_to(archive).as_posix() for k, p in paths.items()}
    assert sorted((f.kind, f.item) for f in report.failures) == sorted([
        ("altered", rel[mine["snapshot_id"]]), ("missing", rel[theirs["snapshot_id"]]),
        ("extra", planted.relative_to(archive).as_posix())])
    code, output = await audit_cli(archive)
    assert code == 1 and "FAIL altered" in output and "FAIL missing" in output and "FAIL extra" in output
    status, refused, _ = await get(http, f"{live.url}{theirs['url']}", op)
    assert status == 404 and refused["error"]["code"] == "snapshot_missing"
    assert ledger(live, "viewed")[-1]["outcome"] == "failed"


async def test_refused_uploads_store_nothing(make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(archive={"max_snapshot_bytes": 4096})
    token, other = live.add_unit("bc-01"), live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    theirs = await instruct(http, live, op, "bc-02")
    small = still(size=(32, 24))
    assert len(small) < 4096
    big = b"\xff\xd8\xff\xe0" + bytes(5000)

    async def refused(status: int, code: str | None, *args: Any, **kwargs: Any) -> None:
        got, body, _ = await upload(http, live, *args, **kwargs)
        assert got == status and (code is None or body["error"]["code"] == code), (args[:2], kwargs, body)
        assert body["error"]["message"]

    await refused(401, "bad_token", "bc-01", other, small)
    await refused(401, "unauthorized", "bc-01", "", small)
    await refused(401, "bad_token", "bc-99", token, small)  # an unknown unit answers like a wrong token
    await refused(400, "bad_unit_id", "bc..%2F", token, small)
    await refused(415, "not_jpeg", "bc-01", token, b"\x89PNG\r\n\x1a\n" + small[8:])
    await refused(415, "not_jpeg", "bc-01", token, b"")
    await refused(415, "unsupported_media_type", "bc-01", token, small, content_type="image/png")
    await refused(413, "too_large", "bc-01", token, big)
    await refused(404, "unknown_instruction", "bc-01", token, small, instruction="ins-0000000000000000")
    await refused(404, "unknown_instruction", "bc-01", token, small, instruction=theirs)
    await refused(400, "bad_query", "bc-01", token, small, instruction="../x")
    await refused(400, "bad_query", "bc-01", token, small, taken_at="yesterday")

    # Too large without a Content-Length (chunked): refused while reading, not after.
    async def chunks() -> Any:
        for _ in range(10):
            yield b"\xff\xd8\xff" + bytes(1021)

    async with http.post(f"{live.url}/api/units/bc-01/snapshots", data=chunks(),
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"

    assert ledger(live, "snapshot_sealed") == []
    archive = live.settings.archive_dir
    assert not (archive / "snapshots").exists() or not [p for p in (archive / "snapshots").rglob("*") if p.is_file()]
    status, listing, _ = await get(http, f"{live.url}/api/snapshots", op)
    assert status == 200 and listing["snapshots"] == []
    # Within the limit it is taken.
    assert (await upload(http, live, "bc-01", token, small))[0] == 201


async def test_a_server_without_an_archive_refuses_stills(make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(archive={"enabled": False})
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    status, body, _ = await upload(http, live, "bc-01", token, still())
    assert status == 503 and body["error"]["code"] == "archive_disabled"
    status, body, _ = await get(http, f"{live.url}/api/snapshots", await live.login("op"))
    assert status == 503 and body["error"]["code"] == "archive_disabled"


async def test_a_full_disk_refuses_the_still_with_nothing_left_and_recovers(
        make_live: Any, small_fs: Path, http: aiohttp.ClientSession) -> None:  # noqa: F811
    archive = small_fs / "archive"
    live: LiveServer = await make_live(archive={"dir": str(archive), "min_free_bytes": 0})
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    try:
        assert (await upload(http, live, "bc-01", token, still(1)))[0] == 201
        filler = fill(small_fs)
        status, body, _ = await upload(http, live, "bc-01", token, still(2))
        assert status == 503 and body["error"]["code"] == "disk_full" and "disk is full" in body["error"]["message"]
        alert = await console.next("alert", lambda a: a["kind"] == "recording_degraded")
        assert "disk full" in alert["message"]
        assert [p.name for p in (archive / "snapshots").rglob("*.part")] == [], "nothing partial left"
        assert len(ledger(live, "snapshot_sealed")) == 1
        filler.unlink()
        await console.next("alert", lambda a: a["kind"] == "recording_resumed")
        status, body, _ = await upload(http, live, "bc-01", token, still(3))
        assert status == 201, body
    finally:
        await console.close()
    report = signed_and_verified(live)
    assert report.failures == [] and report.snapshots == 2
    await live.app[ARCHIVE].close()


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


@pytest.mark.timeout(120)
async def test_a_field_client_answers_a_snapshot_instruction_with_a_still_in_the_archive(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-07")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "field_client", "--server", live.url, "--unit", "bc-07", "--token", token,
        "--gps", "none", "--auto-ack", cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")})
    assert proc.stdout is not None
    output: list[str] = []
    drain = asyncio.create_task(_drain(proc.stdout, output))
    viewer = await make_viewer(audio=False)
    try:
        await console.next("unit_status", lambda u: u["id"] == "bc-07" and u["publishing"], timeout=60)
        # Pictures flow once a viewer decodes them: the unit's camera has sent a keyframe by then.
        await whep_view(http, live.url, "bc-07", op, viewer)
        await viewer.wait_frames(5, timeout=30)
        iid = await instruct(http, live, op, "bc-07")
        ins = await console.next("instruction_update",
                                 lambda i: i["id"] == iid and i["state"] in ("done", "refused"), timeout=60)
        assert ins["state"] == "done", f"refused: {ins['reason']}\n{''.join(output)}"
        pushed = await console.next("snapshot", lambda s: s["instruction_id"] == iid)
        assert ins["result"]["snapshot_id"] == pushed["snapshot_id"]
        assert ins["result"]["sha256"] == pushed["sha256"] and pushed["unit_id"] == "bc-07"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await drain
            await viewer.close()
            await console.close()
    log = "".join(output)
    assert "Traceback" not in log and "was never awaited" not in log, log
    [entry] = [e["data"] for e in ledger(live, "snapshot_sealed")]
    assert entry["snapshot_id"] == pushed["snapshot_id"] and entry["instruction_id"] == iid
    data = (live.settings.archive_dir / entry["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (480, 640, 3)
    assert signed_and_verified(live).failures == []
