"""HTTP middleware: every error as JSON (the one mapping of :mod:`dispatch_server.errors`), and
security headers on every response."""

from __future__ import annotations

import logging
import secrets
from typing import Awaitable, Callable

from aiohttp import web

from ..errors import BodyTimeout, DispatchError, TooManyAttempts
from ..log_format import REQUEST_ID

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = secrets.token_hex(6)
    REQUEST_ID.set(request_id)  # in every log line of this request (log_format)
    try:
        resp = await handler(request)
    except DispatchError as exc:
        if exc.status >= 500 or exc.status in (401, 429):
            logger.info("%s %s: %s %s", request.method, request.path, exc.status, exc.message)
        headers = {"Retry-After": str(int(exc.retry_after_s) + 1)} if isinstance(exc, TooManyAttempts) else None
        resp = web.json_response(exc.payload(), status=exc.status, headers=headers)
        if isinstance(exc, BodyTimeout):
            resp.force_close()  # the rest of a late body is not waited for on this connection
        return resp
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = exc.reason.lower().replace(" ", "_")
        return web.json_response(
            {"error": {"code": code, "message": f"{exc.reason}: {request.method} {request.path}"}},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k in ("Allow",)},
        )
    if request.path.startswith(("/api/", "/whip/", "/whep/")):
        resp.headers.setdefault("Cache-Control", "no-store")
    if not resp.prepared:
        resp.headers.setdefault("X-Request-Id", request_id)
    return resp


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    # On every response, not only text/html: a FileResponse's type is known only once it is sent.
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp
