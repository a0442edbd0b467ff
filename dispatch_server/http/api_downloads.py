"""Download links for parties (``/dl/{token}/package`` and ``/dl/{token}/video``).

They need no session: the token is the credential, bound to one request, checked (expiry,
revocation) on every request and written to the evidence ledger on every use. File paths are
never taken from a URL: they come from the request's record and must resolve inside the exports
directory.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from ..appkeys import ARCHIVE, DENIALS, EXPORTS, LINKS, SETTINGS
from ..errors import NotFound
from .request import client_ip

routes = web.RouteTableDef()

TOKEN_RE = re.compile(r"^[0-9a-f]{43}$")


def _inside(path: Path, base: Path) -> Path | None:
    """The resolved file if it exists and lies inside ``base`` (no link or ``..`` leads out)."""
    resolved = path.resolve()
    return resolved if resolved.is_relative_to(base.resolve()) and resolved.is_file() else None


@routes.get("/dl/{token}/{what}")
async def download(request: web.Request) -> web.StreamResponse:
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
