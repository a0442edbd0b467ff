"""Random and mutated SDP offers to WHIP and WHEP (issue #14's standing campaign).

Each offer is a real aiortc offer with one to four mutations (lines dropped, doubled, rewritten,
inserted, m= lines and attributes replaced, numbers blown up, cut short), or plain random text.
``media/sdp.py check_offer`` must refuse it (400, or 413/415 at the edge) or aiortc must accept
it (201) — never a 5xx, never an error in the server's log — and a refusal leaves nothing
subscribed: the relay channel's ``fanouts[*].viewer_count`` and the sessions are what they were.
Accepted offers are ended again with ``DELETE`` on their ``Location``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dispatch_server.appkeys import LIVE
from tests.conftest import LiveServer
from tests.support.peers import Publisher, Viewer, make_publisher, make_viewer, whip_publish
from tests.support.waits import until

ATTRIBUTES = ["setup", "fingerprint", "ice-ufrag", "ice-pwd", "rtpmap", "fmtp", "rtcp-fb", "ssrc", "mid", "group",
              "msid", "extmap", "sendonly", "recvonly", "sendrecv", "inactive", "candidate", "rtcp-mux",
              "end-of-candidates", "ssrc-group"]
VALUE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
TOKEN = st.one_of(st.sampled_from(["audio", "video", "application", "0", "9", "-1", "65536", "UDP/TLS/RTP/SAVPF",
                                   "RTP/AVP", "96", "111", "127", "128", "99999999999999999999"]),
                  st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), min_size=1, max_size=12))
OPERATIONS = ["drop", "double", "value", "insert", "attribute", "m-line", "number", "cut", "swap"]


@st.composite
def mutated(draw: st.DrawFn, base: list[str]) -> str:
    lines = list(base)
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        op = draw(st.sampled_from(OPERATIONS), label="operation")
        i = draw(st.integers(0, max(0, len(lines) - 1)), label="line")
        if not lines:
            lines.append("v=0")
        elif op == "drop":
            del lines[i]
        elif op == "double":
            lines.insert(i, lines[i])
        elif op == "value":
            lines[i] = lines[i][:2] + draw(VALUE)
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from("abcikmorstvxz")) + "=" + draw(VALUE))
        elif op == "attribute":
            name = draw(st.sampled_from(ATTRIBUTES))
            lines[i] = f"a={name}" + draw(st.one_of(st.just(""), VALUE.map(lambda v: ":" + v)))
        elif op == "m-line":
            lines[i] = "m=" + " ".join(draw(st.lists(TOKEN, max_size=8)))
        elif op == "number":
            lines[i] = re.sub(r"\d+", lambda _: draw(st.sampled_from(["0", "-1", "4294967296", "9" * 40, "1e9"])),
                              lines[i], count=1)
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    sep = draw(st.sampled_from(["\r\n", "\n"]), label="line end")
    return sep.join(lines) + sep


def offers(base: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        mutated(base),
        mutated(base),
        mutated(base),  # three in four are mutations of a real offer
        st.text(max_size=300),
        st.sampled_from(["", "v=0", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "x" * 40000]),
    )


@dataclass
class Stage:
    live: LiveServer
    http: aiohttp.ClientSession
    operator: str
    unit_token: str  # of "fz-pub", which never publishes except when an offer is accepted
    publisher: Publisher
    viewer: Viewer  # only its offer is used
    base_publish: list[str]
    base_view: list[str]

    def subscribed(self) -> list[int]:
        return [f.viewer_count for f in self.live.app[LIVE].relay.channel("bc-01").fanouts]

    def sessions(self) -> tuple[int, int]:
        live = self.live.app[LIVE]
        return len(live.publishers), len(live.viewers)

    async def post(self, path: str, token: str, offer: str) -> tuple[int, str, str | None]:
        async with self.http.post(f"{self.live.url}{path}", data=offer.encode("utf-8", "surrogatepass"),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/sdp"}) as r:
            return r.status, await r.text(), r.headers.get("Location")

    async def end(self, location: str, token: str) -> None:
        async with self.http.delete(f"{self.live.url}{location}", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()


@pytest.fixture
async def stage(live: LiveServer, http: aiohttp.ClientSession, vp8_loop: Any) -> Any:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    publisher = await make_publisher(vp8_loop)
    await whip_publish(http, live.url, "bc-01", token, publisher)
    viewer = await make_viewer()
    other = await make_publisher(vp8_loop)
    s = Stage(live, http, await live.login("op"), live.add_unit("fz-pub"), publisher, viewer,
              other.pc.localDescription.sdp.split("\r\n")[:-1], viewer.pc.localDescription.sdp.split("\r\n")[:-1])
    await other.close()
    yield s
    await viewer.close()
    await publisher.close()


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_whep_offers_are_refused_or_accepted_and_refusals_subscribe_nothing(
    stage: Stage, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    offer = data.draw(offers(stage.base_view), label="offer")
    before, sessions = stage.subscribed(), stage.sessions()
    status, body, location = await stage.post("/whep/bc-01", stage.operator, offer)
    event(f"WHEP {status}")
    assert status in (201, 400, 413, 415), (status, body[:300])
    if status == 201:
        assert location is not None
        await stage.end(location, stage.operator)
        await until(lambda: stage.subscribed() == before, 10, "the accepted viewer unsubscribed again")
    else:
        assert '"error"' in body
    assert stage.subscribed() == before and stage.sessions() == sessions
    assert_quiet(caplog)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_whip_offers_are_refused_or_accepted_and_refusals_publish_nothing(
    stage: Stage, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    offer = data.draw(offers(stage.base_publish), label="offer")
    before, sessions = stage.subscribed(), stage.sessions()
    status, body, location = await stage.post("/whip/fz-pub", stage.unit_token, offer)
    event(f"WHIP {status}")
    assert status in (201, 400, 413, 415), (status, body[:300])
    if status == 201:
        assert location is not None
        await stage.end(location, stage.unit_token)
    else:
        assert '"error"' in body
    await until(lambda: stage.sessions() == sessions, 10, "no publisher left behind")
    assert stage.subscribed() == before, "the live unit's viewers are untouched"
    assert_quiet(caplog)
