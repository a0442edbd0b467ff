"""Reading a request at the edge: bounded bodies, JSON, the caller's identity, query parameters."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import strict_json
from ..appkeys import AUTH, SETTINGS
from ..auth import Person, bearer
from ..errors import BadRequest, BodyTimeout, TooLarge
from .client_address import trusted_proxies
from .connection_guard import body_deadline_s


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes without buffering it,
    and (408 ``body_timeout``) a body that has not arrived within ``server.body_timeout_s`` plus
    1 s per 32 KiB (of its declared length, else of ``limit``): a slow sender holds nothing long."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"{what} of {declared} bytes is over {limit} bytes")
    timeout_s = body_deadline_s(request.app[SETTINGS].server.body_timeout_s, limit if declared is None else declared)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{what} is over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"{what}: {size} bytes arrived in {timeout_s:.0f} s; send it faster or smaller") from None


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
    proxies = trusted_proxies(request.app[SETTINGS].server.trusted_proxies)
    return proxies.client(request.remote or "unknown", request.headers.get("X-Forwarded-For", ""))


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
