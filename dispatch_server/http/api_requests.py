"""HTTP API of the court's side of party access: access codes, footage requests and their
decisions, the review frame and blur regions, exports, and revoking links. Court calls carry a
person's session like the rest of the API."""

from __future__ import annotations

import base64
import re

from aiohttp import web

from ..appkeys import AUTH, EXPORTS, LINKS, PARTY, REQUESTS, TICKETS
from ..auth import PERMISSIONS, bearer
from ..errors import BadRequest, NotFound
from ..footage_requests import court_view
from .api_party import request_id_of, with_links
from .evidence_access import SealedFile
from .parse_party import case_of, name_of, parse_decision, parse_regions
from .request import client_ip, person_of, read_json, read_object
from .tickets import export_scope

routes = web.RouteTableDef()

LINK_ID_RE = re.compile(r"^ln-[0-9a-f]{12}$")


@routes.post("/api/party/codes")
async def issue_code(request: web.Request) -> web.Response:
    person = await person_of(request, "party.issue")
    body = await read_object(request, "{case_number, party_name}")
    code = await request.app[PARTY].issue_code(case_of(body.get("case_number")), name_of(body.get("party_name")),
                                               person.username, f"http:{client_ip(request)}")
    return web.json_response(code, status=201)


@routes.get("/api/footage-requests")
async def list_requests(request: web.Request) -> web.Response:
    await person_of(request, "requests.read")
    docs = await request.app[REQUESTS].list(state=request.query.get("state"))
    return web.json_response({"requests": [with_links(request, court_view(d)) for d in docs]})


@routes.get("/api/footage-requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.read")
    doc = await request.app[REQUESTS].get(request_id_of(request))
    recordings = await request.app[EXPORTS].recordings_for_decision(doc["action_id"])
    view = {**with_links(request, court_view(doc)), "recordings": [
        {k: r[k] for k in ("recording_id", "unit_id", "opened", "closed", "gaps")} | {"segments": len(r["segments"])}
        for r in recordings]}
    if doc["state"] in ("review", "ready") and person.role in PERMISSIONS["requests.decide"]:
        ticket = request.app[TICKETS].ticket(person, export_scope(doc["id"]))
        view["preview_url"] = f"/api/footage-requests/{doc['id']}/preview?ticket={ticket}"
    return web.json_response(view)


@routes.get("/api/footage-requests/{request_id}/preview")
async def preview(request: web.Request) -> web.StreamResponse:
    """The finished export as the party will receive it, for the court to watch before releasing
    it (``?ticket=`` from the request's ``preview_url``, or a Bearer token). Ledger: ``played``."""
    ticket = request.query.get("ticket")
    auth = request.app[AUTH]
    if ticket is not None:  # a ticket is scoped to one request: a malformed id matches none
        scope = export_scope(request.match_info["request_id"])
        person = await auth.person_by_hash(request.app[TICKETS].session_of(ticket, scope))
    else:
        person = await auth.person(bearer(request.headers.get("Authorization")))
    person.require("requests.decide")  # who asks, before anything about what they ask for
    rid = request_id_of(request)
    path = await request.app[EXPORTS].preview(rid, person.username, f"http:{client_ip(request)}")
    return SealedFile(path, headers={"Content-Type": "video/mp4", "Cache-Control": "private, no-store"})


@routes.post("/api/footage-requests/{request_id}/release")
async def release(request: web.Request) -> web.Response:
    """Release a watched export to the party: the download link is issued now. Ledger: ``export_released``."""
    person = await person_of(request, "requests.decide")
    doc = await request.app[EXPORTS].release(request_id_of(request), person.username, f"http:{client_ip(request)}")
    return web.json_response(with_links(request, court_view(doc)))


@routes.post("/api/footage-requests/{request_id}/decision")
async def decide(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    rid = request_id_of(request)
    decision = parse_decision(await read_object(request, "{decision, reason, ...}"))
    doc = await request.app[REQUESTS].decide(rid, decision, person.username, client_ip(request),
                                             request.app[EXPORTS].recordings_for_decision)
    return web.json_response(with_links(request, court_view(doc)))


@routes.get("/api/footage-requests/{request_id}/review")
async def review(request: web.Request) -> web.Response:
    await person_of(request, "requests.decide")
    try:
        at_s = float(request.query.get("t", "0"))
    except ValueError:
        raise BadRequest("t: seconds into the recording", code="bad_query") from None
    if not 0 <= at_s < 86400 * 7:
        raise BadRequest("t: seconds into the recording", code="bad_query")
    frame = await request.app[EXPORTS].review(request_id_of(request), at_s)
    return web.json_response({
        "time_s": frame.time_s, "width": frame.width, "height": frame.height,
        "blurred": [b.to_dict() for b in frame.blurred], "kept": [b.to_dict() for b in frame.kept],
        "image": "data:image/jpeg;base64," + base64.b64encode(frame.jpeg).decode(),
    })


@routes.put("/api/footage-requests/{request_id}/regions")
async def set_regions(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    rid = request_id_of(request)
    regions = parse_regions(await read_json(request))
    doc = await request.app[EXPORTS].set_regions(rid, regions, person.username)
    return web.json_response(with_links(request, court_view(doc)))


@routes.post("/api/footage-requests/{request_id}/export")
async def start_export(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    doc = await request.app[EXPORTS].start_export(request_id_of(request), person.username)
    return web.json_response(with_links(request, court_view(doc)), status=202)


@routes.post("/api/links/{link_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    person = await person_of(request, "requests.decide")
    link_id = request.match_info["link_id"]
    if not LINK_ID_RE.match(link_id):
        raise NotFound("unknown link", code="unknown_link")
    doc = await request.app[LINKS].revoke(link_id, person.username, client_ip(request))
    return web.json_response(with_links(request, court_view(doc)))
