"""Party access over the real API: codes, lockout, request → approval → export → link, revocation,
expiry, and path tricks against every download route."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
import yarl

from dispatch_server.appkeys import PARTY
from dispatch_server.errors import TooManyAttempts, Unauthorized
from dispatch_server.party_access import PartySignIn
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from recordings.watermark import Watermarker, WatermarkSpec, find_cjk_font
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.recordings.archive_support import entries, ffprobe, of_type
from tests.recordings.test_recorder import FAST, ArchiveEvents, stop_sending, unpublish
from tests.support.peers import make_publisher, whip_publish
from tests.support.watermark import name_score

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL

CASE = "（2026）冀0916执123号"


class Clock:
    """The server's clock, moved forward by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def record_action(live: LiveServer, http: aiohttp.ClientSession, vp8: EncodedLoop, opus: EncodedAudioLoop,
                        seconds: float = 4.0) -> tuple[str, str]:
    """An action of CASE, running, whose unit bc-01 publishes ``seconds`` of video."""
    events = ArchiveEvents(live)
    token = live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    live.add_user("judge", "supervisor")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    pub = await make_publisher(vp8, opus)
    await whip_publish(http, live.url, "bc-01", token, pub)
    await asyncio.sleep(seconds)
    await stop_sending(pub)
    await unpublish(http, live, pub, token)
    await pub.close()
    await events.wait("closed")
    return action["id"], await live.login("judge")


async def party_login(http: aiohttp.ClientSession, live: LiveServer, code: str, name: str = "张三",
                      case: str = CASE) -> tuple[int, Any]:
    async with http.post(f"{live.url}/api/party/login", json={"case_number": case, "code": code, "name": name}) as r:
        return r.status, await r.json()


async def wait_state(http: aiohttp.ClientSession, live: LiveServer, judge: str, rid: str, state: str,
                     timeout: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout
    doc: dict[str, Any]
    while True:
        _, doc = await api(http, "GET", f"{live.url}/api/footage-requests/{rid}", judge)
        if doc["state"] == state:
            return doc
        assert doc["state"] not in ("failed",) or state == "failed", doc.get("export")
        assert time.monotonic() < end, f"request still {doc['state']} after {timeout} s"
        await asyncio.sleep(0.3)


async def watch_and_release(http: aiohttp.ClientSession, live: LiveServer, judge: str, rid: str) -> dict[str, Any]:
    """The court watches the finished export, as the party will get it, then releases it."""
    doc = await wait_state(http, live, judge, rid, "review")
    assert doc["links"] == []
    status, body = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/release", judge)
    assert status == 409 and body["error"]["code"] == "not_previewed", "nobody releases what they did not watch"
    async with http.get(live.url + str(doc["preview_url"])) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
        assert len(await r.read()) == doc["export"]["export"]["bytes"]
    status, released = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/release", judge)
    assert status == 200 and released["state"] == "ready" and len(released["links"]) == 1, released
    return dict(released)


async def test_request_approve_export_download_revoke_expire(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop,
        tmp_path: Path) -> None:
    clock = Clock()
    live: LiveServer = await make_live(clock=clock, archive=FAST)
    action_id, judge = await record_action(live, http, vp8_loop, opus_loop)

    status, code = await api(http, "POST", f"{live.url}/api/party/codes", judge,
                             {"case_number": CASE, "party_name": "张三"})
    assert status == 201 and len(code["code"]) == 14
    op = await live.login("op")
    status, _ = await api(http, "POST", f"{live.url}/api/party/codes", op, {"case_number": CASE, "party_name": "x"})
    assert status == 403, "operators do not issue access codes"

    status, party = await party_login(http, live, code["code"])
    assert status == 200, party
    status, again = await party_login(http, live, code["code"])  # the party comes back with the same code
    assert status == 200 and again["token"] != party["token"], again
    _, wrong_code = await party_login(http, live, "AAAA-BBBB-CCCC")
    _, wrong_name = await party_login(http, live, code["code"], name="李四")
    _, wrong_case = await party_login(http, live, code["code"], case="（2026）冀0916执124号")
    assert wrong_code == wrong_name == wrong_case and wrong_code["error"]["code"] == "bad_access_code"
    ptoken = party["token"]
    status, body = await api(http, "GET", f"{live.url}/api/party/actions", ptoken)
    assert [a["id"] for a in body["actions"]] == [action_id]
    status, body = await api(http, "POST", f"{live.url}/api/party/requests", ptoken,
                             {"action_id": "act-of-another-case", "reason": "x"})
    assert status == 404
    status, req = await api(http, "POST", f"{live.url}/api/party/requests", ptoken,
                            {"action_id": action_id, "reason": "查看执行过程是否合规"})
    assert status == 201 and req["state"] == "pending"
    rid = req["id"]

    status, body = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/decision", op,
                             {"decision": "approve"})
    assert status == 403, "operators do not decide"
    status, doc = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/decision", judge,
                            {"decision": "more_info", "reason": "请说明与本案的关系"})
    assert status == 200 and doc["state"] == "more_info"
    status, body = await api(http, "POST", f"{live.url}/api/party/requests/{rid}/reply", ptoken,
                             {"message": "我是被执行人"})
    assert status == 200 and body["state"] == "pending"
    status, doc = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/decision", judge,
                            {"decision": "approve", "reason": "依法公开"})
    assert status == 200 and doc["state"] == "approved", doc
    status, frame = await api(http, "GET", f"{live.url}/api/footage-requests/{rid}/review?t=1", judge)
    assert status == 200 and frame["image"].startswith("data:image/jpeg;base64,") and frame["width"] == 640
    status, body = await api(http, "PUT", f"{live.url}/api/footage-requests/{rid}/regions", judge,
                             {"regions": [{"x": 600, "y": 10, "w": 100, "h": 80, "reason": "车牌"}]})
    assert status == 400 and body["error"]["code"] == "region_outside_frame" and "640x480" in body["error"]["message"]
    status, doc = await api(http, "PUT", f"{live.url}/api/footage-requests/{rid}/regions", judge,
                            {"regions": [{"x": 530, "y": 390, "w": 100, "h": 80, "reason": "车牌"}]})
    assert status == 200 and len(doc["regions"]) == 1
    status, doc = await api(http, "POST", f"{live.url}/api/footage-requests/{rid}/export", judge)
    assert status == 202 and doc["state"] == "exporting"
    await wait_state(http, live, judge, rid, "review")
    status, mine = await api(http, "GET", f"{live.url}/api/party/requests", ptoken)
    assert mine["requests"][0]["links"] == [], "no link before the court releases the export"
    doc = await watch_and_release(http, live, judge, rid)

    status, mine = await api(http, "GET", f"{live.url}/api/party/requests", ptoken)
    link = mine["requests"][0]["links"][0]
    async with http.get(live.url + link["url"]) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
        package = tmp_path / "package.zip"
        package.write_bytes(await r.read())
    async with http.get(live.url + link["video_url"], headers={"Range": "bytes=0-99"}) as r:
        assert r.status == 206 and len(await r.read()) == 100
    async with http.get(live.url + link["video_url"]) as r:
        video = tmp_path / "export.mp4"
        video.write_bytes(await r.read())
    probe = ffprobe(video)
    assert {st["codec_name"] for st in probe["streams"]} == {"h264", "opus"}
    # The watermark names the party as written, in Chinese (make test installs a CJK font).
    font = find_cjk_font()
    assert font
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray(format="gray")
    marker = Watermarker(WatermarkSpec("张三", dt.datetime.now(dt.timezone.utc), font=font), frame.width, frame.height)
    assert marker.glyphs is not None
    band = luma[marker.band_y:]
    found = name_score(band, "张三", font, marker.glyphs.font_size)
    other = name_score(band, "李四", font, marker.glyphs.font_size)
    assert found > 0.5 and other < found - 0.15, (found, other)
    # The export spans the whole recording (over two segments), not just its first segment.
    sealed = of_type(live.settings.archive_dir, "segment_sealed")
    assert len(sealed) >= 2
    recorded_s = sum(seg["frames"]["video"] for seg in sealed) / vp8_loop.spec.fps
    assert abs(float(probe["format"]["duration"]) - recorded_s) <= 0.3, (probe["format"], recorded_s)
    from recordings.package_verify import verify_package

    assert verify_package(package).failures == []
    with zipfile.ZipFile(package) as z:
        assert "manifest.json" in z.namelist()

    archive = live.settings.archive_dir
    types = [e["type"] for e in entries(archive)]
    for t in ("access_code_issued", "party_login", "request_created", "request_more_info", "request_info",
              "request_approved", "exported", "export_released", "downloaded", "played", "access_denied"):
        assert t in types, f"{t} missing from the ledger"

    # Revoked: refused within a second, and the attempt is in the ledger.
    revoked_at = time.monotonic()
    status, _ = await api(http, "POST", f"{live.url}/api/links/{link['id']}/revoke", judge)
    assert status == 200
    async with http.get(live.url + link["url"]) as r:
        assert r.status == 410 and r.content_type == "text/html" and "链接已撤销" in await r.text()
    assert time.monotonic() - revoked_at < 1.0, "revocation takes effect within a second"

    # A second approved request, then time passes beyond the link's lifetime: expired.
    status, code2 = await api(http, "POST", f"{live.url}/api/party/codes", judge,
                              {"case_number": CASE, "party_name": "张三"})
    _, party2 = await party_login(http, live, code2["code"])
    _, req2 = await api(http, "POST", f"{live.url}/api/party/requests", party2["token"],
                        {"action_id": action_id, "reason": "再次查看"})
    await api(http, "POST", f"{live.url}/api/footage-requests/{req2['id']}/decision", judge, {"decision": "approve"})
    await api(http, "POST", f"{live.url}/api/footage-requests/{req2['id']}/export", judge)
    await watch_and_release(http, live, judge, req2["id"])
    _, mine = await api(http, "GET", f"{live.url}/api/party/requests", party2["token"])
    link2 = next(r for r in mine["requests"] if r["id"] == req2["id"])["links"][0]
    async with http.get(live.url + link2["url"]) as r:
        assert r.status == 200
    clock.offset += 7 * 86400 + 60
    async with http.get(live.url + link2["url"]) as r:
        assert r.status == 410 and "链接已过期" in await r.text()
    # A tampered token is unknown.
    tampered = link2["url"].replace(link2["url"][5], "0" if link2["url"][5] != "0" else "1", 1)
    async with http.get(live.url + tampered) as r:
        assert r.status == 404


async def test_wrong_codes_lock_out_an_address_but_not_the_party(make_live: Any) -> None:
    clock = Clock()
    live: LiveServer = await make_live(clock=clock, party={"max_failures": 3, "lockout_s": 60, "max_lockout_s": 120})
    party = live.app[PARTY]
    issued = await party.issue_code(CASE, "李四", "clerk", "test")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await party.login(PartySignIn(CASE, "AAAA-BBBB-CCCC", "李四"), "10.0.0.66")
    with pytest.raises(TooManyAttempts) as locked:
        await party.login(PartySignIn(CASE, issued["code"], "李四"), "10.0.0.66")
    assert 0 < locked.value.retry_after_s <= 60
    # The real party, from elsewhere, is not locked out by someone else's guessing.
    token, who = await party.login(PartySignIn(CASE, issued["code"], "李四"), "10.0.0.7")
    assert who.name == "李四" and token
    # Lockouts double per further failure but never exceed max_lockout_s, and they end.
    clock.offset += 61
    for _ in range(5):
        with pytest.raises((Unauthorized, TooManyAttempts)):
            await party.login(PartySignIn(CASE, "AAAA-BBBB-CCCC", "李四"), "10.0.0.66")
        clock.offset += 61
    with pytest.raises(TooManyAttempts) as locked:
        await party.login(PartySignIn(CASE, "AAAA-BBBB-CCCC", "李四"), "10.0.0.66")
    assert locked.value.retry_after_s <= 120
    clock.offset += 121
    issued2 = await party.issue_code(CASE, "李四", "clerk", "test")
    token, _ = await party.login(PartySignIn(CASE, issued2["code"], "李四"), "10.0.0.66")
    assert token
    # The wrong name with a right code is refused, with the answer a wrong code gets.
    issued3 = await party.issue_code(CASE, "李四", "clerk", "test")
    with pytest.raises(Unauthorized) as wrong_name:
        await party.login(PartySignIn(CASE, issued3["code"], "王五"), "10.0.0.8")
    with pytest.raises(Unauthorized) as wrong_code:
        await party.login(PartySignIn(CASE, "AAAA-BBBB-CCCC", "李四"), "10.0.0.8")
    assert wrong_name.value.message == wrong_code.value.message


def traversal_payloads() -> list[str]:
    """500 path tricks: dot segments in every encoding, absolute paths, NUL, backslashes, overlong UTF-8."""
    dots = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%c0%af", "%c0%ae%c0%ae", "．．", "...."]
    seps = ["/", "%2f", "%2F", "\\", "%5c", "%255c", "%252f", "//", "/./", "%00/"]
    targets = ["etc/passwd", "data/dispatch.sqlite3", "keys/ledger-ed25519.pem", "keys/link-secret",
               "archive/ledger/entries.jsonl"]
    out = []
    for d, s, t, depth in itertools.product(dots, seps, targets, (1, 3, 6)):
        out.append((d + s) * depth + t)
    out = out[:460]
    out += ["/etc/passwd", "%2fetc%2fpasswd", "\\..\\..\\etc\\passwd", "a%00b", "%00", "..", ".", "~",
            "~root", "C:\\Windows\\win.ini", "file:///etc/passwd", "%u002e%u002e%u2215etc", "\u202e..", "a" * 300,
            "%ff%fe", "..;/etc/passwd", "..%00/etc/passwd", "%2e%2e%3b/etc/passwd", "....//....//etc/passwd",
            "..%252f..%252fetc%252fpasswd", "%c0%2e%c0%2e/etc", "0" * 43, "f" * 43, "../" * 20,
            ".%00./etc/passwd", "..%0d%0a", "%0aSet-Cookie:x=1", "\\\\server\\share", "/dev/zero",
            "/proc/self/environ", "..%2f..%2f..%2fproc%2fself%2fenviron", "%2e%2e%2fkeys", ".git/config",
            "../../../../../../../../../../../../etc/shadow", "..%5c..%5c..%5cetc%5cpasswd",
            "%252e%252e%255cetc", "....\\\\....\\\\etc", "..././..././etc/passwd", "%2e/%2e%2e/etc/passwd",
            "static/../../keys", "\x00"]
    return out[:500]


async def test_500_path_tricks_serve_nothing_outside_the_archive(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live()
    data = live.settings.data_dir
    secrets_ = [p.read_bytes() for p in (data / "keys").glob("*") if p.is_file()]
    payloads = traversal_payloads()
    assert len(payloads) == 500
    live.add_user("aud", "auditor")
    token = await live.login("aud")
    good_token = "0" * 43
    templates = ["/dl/{p}/package", "/dl/{p}/video", f"/dl/{good_token}/{{p}}", "/dl/{p}/{p}",
                 "/api/recordings/{p}/segments/1", "/api/recordings/rec-x/segments/{p}", "/static/{p}",
                 "/vendor/leaflet/{p}", "/api/footage-requests/{p}"]
    served = []
    sem = asyncio.Semaphore(16)

    async def one(url: str) -> None:
        async with sem:
            try:
                async with http.get(yarl.URL(live.url + url, encoded=True),
                                    headers={"Authorization": f"Bearer {token}"}, allow_redirects=False) as r:
                    body = await r.read()
            except (aiohttp.ClientError, ValueError):
                return  # the client refused to even send it
            if r.status == 200 and (b"root:" in body or any(s and s in body for s in secrets_)
                                    or not url.startswith(("/static/", "/vendor/"))):
                served.append((url, r.status, body[:80]))

    await asyncio.gather(*(one(t.replace("{p}", p)) for p in payloads for t in templates))
    assert served == [], served[:5]
