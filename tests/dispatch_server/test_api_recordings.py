"""The recordings API against a real in-process server: two aiortc publishers recorded, then
search, detail with the GPS track, Range playback, authorisation and the ledger entry of every
access, path tricks, legal holds and retention (halted above the share, then deleting)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from dispatch_server import cli
from dispatch_server.appkeys import ARCHIVE, AUDIT_LEDGER, DENIALS, POSITIONS
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from geo.fix import Fix
from geo.track import TrackPoint
from recordings.verify import verify_archive
from tests.conftest import LiveServer, settings_for
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import entries
from tests.recordings.test_catalog import T0, FakeArchive
from tests.recordings.test_recorder import FAST, ArchiveEvents, stop_sending, unpublish
from tests.support.peers import make_publisher, whip_publish

CASE = "（2026）冀0916执123号"
HERE = (38.0431, 114.5149)  # bc-01 walks through this point while it records; bc-02 stays ~5 km north
RULES = {"retention": [{"category": "standard", "keep_days": 1.0}, {"category": "incident", "keep_days": 3650.0}],
         "max_delete_share": 0.75}
DAY_S = 86400.0


class Clock:
    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


def ledger(live: LiveServer, type: str) -> list[dict[str, Any]]:
    return [e for e in entries(live.settings.archive_dir) if e["type"] == type]


async def get(http: aiohttp.ClientSession, url: str, token: str | None = None, **headers: str) -> tuple[int, Any, Any]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with http.get(url, headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, r.headers


async def record_two_units(live: LiveServer, http: aiohttp.ClientSession, vp8: EncodedLoop,
                           opus: EncodedAudioLoop) -> dict[str, str]:
    """bc-01 (in a running action of CASE) and bc-02 publish together until each has sealed two
    segments, then stop; returns unit -> recording id once both recordings are closed."""
    events = ArchiveEvents(live)
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02")}
    live.add_user("op", "operator")
    op = await live.login("op")
    status, action = await api(http, "POST", f"{live.url}/api/actions", op, {
        "case_number": "(2026)冀0916执123号", "title": "送达", "type": "service", "units": ["bc-01"],
        "officers": ["王法警"]})
    assert status == 201, action
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op))[0] == 200
    pubs = {u: await make_publisher(vp8, opus) for u in tokens}
    for u, pub in pubs.items():
        await whip_publish(http, live.url, u, tokens[u], pub)

    async def two_each() -> None:
        while True:
            sealed = [d["recording_id"] for k, d in events.seen if k == "sealed"]
            if len(set(sealed)) == 2 and all(sealed.count(r) >= 2 for r in set(sealed)):
                return
            await events.wait("sealed", len(sealed) + 1)

    await asyncio.wait_for(two_each(), 30)
    for u, pub in pubs.items():
        await stop_sending(pub)
        await unpublish(http, live, pub, tokens[u])
        await pub.close()
    closed = await events.wait("closed", 2)
    opened = {e["data"]["unit_id"]: e["data"]["recording_id"] for e in ledger(live, "recording_opened")}
    assert {c["recording_id"] for c in closed} == set(opened.values())
    return opened


def add_tracks(live: LiveServer, since: float, until: float) -> None:
    points, t = [], since
    while t < until:
        f = (t - since) / (until - since)  # bc-01 walks 400 m north, through HERE halfway
        points.append(TrackPoint("bc-01", Fix(HERE[0] - 0.0018 + 0.0036 * f, HERE[1], t)))
        points.append(TrackPoint("bc-02", Fix(HERE[0] + 0.045, HERE[1], t)))
        t += 0.5
    live.app[POSITIONS].tracks.insert_many(points)


async def test_search_playback_holds_and_retention(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    clock = Clock()
    live: LiveServer = await make_live(clock=clock, archive={**FAST, **RULES})
    started = time.time()
    recs = await record_two_units(live, http, vp8_loop, opus_loop)
    add_tracks(live, started - 5, time.time() + 5)
    for name, role in (("sup", "supervisor"), ("aud", "auditor"), ("adm", "admin")):
        live.add_user(name, role)
    op, sup, aud = [await live.login(n) for n in ("op", "sup", "aud")]
    base = f"{live.url}/api/recordings"

    # -- search -------------------------------------------------------------------------
    assert (await get(http, base))[0] == 401

    async def found(query: str, token: str = op) -> list[str]:
        status, body, _ = await get(http, f"{base}?{query}", token)
        assert status == 200, body
        return sorted(r["id"] for r in body["recordings"])

    assert await found("unit=bc-01") == [recs["bc-01"]]
    assert await found("case=(2026)冀0916执123号") == [recs["bc-01"]], "the case number is normalised"
    assert await found("officer=王法警") == [recs["bc-01"]]
    action_id = ledger(live, "recording_opened")[0]["data"]["action_id"] or \
        ledger(live, "recording_opened")[1]["data"]["action_id"]
    assert await found(f"action={action_id}") == [recs["bc-01"]]

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    assert await found(f"from={iso(started - 120)}&to={iso(started - 60)}") == []
    assert await found(f"from={iso(started - 60)}&to={iso(time.time() + 60)}") == sorted(recs.values())
    assert await found(f"near={HERE[0]},{HERE[1]}&within_m=50") == [recs["bc-01"]]
    assert await found(f"near={HERE[0] + 0.045},{HERE[1]}&within_m=100") == [recs["bc-02"]]
    [summary] = (await get(http, f"{base}?unit=bc-02", op))[1]["recordings"]
    assert summary["segment_count"] >= 2 and summary["gap_count"] == 0 and summary["state"] == "closed"
    assert summary["duration_s"] > 4 and summary["category"] == "standard" and summary["case_number"] is None
    for bad in ("from=yesterday", "from=2026-11-27T09:30:00", f"from={iso(started)}&to={iso(started - 1)}",
                "near=91,0", "near=38", "within_m=5", "near=38,114&within_m=0", "case=nonsense", "unit=../x",
                "limit=0", "officer=%00"):
        status, body, _ = await get(http, f"{base}?{bad}", op)
        assert status == 400 and body["error"]["code"] in ("bad_query", "bad_case_number", "bad_unit_id"), (bad, body)

    # -- detail: segments with playback URLs, gaps, the track for the map ----------------------
    rid = recs["bc-01"]
    status, rec, _ = await get(http, f"{base}/{rid}", op)
    assert status == 200 and rec["id"] == rid and rec["unit_id"] == "bc-01" and rec["officers"] == ["王法警"]
    assert rec["gaps"] == [] and len(rec["segments"]) >= 2
    segs = rec["segments"]
    assert [s["seq"] for s in segs] == list(range(1, len(segs) + 1))
    assert all(a["offset_s"] < b["offset_s"] for a, b in pairwise(segs))
    assert all(s["url"] and s["download_url"] is None for s in segs), "operators play but do not download"
    assert len(rec["track"]) > 10 and rec["track"][0]["t"] < 0 < rec["track"][-1]["t"]
    assert (await get(http, f"{base}/{rid}", aud))[1]["segments"][0]["download_url"].endswith("&download=1")
    assert (await get(http, f"{base}/rec-unknown", op))[0] == 404
    viewed = ledger(live, "viewed")
    assert [(e["actor"], e["outcome"], e["data"]["recording_id"]) for e in viewed] == [
        ("user:op", "ok", rid), ("user:aud", "ok", rid)]
    assert viewed[0]["where"] == "http:127.0.0.1" and viewed[0]["data"]["client_ip"] == "127.0.0.1"

    # -- playback: a Range request answers 206 with exactly those bytes -------------------------
    seg_file = live.settings.archive_dir / "recordings" / rid / "000001.webm"
    data = seg_file.read_bytes()
    assert hashlib.sha256(data).hexdigest() == segs[0]["sha256"]
    status, body, headers = await get(http, live.url + segs[0]["url"], Range="bytes=100-1099")
    assert status == 206 and body == data[100:1100]
    assert headers["Content-Type"] == "video/webm" and headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
    assert "Content-Disposition" not in headers
    planted = seg_file.with_name(seg_file.name + ".gz")  # never served in place of the sealed file
    planted.write_bytes(b"not the evidence")
    status, body, headers = await get(http, f"{base}/{rid}/segments/1", op, **{"Accept-Encoding": "gzip"})
    planted.unlink()
    assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"  # a bearer token works too
    assert "Content-Encoding" not in headers
    played = ledger(live, "played")
    assert [(e["actor"], e["outcome"], e["data"]["seq"], e["data"]["range"]) for e in played] == [
        ("user:op", "ok", 1, "bytes=100-1099"), ("user:op", "ok", 1, None)]

    # Download: refused to an operator (in the ledger), given to an auditor as an attachment.
    status, body, _ = await get(http, f"{base}/{rid}/segments/1?download=1", op)
    assert status == 403
    status, body, headers = await get(http, live.url + (await get(http, f"{base}/{rid}", aud))[1]["segments"][0]
                                      ["download_url"])
    assert status == 200 and body == data
    assert headers["Content-Disposition"] == f'attachment; filename="{rid}-000001.webm"'
    downloads = [(e["actor"], e["outcome"]) for e in ledger(live, "downloaded")]
    assert downloads == [("user:op", "denied"), ("user:aud", "ok")]

    # No session, a ticket for another segment, a ticket of a session that ended: 401, in the ledger.
    assert (await get(http, f"{base}/{rid}/segments/1"))[0] == 401
    assert (await get(http, live.url + segs[0]["url"].replace("/segments/1?", "/segments/2?")))[0] == 401
    async with http.post(f"{live.url}/api/logout", headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 204
    assert (await get(http, live.url + segs[1]["url"]))[0] == 401
    # Anonymous refusals from one address: the first at once, the rest summed up per minute (a
    # stranger cannot fill the ledger); the summary comes when the minute ends, or now on flush.
    await live.app[DENIALS].flush()
    denied = [e for e in ledger(live, "played") if e["outcome"] == "denied"]
    assert [(e["actor"], e["data"]["status"], e["data"]["seq"], e["data"].get("repeated")) for e in denied] == [
        ("anonymous", 401, 1, None), ("anonymous", 401, 2, 2)]
    op = await live.login("op")

    # -- path tricks: 400 or 404, never a file -------------------------------------------------
    served_before = len([e for e in ledger(live, "played") if e["outcome"] == "ok"])
    for raw in ("/api/recordings/..%2F..%2Fledger/segments/1", "/api/recordings/%2e%2e/segments/1",
                "/api/recordings/../ledger/segments/1", f"/api/recordings/{rid}/segments/..%2F000001.webm",
                f"/api/recordings/{rid}/segments/1%00", "/api/recordings/%00/segments/1",
                "/api/recordings/%2Fetc%2Fpasswd/segments/1", "/api/recordings//etc/passwd/segments/1",
                f"/api/recordings/{rid}/segments/-1", f"/api/recordings/{rid}/segments/1.webm",
                f"/api/recordings/{rid}/segments/%2e%2e%2f%2e%2e%2fledger%2fentries.jsonl",
                f"/api/recordings/{rid}/segments/99", f"/api/recordings/{rid}%00/segments/1"):
        async with http.get(URL(live.url + raw, encoded=True), headers={"Authorization": f"Bearer {op}"}) as r:
            assert r.status in (400, 404), (raw, r.status)
            assert r.content_type == "application/json", raw
    assert len([e for e in ledger(live, "played") if e["outcome"] == "ok"]) == served_before

    # -- retention: a clock two days ahead makes both recordings due; 2 of 2 is above 75 % --------
    clock.shift = 2 * DAY_S
    op, sup, adm = [await live.login(n) for n in ("op", "sup", "adm")]  # the old sessions expired
    assert (await api(http, "POST", f"{live.url}/api/retention/run", sup))[0] == 403
    status, dry = await api(http, "POST", f"{live.url}/api/retention/run?dry_run=1", adm)
    assert status == 200 and dry["dry_run"] and sorted(d["recording_id"] for d in dry["due"]) == sorted(recs.values())
    assert dry["figures"]["halted"] and dry["deleted"] == 0
    status, halted = await api(http, "POST", f"{live.url}/api/retention/run", adm)
    assert status == 409 and halted["error"]["code"] == "retention_halted", halted
    assert halted["figures"]["share"] == 1.0 and halted["figures"]["max_delete_share"] == 0.75
    alerts = (await api(http, "GET", f"{live.url}/api/alerts?state=open", adm))[1]["alerts"]
    assert [a["unit_id"] for a in alerts if a["kind"] == "retention_halted"] == ["archive"]
    assert seg_file.is_file() and not ledger(live, "segment_deleted")
    assert ledger(live, "retention_run")[-1]["outcome"] == "failed"

    # -- a legal hold on bc-01's case keeps it; the run deletes bc-02's recording only -------------
    hold = {"case_number": "(2026)冀0916执123号", "reason": "上诉期内 appeal pending"}
    assert (await api(http, "POST", f"{live.url}/api/holds", op, hold))[0] == 403
    assert (await api(http, "POST", f"{live.url}/api/holds", sup, {"case_number": "x", "reason": "r"}))[0] == 400
    status, body = await api(http, "POST", f"{live.url}/api/holds", sup, hold)
    assert status == 201 and body["case_number"] == CASE and body["recordings"] == 1 and body["set_by"] == "user:sup"
    assert (await api(http, "POST", f"{live.url}/api/holds", sup, hold))[0] == 409
    assert [h["case_number"] for h in (await api(http, "GET", f"{live.url}/api/holds", op))[1]["holds"]] == [CASE]
    status, run = await api(http, "POST", f"{live.url}/api/retention/run", adm)
    assert status == 200 and not run["figures"]["halted"], run
    assert [d["recording_id"] for d in run["due"]] == [recs["bc-02"]] and run["held"] == [rid]
    deleted = [e["data"] for e in ledger(live, "segment_deleted")]
    assert {d["recording_id"] for d in deleted} == {recs["bc-02"]} and len(deleted) == run["deleted"] >= 2
    assert all(d["reason"] == "retention: standard keep_days=1" for d in deleted)
    assert not list((live.settings.archive_dir / "recordings" / recs["bc-02"]).glob("*.webm"))
    assert seg_file.is_file()
    status, body, _ = await get(http, f"{base}/{recs['bc-02']}/segments/1", adm)
    assert status == 404 and body["error"]["code"] == "segment_deleted"
    gone = (await get(http, f"{base}/{recs['bc-02']}", adm))[1]
    assert gone["segment_count"] == 0 and all(s["deleted"] and s["url"] is None for s in gone["segments"])

    case_path = f"{live.url}/api/holds/{CASE}"
    status, refused = await api(http, "DELETE", case_path, sup)
    assert status == 400 and refused["error"]["code"] == "bad_reason", "a hold is released with a reason"
    assert (await api(http, "DELETE", f"{case_path}?reason=案件已执结", sup))[0] == 200
    assert (await api(http, "DELETE", f"{case_path}?reason=again", sup))[0] == 404
    assert [(e["type"], e["actor"]) for e in entries(live.settings.archive_dir)
            if e["type"].startswith("hold_")] == [("hold_set", "user:sup"), ("hold_released", "user:sup")]
    released = [e for e in entries(live.settings.archive_dir) if e["type"] == "hold_released"]
    assert released[0]["data"]["reason"] == "案件已执结"

    # -- a retention change: bc-01's recording becomes an incident (kept 10 years), so it is not due
    cat_url = f"{base}/{rid}/category"
    change = {"category": "incident", "reason": "当事人投诉 complaint filed"}
    assert (await api(http, "PUT", cat_url, op, change))[0] == 403
    assert (await api(http, "PUT", cat_url, sup, {"category": "forever", "reason": "x"}))[0] == 400
    assert (await api(http, "PUT", cat_url, sup, {"category": "incident"}))[0] == 400
    status, body = await api(http, "PUT", cat_url, sup, change)
    assert status == 200 and body["category"] == "incident", body
    assert ledger(live, "retention_changed")[-1]["data"] == {"recording_id": rid, "from": "standard", "to": "incident",
                                                             "reason": change["reason"], "client_ip": "127.0.0.1"}
    status, dry = await api(http, "POST", f"{live.url}/api/retention/run?dry_run=1", adm)
    assert status == 200 and dry["due"] == [], dry

    await live.app[AUDIT_LEDGER].close()  # ships the last audit rows, then stops (as a server stopping does)
    await live.app[ARCHIVE].close()  # signs the final tree head
    report = verify_archive(live.settings.archive_dir, allow_unanchored=True)
    assert report.failures == [], report.failures


async def test_disabled_archive_answers_503(make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(archive={"enabled": False})
    live.add_user("op", "operator")
    status, body, _ = await get(http, f"{live.url}/api/recordings", await live.login("op"))
    assert status == 503 and body["error"]["code"] == "archive_disabled"


def test_cli_retention_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeArchive(tmp_path / "a")
    fake.recording("rec-old", opened=T0)
    fake.recording("rec-new", opened=time.time() - 60, segments=3)
    fake.ledger.close()  # one writer per ledger: the CLI opens it itself
    archive = {"dir": str(fake.root), "signing_key": str(tmp_path / "a/keys/ledger.pem"), **RULES}
    settings = settings_for(tmp_path, archive=archive)
    assert cli.retention_run(settings, dry_run=True) == 0
    assert "would delete 2 segments of 1 recordings" in capsys.readouterr().out
    assert (fake.root / "recordings/rec-old/000001.webm").is_file()
    assert cli.retention_run(settings, dry_run=False) == 0
    assert not (fake.root / "recordings/rec-old/000001.webm").exists()
    assert [e["actor"] for e in entries(fake.root) if e["type"] == "segment_deleted"] == ["system", "system"]
    assert verify_archive(fake.root, allow_unanchored=True).failures == []
