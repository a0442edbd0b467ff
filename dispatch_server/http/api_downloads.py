"""Download links for parties (``/dl/{token}/package`` and ``/dl/{token}/video``).

They need no session: the token is the credential, bound to one request, checked (expiry,
revocation, release) on every request and written to the evidence ledger on every use. File
paths are never taken from a URL: they come from the request's record and must resolve inside the
exports directory. A person opens these links in a browser: a refusal is a page in Chinese and
English with the status (404 unknown link, 410 expired, revoked or not released), not JSON.
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

from aiohttp import web

from ..appkeys import ARCHIVE, DENIALS, EXPORTS, LINKS, METRICS, SETTINGS
from ..errors import DispatchError, NotFound
from .request import client_ip

routes = web.RouteTableDef()

TOKEN_RE = re.compile(r"^[0-9a-f]{43}$")


def _inside(path: Path, base: Path) -> Path | None:
    """The resolved file if it exists and lies inside ``base`` (no link or ``..`` leads out)."""
    resolved = path.resolve()
    return resolved if resolved.is_relative_to(base.resolve()) and resolved.is_file() else None


ERROR_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_zh} / {title_en}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}}
small{{color:#666}}</style></head>
<body><h1>{title_zh} <small>{title_en}</small></h1><p>{text_zh}</p><p><small>{text_en}</small></p>
<p><small>{status}</small></p></body></html>
"""
# By error code: (title zh, title en, what to do zh).
ERROR_TEXT = {
    "unknown_link": ("链接无效", "Unknown link", "此下载链接无效。请核对链接，或登录当事人查询页面查看您的申请。"),
    "link_expired": ("链接已过期", "Link expired", "此下载链接已过期。请登录当事人查询页面，或联系法院重新提供。"),
    "link_revoked": ("链接已撤销", "Link revoked", "法院已撤销此下载链接。如有疑问，请联系法院。"),
    "not_available": ("尚不可下载", "Not available",
                      "此申请的录像尚未由法院放行，暂不能下载。请稍后在当事人查询页面查看。"),
    "export_missing": ("文件缺失", "File missing", "文件暂时无法提供，请联系法院。"),
}


def error_page(exc: DispatchError) -> web.Response:
    zh_title, en_title, zh_text = ERROR_TEXT.get(exc.code, ("无法下载", "Cannot download",
                                                             "无法提供此文件。请联系法院。"))
    body = ERROR_PAGE.format(title_zh=zh_title, title_en=en_title, text_zh=zh_text, text_en=html.escape(exc.message),
                             status=f"{exc.status} {html.escape(exc.code)}")
    return web.Response(text=body, status=exc.status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


@routes.get("/dl/{token}/{what}")
async def download(request: web.Request) -> web.StreamResponse:
    try:
        return await _download(request)
    except DispatchError as exc:
        return error_page(exc)


async def _download(request: web.Request) -> web.StreamResponse:
    token, what = request.match_info["token"], request.match_info["what"]
    ip = client_ip(request)
    archive, denials = request.app[ARCHIVE], request.app[DENIALS]
    if what not in ("package", "video") or not TOKEN_RE.match(token):
        await denials.denied(f"http:{ip}", {"path": request.path[:40], "reason": "malformed download link"})
        raise NotFound("unknown link", code="unknown_link")
    try:
        link, doc = await request.app[LINKS].open(token)
    except Exception as exc:
        await denials.denied(f"http:{ip}", {"path": request.path[:12] + "…", "reason": str(exc)[:200]})
        raise
    export = doc["export"]
    exports = request.app[EXPORTS]
    wanted = Path(export["package_path" if what == "package" else "export_path"])
    path = await asyncio.to_thread(_inside, wanted, exports.dir)
    if path is None:  # a package made before exports moved into the archive (<data_dir>/exports)
        path = await asyncio.to_thread(_inside, wanted, request.app[SETTINGS].data_dir / "exports")
    if path is None:
        raise NotFound("the export file is missing; ask the court", code="export_missing")
    await request.app[LINKS].used(link["id"])
    request.app[METRICS].party_downloads.labels(what).inc()
    await archive.record("downloaded" if what == "package" else "played",
                         actor=f"party:{doc['party_name']}@{doc['case_number']}", where=f"http:{ip}",
                         data={"request_id": doc["id"], "link_id": link["id"], "what": what,
                               "range": request.headers.get("Range", "")[:100]})
    headers = {"Cache-Control": "no-store"}
    if what == "package":
        headers["Content-Disposition"] = f'attachment; filename="{doc["id"]}.zip"'
        headers["Content-Type"] = "application/zip"
    else:
        headers["Content-Type"] = "video/mp4"
    return web.FileResponse(path, headers=headers)
