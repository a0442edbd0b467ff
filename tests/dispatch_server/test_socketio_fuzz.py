"""Random Socket.IO events and payloads on ``/unit`` and ``/console`` (issue #14's standing campaign).

Every event name the namespaces have, plus unknown ones; payloads of every JSON shape: ``None``,
integers up to 100 digits (longer ones Engine.IO's reader refuses: ``bad_packet``), ``NaN`` and
infinities (python-socketio's client writes them as bare ``NaN``), strings up to 900 KB, nesting
past the server's limit, binary; plausible messages with wrong field types, and extra arguments.
Every call must be answered ``{"ok": false, "error": {"code", "message"}}`` or
``{"ok": true, ...}``; the link must stay up; nothing may reach the server's log as an error.
Raw packets that no library would send (malformed JSON, reserved event names, events that are not
``[name, ...]``) go through a hand-written Engine.IO client and must be answered the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import socketio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dispatch_server.sio.console_namespace import ConsoleNamespace
from dispatch_server.sio.packet import RESERVED_EVENTS
from dispatch_server.sio.unit_namespace import UnitNamespace
from tests.conftest import LiveServer
from tests.support.raw_engineio import RawEngineIO
from tests.support.server import cli, write_config


def events_of(namespace: type) -> list[str]:
    return sorted(n[3:] for n in dir(namespace) if n.startswith("on_") and n not in ("on_connect", "on_disconnect"))


UNIT_EVENTS, CONSOLE_EVENTS = events_of(UnitNamespace), events_of(ConsoleNamespace)
FIELDS = ["sdp", "session_id", "after_seq", "ids", "id", "state", "reason", "result", "instruction_id", "talk_id",
          "unit_id", "lat", "lon", "accuracy", "ts", "note", "fixes", "seq", "speed", "heading"]

LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**100), 10**100), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["acknowledged", "done", "refused", "v=0\r\n", "bc-01", "1" * 64]),
)
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=25)


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


PAYLOAD = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5),  # plausible messages, wrong values
    st.dictionaries(st.sampled_from(FIELDS), LEAF, max_size=5),
    st.integers(20, 200).map(nested),  # the server refuses past 32 levels
    st.binary(max_size=2000),
    st.integers(60_000, 900_000).map(lambda n: "x" * n),  # over max_message_bytes, under Engine.IO's limit
)
UNKNOWN = st.text(min_size=1, max_size=30).filter(lambda n: n not in RESERVED_EVENTS and n not in UNIT_EVENTS
                                                  and n not in CONSOLE_EVENTS)


@dataclass
class Link:
    client: socketio.AsyncClient
    namespace: str
    dropped: list[Any] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, namespace: str, auth: dict[str, str]) -> Link:
        link = cls(socketio.AsyncClient(reconnection=False), namespace)
        link.client.on("disconnect", lambda *a: link.dropped.append(a), namespace=namespace)
        await link.client.connect(url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=10)
        return link

    async def call(self, name: str, data: Any) -> Any:
        try:
            return await self.client.call(name, data, namespace=self.namespace, timeout=15)
        except socketio.exceptions.TimeoutError:
            raise AssertionError(f"{self.namespace} {name!r}: no acknowledgement") from None


def assert_answer(answer: Any, what: str) -> None:
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), (what, answer)
    if answer["ok"] is False:
        error = answer.get("error")
        assert isinstance(error, dict), (what, answer)
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), (what, answer)
        event(f"error {error['code']}")
    else:
        event("ok")


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


@dataclass
class Links:
    live: LiveServer
    unit: Link
    console: Link


@pytest.fixture
async def links(live: LiveServer) -> Any:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    unit = await Link.open(live.url, "/unit", {"unit_id": "bc-01", "token": token})
    console = await Link.open(live.url, "/console", {"token": await live.login("op")})
    yield Links(live, unit, console)
    await unit.client.disconnect()
    await console.client.disconnect()


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(name=st.one_of(st.sampled_from(UNIT_EVENTS), st.sampled_from(UNIT_EVENTS), UNKNOWN), data=PAYLOAD,
       extra=st.booleans())
async def test_every_unit_event_is_answered_and_the_link_stays(
    links: Links, caplog: pytest.LogCaptureFixture, name: str, data: Any, extra: bool
) -> None:
    answer = await links.unit.call(name, (data, 1) if extra else data)
    assert_answer(answer, f"/unit {name}")
    assert links.unit.client.connected and not links.unit.dropped
    assert_quiet(caplog)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(name=st.one_of(st.sampled_from(CONSOLE_EVENTS), UNKNOWN), data=PAYLOAD)
async def test_every_console_event_is_answered_and_the_console_stays(
    links: Links, caplog: pytest.LogCaptureFixture, name: str, data: Any
) -> None:
    assert_answer(await links.console.call(name, data), f"/console {name}")
    assert links.console.client.connected and not links.console.dropped
    assert_quiet(caplog)


# -- raw packets -----------------------------------------------------------------------------------
@dataclass
class Raw:
    live: LiveServer
    engineio: RawEngineIO
    next_id: int = 100

    async def call(self, body: str) -> Any:
        """Send ``42/unit,<id><body>``; the acknowledgement's data."""
        self.next_id += 1
        await self.engineio.send(f"42/unit,{self.next_id}{body}")
        return await self.engineio.ack("/unit", self.next_id)


@pytest.fixture
async def raw(live: LiveServer, http: aiohttp.ClientSession) -> Any:
    token = live.add_unit("bc-01")
    engineio = await RawEngineIO.open(http, live.url)
    await engineio.join("/unit", {"unit_id": "bc-01", "token": token})
    yield Raw(live, engineio)
    await engineio.ws.close()


RAW_BODIES = [
    ('["sync",{"after_seq":NaN}]', "bad_json"),
    ('["sync",{"after_seq":-Infinity}]', "bad_json"),
    ('["sync",{"after_seq":' + "9" * 5000 + "}]", "bad_packet"),  # past Python's int digits limit
    ('["disconnect"]', "bad_packet"),  # ran the namespace's on_disconnect before
    ('["connect",{},{"unit_id":"bc-02","token":"x"}]', "bad_packet"),
    ('[1,{"after_seq":0}]', "bad_packet"),
    ("[]", "bad_packet"),
    ("{}", "bad_packet"),
    ('"sync"', "bad_packet"),
    ('["sync",', "bad_packet"),
    ('["sync",' + "[" * 3000 + "]" * 3000 + "]", "bad_packet"),
    ('["no_such_event",{}]', "unknown_event"),
    ('["sync",{"after_seq":0},{"x":1}]', "bad_message"),
]


@pytest.mark.parametrize(("body", "code"), RAW_BODIES)
async def test_raw_packets_no_library_sends_are_answered(
    raw: Raw, caplog: pytest.LogCaptureFixture, body: str, code: str
) -> None:
    answer = await raw.call(body)
    assert answer[0]["ok"] is False and answer[0]["error"]["code"] == code, answer
    assert (await raw.call('["sync",{"after_seq":0}]'))[0]["ok"] is True, "the link stays up"
    assert_quiet(caplog)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=200), JSON.map(json.dumps),
                      st.tuples(st.sampled_from(UNIT_EVENTS + ["x"]), JSON).map(lambda p: json.dumps(list(p))))
       .filter(lambda b: not b[:1].isdigit()))
async def test_any_text_after_a_call_id_is_answered(raw: Raw, caplog: pytest.LogCaptureFixture, body: str) -> None:
    answer = await raw.call(body)
    assert isinstance(answer, list) and len(answer) == 1, answer
    assert_answer(answer[0], body[:60])
    assert_quiet(caplog)


async def test_a_unit_that_sends_disconnect_as_an_event_is_still_revoked(
    raw: Raw, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the event ran on_disconnect, which released the link's revocation grant, so
    rotating the unit's token no longer closed the link."""
    await raw.call('["disconnect"]')  # answered bad_packet (tested above); before: an empty ack
    config = write_config(tmp_path / "cli.toml", raw.live.settings.data_dir)
    assert cli(config, "add-unit", "bc-01", "--kind", "body", "--rotate").returncode == 0
    async with asyncio.timeout(10):
        while True:
            text = await raw.engineio.receive_text()
            if text.startswith("41/unit"):  # the server closed the namespace
                break
    assert_quiet(caplog)
