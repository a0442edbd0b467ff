"""The console's pages and files: ``/`` (operators), ``/field`` (field units in a browser),
``/portal`` (parties), ``/report/stats`` (printable statistics), ``/report/action`` (an action's
printable report), and the vendored browser libraries from ``console/node_modules``: the Socket.IO
client, Leaflet, ECharts (the statistics' charts), and the Noto Sans SC web font
(``@fontsource/noto-sans-sc``: CSS with ``unicode-range`` subsets, so a page downloads only the
glyphs it shows)."""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from ..errors import DispatchError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIR = REPO_ROOT / "console"
STATIC_DIR = CONSOLE_DIR / "static"
SIO_CLIENT_JS = CONSOLE_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
LEAFLET_DIR = CONSOLE_DIR / "node_modules" / "leaflet" / "dist"
ECHARTS_DIR = CONSOLE_DIR / "node_modules" / "echarts" / "dist"
FONT_DIR = CONSOLE_DIR / "node_modules" / "@fontsource" / "noto-sans-sc"

PAGES = {"/": "index.html", "/field": "field.html", "/portal": "portal.html",
         "/report/action": "report.html",  # an action's report: ?id=<action id>
         "/report/stats": "report-stats.html"}  # the printable statistics (A4)
# The second verifier (docs/archive-format.md): one file, standard-library Python, for parties.
VERIFIER = REPO_ROOT / "verifier" / "dispatch_verify.py"


def _not_installed(what: str) -> DispatchError:
    return DispatchError(f"{what} is not installed: run 'make install' (npm ci in console/)",
                         code="console_not_installed")


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / name)

    return page


async def _sio_client(request: web.Request) -> web.StreamResponse:
    if not SIO_CLIENT_JS.is_file():
        raise _not_installed("the Socket.IO browser client")
    return web.FileResponse(SIO_CLIENT_JS)


async def _verifier(request: web.Request) -> web.StreamResponse:
    """The second verifier, for a party to check a package (and an auditor an archive) with
    nothing but Python 3."""
    return web.FileResponse(VERIFIER, headers={
        "Content-Type": "text/x-python; charset=utf-8", "Cache-Control": "no-cache",
        "Content-Disposition": 'attachment; filename="dispatch_verify.py"'})


async def _leaflet_missing(request: web.Request) -> web.StreamResponse:
    raise _not_installed("the map library")


async def _echarts_missing(request: web.Request) -> web.StreamResponse:
    raise _not_installed("the chart library")


async def _font_missing(request: web.Request) -> web.StreamResponse:
    raise _not_installed("the Chinese web font")


def add_static_routes(router: web.UrlDispatcher) -> None:
    for path, name in PAGES.items():
        router.add_get(path, _page(name))
    router.add_get("/vendor/socket.io.min.js", _sio_client)
    router.add_get("/portal/dispatch_verify.py", _verifier)
    if LEAFLET_DIR.is_dir():
        router.add_static("/vendor/leaflet/", LEAFLET_DIR, follow_symlinks=False)
    else:
        router.add_get("/vendor/leaflet/{path:.*}", _leaflet_missing)
    if ECHARTS_DIR.is_dir():
        router.add_static("/vendor/echarts/", ECHARTS_DIR, follow_symlinks=False)
    else:
        router.add_get("/vendor/echarts/{path:.*}", _echarts_missing)
    if FONT_DIR.is_dir():
        router.add_static("/vendor/fonts/noto-sans-sc/", FONT_DIR, follow_symlinks=False)
    else:
        router.add_get("/vendor/fonts/noto-sans-sc/{path:.*}", _font_missing)
    router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
