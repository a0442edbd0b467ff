"""``GET /metrics`` for Prometheus, and the health checks a load balancer or Kubernetes asks.

``/metrics`` is served on a listener of its own (``[metrics] host``/``port``, a management
address, off the public port); on the public port it answers only with ``Authorization: Bearer
<metrics.token>`` when a token is configured, 404 otherwise.

``/healthz/live`` says the process runs; ``/healthz/ready`` that it takes work: the database
answers, the archive is open and not out of space, Redis (in Redis mode) answers, and the node is
not draining. Both say nothing else (``{"ok": bool}``); details are for admins (``/api/health``).
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from ..appkeys import ARCHIVE, DATABASE, LIVE, METRICS, NODE_FIGURES, ROSTER, SETTINGS
from ..auth import bearer
from ..errors import NotFound, Unauthorized
from .metrics_listener import render

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics_on_public_port(request: web.Request) -> web.StreamResponse:
    token = request.app[SETTINGS].metrics.token
    if not token:
        raise NotFound("metrics are served on the metrics listener ([metrics] host and port)", code="not_found")
    given = bearer(request.headers.get("Authorization")) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("send Authorization: Bearer <metrics.token>", code="bad_token")
    return await render(request.app[METRICS], request.app[NODE_FIGURES], request)


@routes.get("/healthz/live")
async def live(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _ready(app: web.Application) -> bool:
    if not app[LIVE].accepting:
        return False
    try:
        db = app[DATABASE]
        await db.run(db.query, "SELECT 1")
        await app[ROSTER].presence.get("-")  # Redis in Redis mode
    except Exception as exc:
        logger.warning("not ready: %s", exc)
        return False
    archive = app.get(ARCHIVE)
    return archive is None or not archive.disk_full


@routes.get("/healthz/ready")
async def ready(request: web.Request) -> web.Response:
    ok = await _ready(request.app)
    return web.json_response({"ok": ok}, status=200 if ok else 503)
