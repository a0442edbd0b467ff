"""Reading a request at the edge: bounded bodies, JSON, the caller's identity, query parameters."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from .. import strict_json
from ..appkeys import AUTH, SETTINGS
from ..auth import Person, bearer
from ..errors import BadRequest, TooLarge


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes without buffering it."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} of {request.content_length} bytes is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is over {limit} bytes")
        chunks.append(chunk)


async def read_json(request: web.Request) -> Any:
    """The body as JSON, read strictly (:mod:`dispatch_server.strict_json`)."""
    raw = await read_body(request, request.app[SETTINGS].server.max_message_bytes, "request body")
    return strict_json.loads(raw)


async def read_object(request: web.Request, what: str) -> dict[str, Any]:
    """A JSON object body; 400 ``bad_request`` naming ``what`` it should be otherwise."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object {what}", code="bad_request")
    return body


async def person_of(request: web.Request, permission: str) -> Person:
    """The logged-in person behind the request, checked for ``permission``."""
    person = await request.app[AUTH].person(bearer(request.headers.get("Authorization")))
    person.require(permission)
    return person


def client_ip(request: web.Request) -> str:
    """The client's address: the peer's, or — only when the peer is a configured trusted proxy —
    the nearest address in ``X-Forwarded-For`` that is not itself a trusted proxy."""
    peer = request.remote or "unknown"
    proxies = request.app[SETTINGS].server.trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in proxies)


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} is not an integer", code="bad_query") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name}={value} is outside {lo}..{hi}", code="bad_query")
    return value
