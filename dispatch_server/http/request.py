"""Reading a request at the edge: bounded bodies, JSON, the caller's identity, query parameters."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

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
    raw = await read_body(request, request.app[SETTINGS].server.max_message_bytes, "request body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="bad_json") from exc


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
    return request.remote or "unknown"


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
