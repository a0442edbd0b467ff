"""A client of Janus's HTTP API (the "REST" transport) and of its VideoRoom plugin, for the benchmark.

The load generator publishes and watches through Janus with it as it does through WHIP/WHEP on
this server (:mod:`tests.support.peers`). The protocol, as Janus 1.1 speaks it:

- ``POST /janus {"janus": "create"}`` makes a session; ``POST /janus/<session> {"janus":
  "attach", "plugin": ...}`` a handle; ``POST /janus/<session>/<handle> {"janus": "message",
  "body": ..., "jsep": ...}`` sends a plugin request. Synchronous plugin requests (``create``,
  ``destroy`` a room) answer ``success`` with ``plugindata``; asynchronous ones (``joinandconfigure``,
  ``join``, ``start``) answer ``ack`` and deliver their result later as an ``event`` carrying the
  same ``transaction``.
- Events arrive on a long poll, ``GET /janus/<session>?maxev=N`` (a JSON array; a lone
  ``keepalive`` after 30 s without events). :class:`JanusSession` runs that poll in one task and
  resolves the waiting request by transaction, and sends ``keepalive`` every
  :data:`KEEPALIVE_S` so the session outlives Janus's ``session_timeout``.
- VideoRoom, one room per published unit: a publisher ``joinandconfigure``\\ s with its offer and
  gets the answer and its feed id (``joined``); a subscriber ``join``\\ s with ``ptype
  subscriber`` and the feed, gets Janus's offer (``attached``) and answers it with ``start``.

Offers and answers carry all their candidates (aiortc gathers before it sends; Janus runs
half-trickle and puts its candidates in its SDP), so ``"trickle": false`` and no trickle messages.
Errors (a Janus ``error``, a plugin ``error_code``, no event in time) raise :class:`JanusError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_S = 25.0  # Janus destroys a session silent for session_timeout (60 s by default)
EVENT_TIMEOUT_S = 20.0  # an asynchronous request whose event does not come in this long failed
POLL_MAX_EVENTS = 16
REQUEST_TIMEOUT_S = 15.0


class JanusError(RuntimeError):
    """Janus refused a request, or its answer did not come in time."""


def _transaction() -> str:
    return secrets.token_hex(8)


class JanusSession:
    """One Janus session: requests, one long-poll task that dispatches events, keepalives.

    ``async with JanusSession(http, url) as session`` creates it and destroys it on exit;
    :meth:`close` is idempotent. ``url`` is the API root, e.g. ``http://127.0.0.1:8088/janus``.
    """

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.id = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._up: dict[int, asyncio.Event] = {}  # handle -> set on its "webrtcup" (ICE and DTLS done)
        self._tasks: list[asyncio.Task[None]] = []
        self.events_seen = 0  # every event the long poll delivered (for tests and logs)
        self.closed = False

    async def __aenter__(self) -> JanusSession:
        await self.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # transport -----------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or _transaction()}
        try:
            async with self.http.post(self.url + path, json=body,
                                      timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as resp:
                answer: dict[str, Any] = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise JanusError(f"{body['janus']} {path or '/'}: {type(exc).__name__}: {exc}") from exc
        if answer.get("janus") == "error":
            error = answer.get("error", {})
            raise JanusError(f"{body['janus']} {path or '/'}: Janus error {error.get('code')}: {error.get('reason')}")
        return answer

    async def create(self) -> None:
        answer = await self._post("", {"janus": "create"})
        self.id = int(answer["data"]["id"])
        self._tasks = [asyncio.create_task(self._poll(), name=f"janus-poll-{self.id}"),
                       asyncio.create_task(self._keepalive(), name=f"janus-keepalive-{self.id}")]

    async def _poll(self) -> None:
        """Long-poll the session's events and hand each to the request waiting for it."""
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.id}", params={"maxev": str(POLL_MAX_EVENTS)},
                                         timeout=aiohttp.ClientTimeout(total=60)) as resp:
                    payload = await resp.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                logger.warning("janus session %s: long poll failed: %s", self.id, exc)
                await asyncio.sleep(0.5)
                continue
            for event in payload if isinstance(payload, list) else [payload]:
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        self.events_seen += 1
        future = self._waiting.get(str(event.get("transaction", "")))
        if kind == "event" and future is not None and not future.done():
            future.set_result(event)
        elif kind == "webrtcup":
            self._up_event(int(event.get("sender", 0))).set()
        elif kind in ("hangup", "detached"):
            logger.info("janus session %s: %s from handle %s (%s)", self.id, kind, event.get("sender"),
                        event.get("reason", ""))

    def _up_event(self, handle: int) -> asyncio.Event:
        return self._up.setdefault(handle, asyncio.Event())

    async def wait_up(self, handle: int, timeout: float = EVENT_TIMEOUT_S) -> None:
        """Until Janus reports the handle's PeerConnection up (``webrtcup``): a publisher's feed
        accepts subscribers only then."""
        try:
            await asyncio.wait_for(self._up_event(handle).wait(), timeout)
        except asyncio.TimeoutError:
            raise JanusError(f"handle {handle}: no webrtcup within {timeout:g} s") from None

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self._post(f"/{self.id}", {"janus": "keepalive"})
            except JanusError as exc:
                logger.warning("janus session %s: keepalive failed: %s", self.id, exc)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for future in self._waiting.values():
            future.cancel()
        if self.id:
            with contextlib.suppress(JanusError):
                await self._post(f"/{self.id}", {"janus": "destroy"})

    # handles and plugin messages -------------------------------------------------------------
    async def attach(self, plugin: str = VIDEOROOM) -> int:
        answer = await self._post(f"/{self.id}", {"janus": "attach", "plugin": plugin})
        return int(answer["data"]["id"])

    async def detach(self, handle: int) -> None:
        self._up.pop(handle, None)
        await self._post(f"/{self.id}/{handle}", {"janus": "detach"})

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request: the plugin's answer (``plugindata.data``)."""
        answer = await self._post(f"/{self.id}/{handle}", {"janus": "message", "body": body})
        return _plugin_data(body, answer)

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout: float = EVENT_TIMEOUT_S) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous plugin request: the event that answers it, as (plugin data, jsep or None)."""
        transaction = _transaction()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        try:
            request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
            if jsep is not None:
                request["jsep"] = jsep
            answer = await self._post(f"/{self.id}/{handle}", request)
            if answer.get("janus") == "success":  # some requests answer at once
                return _plugin_data(body, answer), answer.get("jsep")
            try:
                event = await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise JanusError(f"{body.get('request')}: no event from Janus within {timeout:g} s") from None
            return _plugin_data(body, event), event.get("jsep")
        finally:
            self._waiting.pop(transaction, None)


def _plugin_data(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = answer.get("plugindata", {}).get("data", {})
    if "error_code" in data or "error" in data:
        raise JanusError(f"{body.get('request')}: VideoRoom error {data.get('error_code')}: {data.get('error')}")
    return data


# --- VideoRoom ----------------------------------------------------------------------------------

async def create_room(session: JanusSession, handle: int, description: str = "bench", record_dir: str = "") -> int:
    """A VideoRoom for one publisher (VP8 and Opus, no bitrate cap, not saved); its id.
    ``record_dir``: the room records its publisher there (``.mjr`` files)."""
    body: dict[str, Any] = {
        "request": "create", "description": description, "publishers": 1, "videocodec": "vp8",
        "audiocodec": "opus", "bitrate": 0, "notify_joining": False, "permanent": False,
    }
    if record_dir:
        body.update(record=True, rec_dir=record_dir)
    data = await session.request(handle, body)
    return int(data["room"])


async def destroy_room(session: JanusSession, handle: int, room: int) -> None:
    await session.request(handle, {"request": "destroy", "room": room, "permanent": False})


async def publish(session: JanusSession, handle: int, room: int, offer_sdp: str,
                  display: str = "") -> tuple[int, str]:
    """Join ``room`` as its publisher with ``offer_sdp``: (feed id, Janus's answer SDP)."""
    data, jsep = await session.message(
        handle, {"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": display or "bench"},
        jsep={"type": "offer", "sdp": offer_sdp, "trickle": False},
    )
    if data.get("videoroom") != "joined" or jsep is None or jsep.get("type") != "answer":
        raise JanusError(f"joinandconfigure: unexpected answer {data}")
    return int(data["id"]), str(jsep["sdp"])


async def subscribe(session: JanusSession, handle: int, room: int, feed: int) -> str:
    """Join ``room`` as a subscriber of ``feed``: Janus's offer SDP (answer it with :func:`start`)."""
    data, jsep = await session.message(
        handle, {"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": feed}]},
    )
    if data.get("videoroom") != "attached" or jsep is None or jsep.get("type") != "offer":
        raise JanusError(f"join as subscriber: unexpected answer {data}")
    return str(jsep["sdp"])


async def start(session: JanusSession, handle: int, room: int, answer_sdp: str) -> None:
    """Hand a subscriber's answer to Janus; media flows once ICE and DTLS complete."""
    data, _ = await session.message(handle, {"request": "start", "room": room},
                                    jsep={"type": "answer", "sdp": answer_sdp, "trickle": False})
    if data.get("started") != "ok":
        raise JanusError(f"start: unexpected answer {data}")
