"""The metrics listener: ``/metrics`` on an address of its own (``[metrics] host``/``port``), off the
public port, and the rendering both it and the token-guarded public route use."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ..config import MetricsConfig
from ..metrics import Metrics
from .node_figures import NodeFigures

logger = logging.getLogger(__name__)


async def render(metrics: Metrics, figures: NodeFigures, request: web.Request) -> web.StreamResponse:
    await figures.refresh()
    response: web.StreamResponse = await make_aiohttp_handler(metrics.registry, disable_compression=True)(request)
    return response


class MetricsListener:
    """The metrics listener: one route, on its own address. ``port`` is the port it bound."""

    def __init__(self, config: MetricsConfig, metrics: Metrics, figures: NodeFigures) -> None:
        self._config = config
        self._metrics = metrics
        self._figures = figures
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await render(self._metrics, self._figures, request)

    async def start(self) -> None:
        if self._config.port < 0:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._config.host, self._config.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"metrics listener: cannot bind {self._config.host}:{self._config.port} ({exc}); "
                          "set [metrics] port (0 = any free port, -1 = none)") from exc
        self._runner = runner
        addresses: list[Any] = runner.addresses
        self.port = addresses[0][1] if addresses else self._config.port
        logger.info("metrics on http://%s:%s/metrics", self._config.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
