"""HTTP API of party access: the portal's calls, the court's decisions, and the download links.

Party calls carry the portal session token (``Authorization: Bearer``) from ``POST
/api/party/login``; court calls carry an operator session like the rest of the API. Download
links (``/dl/{token}/package`` and ``/dl/{token}/video``) need no session: the token is the
credential, bound to one request, checked (expiry, revocation) on every request and logged on
every use. File paths are never taken from a URL: they come from the request's record and must
resolve inside the exports directory.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from .appkeys import ARCHIVE, EXPORTS, PARTY
from .auth import bearer
from .errors import BadRequest, NotFound
from .http_api import person_of, read_json
from .party import Party, TooManyAttempts

routes = web.RouteTableDef()

REQUEST_ID_RE = re.compile(r"^fr-[0-9a-f]{12}$")
LINK_ID_RE = re.compile(r"^ln-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{43}$")


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


async def party_of(request: web.Request) -> Party:
    return await request.app[PARTY].party(bearer(request.headers.get("Authorization")))


def _request_id(request: web.Request) -> str:
    rid = request.match_info["request_id"]
    if not REQUEST_ID_RE.match(rid):
        raise NotFound("unknown request", code="unknown_request")
    return rid


def with_links(request: web.Request, view: dict[str, Any]) -> dict[str, Any]:
    exports = request.app[EXPORTS]
    for link in view.get("links", []):
        token = exports.link_token(link["id"])
        link["url"] = f"/dl/{token}/package"
        link["video_url"] = f"/dl/{token}/video"
    return view


# --- party ------------------------------------------------------------------------------------

@routes.post("/api/party/login")
async def party_login(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected {case_number, code, name}", code="bad_request")
    try:
        token, party = await request.app[PARTY].login(body.get("case_number"), body.get("code"), body.get("name"),
                                                      client_ip(request))
    except TooManyAttempts as exc:
        return web.json_response(exc.payload(), status=429, headers={"Retry-After": str(int(exc.retry_after_s) + 1)})
    return web.json_response({"token": token, "case_number": party.case_number, "name": party.name,
                              "expires_at": party.expires_at})


@routes.get("/api/party/me")
async def party_me(request: web.Request) -> web.Response:
    party = await party_of(request)
    return web.json_response({"case_number": party.case_number, "name": party.name, "expires_at": party.expires_at})


@routes.get("/api/party/actions")
async def party_actions(request: web.Request) -> web.Response:
    party = await party_of(request)
    return web.json_response({"actions": await request.app[PARTY].case_actions(party)})


@routes.get("/api/party/requests")
async def party_requests(request: web.Request) -> web.Response:
    party = await party_of(request)
    svc = request.app[PARTY]
    docs = await svc.list(case_number=party.case_number)
    mine = [with_links(request, svc.party_view(d)) for d in docs if d["party_name"] == party.name]
    return web.json_response({"requests": mine})


@routes.post("/api/party/requests")
async def party_new_request(request: web.Request) -> web.Response:
    party = await party_of(request)
    svc = request.app[PARTY]
    doc = await svc.create_request(party, await read_json(request), client_ip(request))
    return web.json_response(svc.party_view(doc), status=201)


@routes.post("/api/party/requests/{request_id}/reply")
async def party_reply(request: web.Request) -> web.Response:
    party = await party_of(request)
    svc = request.app[PARTY]
    body = await read_json(request)
    doc = await svc.reply(party, _request_id(request), body.get("message") if isinstance(body, dict) else None,
                          client_ip(request))
    return web.json_response(svc.party_view(doc))


# --- court --------------------------------------------------------------------------------------

@routes.post("/api/party/codes")
async def issue_code(request: web.Request) -> web.Response:
    person = await person_of(request, "party.issue")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected {case_number, party_name}", code="bad_request")
    code = await request.app[PARTY].issue_code(body.get("case_number"), body.get("party_name"), person.username,
                                               f"http:{client_ip(request)}")
    return web.json_response(code, status=201)


@routes.get("/api/footage-requests")
async def list_requests(request: web.Request) -> web.Response:
    await person_of(request, "requests.read")
    docs = await request.app[PARTY].list(state=request.query.get("state"))
    return web.json_response({"requests": [with_links(request, d) for d in docs]})


@routes.get("/api/footage-requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    await person_of(request, "requests.read")
    doc = await request.app[PARTY].get(_request_id(request))
    recordings = await request.app[EXPORTS].recordings_for_decision(doc["action_id"])
    return web.json_response({**with_links(request, doc), "recordings": [
        {k: r[k] for k in ("recording_id", "unit_id", "opened", "closed", "gaps")} | {"segments": len(r["segments"])}
        for r in recordings]})


@routes.post("/api/footage-requests/{request_id}/decision")
async def decide(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    doc = await request.app[PARTY].decide(_request_id(request), await read_json(request), person.username,
                                          client_ip(request), request.app[EXPORTS].recordings_for_decision)
    return web.json_response(with_links(request, doc))


@routes.get("/api/footage-requests/{request_id}/review")
async def review(request: web.Request) -> web.Response:
    await person_of(request, "requests.decide")
    try:
        at_s = float(request.query.get("t", "0"))
    except ValueError:
        raise BadRequest("t: seconds into the recording", code="bad_query") from None
    if not 0 <= at_s < 86400 * 7:
        raise BadRequest("t: seconds into the recording", code="bad_query")
    frame = await request.app[EXPORTS].review(_request_id(request), at_s)
    return web.json_response({
        "time_s": frame.time_s, "width": frame.width, "height": frame.height,
        "blurred": [b.to_dict() for b in frame.blurred], "kept": [b.to_dict() for b in frame.kept],
        "image": "data:image/jpeg;base64," + base64.b64encode(frame.jpeg).decode(),
    })


@routes.put("/api/footage-requests/{request_id}/regions")
async def set_regions(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    body = await read_json(request)
    regions = body.get("regions") if isinstance(body, dict) else None
    doc = await request.app[PARTY].set_regions(_request_id(request), regions, person.username)
    return web.json_response(with_links(request, doc))


@routes.post("/api/footage-requests/{request_id}/export")
async def start_export(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    doc = await request.app[EXPORTS].start(_request_id(request), person.username)
    return web.json_response(with_links(request, doc), status=202)


@routes.post("/api/links/{link_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    link_id = request.match_info["link_id"]
    if not LINK_ID_RE.match(link_id):
        raise NotFound("unknown link", code="unknown_link")
    doc = await request.app[PARTY].revoke_link(link_id, person.username, client_ip(request))
    return web.json_response(with_links(request, doc))


# --- download links -------------------------------------------------------------------------------

@routes.get("/dl/{token}/{what}")
async def download(request: web.Request) -> web.StreamResponse:
    token, what = request.match_info["token"], request.match_info["what"]
    ip = client_ip(request)
    archive = request.app[ARCHIVE]
    if what not in ("package", "video") or not TOKEN_RE.match(token):
        await archive.record("access_denied", actor="anonymous", where=f"http:{ip}", outcome="denied",
                             data={"path": request.path[:200], "reason": "malformed download link"})
        raise NotFound("unknown link", code="unknown_link")
    try:
        link, doc = await request.app[PARTY].link(token)
    except Exception as exc:
        await archive.record("access_denied", actor="anonymous", where=f"http:{ip}", outcome="denied",
                             data={"path": request.path[:12] + "…", "reason": str(exc)[:200]})
        raise
    export = doc["export"]
    path = Path(export["package_path"] if what == "package" else export["export_path"]).resolve()
    base = request.app[EXPORTS].dir.resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise NotFound("the export file is missing; ask the court", code="export_missing")
    await request.app[PARTY].used(link["id"])
    await archive.record("downloaded" if what == "package" else "played", actor=f"party:{doc['party_name']}@{doc['case_number']}",
                         where=f"http:{ip}",
                         data={"request_id": doc["id"], "link_id": link["id"], "what": what,
                               "range": request.headers.get("Range", "")[:100]})
    headers = {"Cache-Control": "no-store"}
    if what == "package":
        headers["Content-Disposition"] = f'attachment; filename="{doc["id"]}.zip"'
        headers["Content-Type"] = "application/zip"
    else:
        headers["Content-Type"] = "video/mp4"
    return web.FileResponse(path, headers=headers)
