"""WHIP/WHEP: the standard HTTP signalling, and every kind of bad request it must refuse clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.conftest import LiveServer
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish

SDP = "application/sdp"


async def test_whip_resource_lifecycle_and_errors(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    token = live.add_unit("bc-01")
    other = live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    offer = pub.pc.localDescription.sdp

    async def post(path: str, body: str | bytes, token: str | None, ctype: str = SDP) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": ctype}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with http.post(f"{live.url}{path}", data=body, headers=headers) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else {})

    cases: list[tuple[str, str | bytes, str | None, str, int, str]] = [
        ("/whip/bc-01", offer, None, SDP, 401, "unauthorized"),
        ("/whip/bc-01", offer, "not-the-token", SDP, 401, "bad_token"),
        ("/whip/bc-01", offer, other, SDP, 401, "bad_token"),  # another unit's token
        ("/whip/nope", offer, token, SDP, 401, "bad_token"),  # unknown unit: the same answer as a wrong token
        ("/whip/..%2Fetc", offer, token, SDP, 400, "bad_unit_id"),
        ("/whip/bc-01", offer, token, "text/plain", 415, "unsupported_media_type"),
        ("/whip/bc-01", "garbage", token, SDP, 400, "bad_sdp"),
        ("/whip/bc-01", offer.replace("a=fingerprint", "a=x-fingerprint"), token, SDP, 400, "bad_sdp"),
        ("/whip/bc-01", "v=0\r\n" + "a=x:y\r\n" * 10000, token, SDP, 413, "too_large"),
        ("/whip/bc-01", b"\xff\xfe v=0", token, SDP, 415, "unsupported_media_type"),
        ("/whep/bc-01", offer, op, SDP, 409, "not_publishing"),
    ]
    for path, body, tok, ctype, status, code in cases:
        got_status, payload = await post(path, body, tok, ctype)
        assert (got_status, payload.get("error", {}).get("code")) == (status, code), (path, payload)
        assert payload["error"]["message"]

    await whip_publish(http, live.url, "bc-01", token, pub)
    assert pub.location.startswith("/whip/bc-01/")
    # A second publisher while the first is live is refused, naming the problem.
    second = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    status, payload = await post("/whip/bc-01", second.pc.localDescription.sdp, token)
    assert status == 409 and payload["error"]["code"] == "already_publishing"
    await second.close()
    async with http.patch(f"{live.url}{pub.location}") as r:
        assert r.status == 405 and "trickle" in (await r.json())["error"]["message"]
    async with http.delete(f"{live.url}{pub.location}", headers={"Authorization": f"Bearer {other}"}) as r:
        assert r.status == 401
    async with http.delete(f"{live.url}/whip/bc-01/not-a-session", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 404
    async with http.delete(f"{live.url}{pub.location}", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    async with http.get(f"{live.url}/api/units", headers={"Authorization": f"Bearer {op}"}) as r:
        unit = next(u for u in (await r.json())["units"] if u["id"] == "bc-01")
        assert unit["publishing"] is False
    await pub.close()


async def test_bad_requests_do_not_disturb_a_live_stream(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    await whip_publish(http, live.url, "bc-01", token, pub)
    viewer = await make_viewer()
    await whep_view(http, live.url, "bc-01", op, viewer)
    try:
        await viewer.wait_frames(10, timeout=10)
        hostile = [
            "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 500,
            (
                "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\nm=video 9 X 96\r\n"
                "a=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:c\r\na=mid:0\r\n"
            ),
            "v=0\r\nm=audio 99999999999 RTP/AVP abc\r\n",
        ]
        results = await asyncio.gather(*(
            http.post(f"{live.url}/whep/bc-01", data=body,
                      headers={"Authorization": f"Bearer {op}", "Content-Type": SDP}) for body in hostile
        ))
        for r in results:
            assert r.status in (400, 413), await r.text()
            r.release()
        before = len(viewer.frames)
        await viewer.wait_frames(before + 15, timeout=5)
    finally:
        await viewer.close()
        await pub.close()
