"""Talk-back: operator audio reaches the unit unchanged, linked to the running action."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCSessionDescription

from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.support.peers import make_publisher, make_viewer
from tests.support.unit_client import RawUnit


async def test_operator_talks_to_a_unit(
    live: LiveServer, http: aiohttp.ClientSession, opus_loop: object, vp8_loop: object
) -> None:
    token = live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    url = live.url
    _, action = await api(http, "POST", f"{url}/api/actions", op, ACTION)
    await api(http, "POST", f"{url}/api/actions/{action['id']}/start", op)

    mic = await make_publisher(None, opus_loop)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {op}", "Content-Type": "application/sdp"}
    async with http.post(f"{url}/api/talk/bc-01", data=mic.pc.localDescription.sdp, headers=headers) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "unit_offline"

    unit = await RawUnit(url, "bc-01", token).connect()
    async with http.post(f"{url}/api/talk/bc-01", data=mic.pc.localDescription.sdp, headers=headers) as r:
        assert r.status == 201, await r.text()
        location = r.headers["Location"]
        answer = await r.text()
    await mic.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    name, talk = await asyncio.wait_for(unit.events.get(), 5)
    assert name == "talk" and talk["from"] == "op"

    speaker = await make_viewer(video=False, audio=True)
    joined = await unit.call("talk_join", {"talk_id": talk["talk_id"], "sdp": speaker.pc.localDescription.sdp})
    assert joined["ok"], joined
    await speaker.pc.setRemoteDescription(RTCSessionDescription(sdp=joined["sdp"], type="answer"))
    await speaker.wait_audio(25, timeout=10)  # half a second of 20 ms Opus frames
    assert speaker.audio_frames >= 25

    second = await make_publisher(None, opus_loop)  # type: ignore[arg-type]
    async with http.post(f"{url}/api/talk/bc-01", data=second.pc.localDescription.sdp, headers=headers) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "talk_busy"
    await second.close()
    bad = await unit.call("talk_join", {"talk_id": "nope", "sdp": speaker.pc.localDescription.sdp})
    assert bad["error"]["code"] == "unknown_talk"

    async with http.delete(f"{url}{location}", headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 200
    name, end = await asyncio.wait_for(unit.events.get(), 5)
    assert name == "talk_end" and end["talk_id"] == talk["talk_id"]
    live.add_user("sup", "supervisor")
    _, trail = await api(http, "GET", f"{url}/api/audit?subject={talk['talk_id']}", await live.login("sup"))
    verbs = {e["verb"]: e["detail"] for e in trail["entries"]}
    assert verbs["talk.started"]["action_id"] == action["id"] and "talk.ended" in verbs
    await speaker.close()
    await mic.close()
    await unit.close()
