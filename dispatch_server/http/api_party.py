"""HTTP API of the party portal (当事人查询): sign in, see the case's actions, ask for footage,
answer the court, and read the requests with their download links.

Party calls carry the portal session token (``Authorization: Bearer``) from ``POST
/api/party/login``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from recordings.ledger import key_id, load_public_key

from ..appkeys import ARCHIVE, EXPORTS, PARTY, REQUESTS
from ..auth import bearer
from ..errors import NotFound, TooManyAttempts
from ..footage_requests import party_view
from ..party_access import Party
from .parse_party import parse_footage_request, parse_reply, parse_sign_in
from .request import client_ip, read_json, read_object

routes = web.RouteTableDef()

REQUEST_ID_RE = re.compile(r"^fr-[0-9a-f]{12}$")


async def party_of(request: web.Request) -> Party:
    return await request.app[PARTY].party(bearer(request.headers.get("Authorization")))


def request_id_of(request: web.Request) -> str:
    rid = request.match_info["request_id"]
    if not REQUEST_ID_RE.match(rid):
        raise NotFound("unknown request", code="unknown_request")
    return rid


def with_links(request: web.Request, view: dict[str, Any]) -> dict[str, Any]:
    """The request (or its party view) with each link's download addresses."""
    exports = request.app[EXPORTS]
    for link in view.get("links", []):
        token = exports.link_token(link["id"])
        link["url"] = f"/dl/{token}/package"
        link["video_url"] = f"/dl/{token}/video"
    return view


@routes.get("/portal/court-public-key.pem")
async def court_public_key(request: web.Request) -> web.Response:
    """The key that signs the court's packages and tree heads, and its id (the party compares it
    with the one the court publishes; the verifier takes it with --public-key)."""
    pem = request.app[ARCHIVE].ledger.public_key_pem()
    return web.Response(body=pem, headers={
        "Content-Type": "application/x-pem-file", "Cache-Control": "no-cache",
        "Content-Disposition": 'attachment; filename="court-public-key.pem"',
        "X-Key-Id": key_id(load_public_key(pem))})


@routes.post("/api/party/login")
async def party_login(request: web.Request) -> web.Response:
    sign_in = parse_sign_in(await read_object(request, "{case_number, code, name}"))
    try:
        token, party = await request.app[PARTY].login(sign_in, client_ip(request))
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
    docs = await request.app[REQUESTS].list(case_number=party.case_number)
    mine = [with_links(request, party_view(d)) for d in docs if d["party_name"] == party.name]
    return web.json_response({"requests": mine})


@routes.post("/api/party/requests")
async def party_new_request(request: web.Request) -> web.Response:
    party = await party_of(request)
    req = parse_footage_request(await read_object(request, "{action_id, reason, from, to}"))
    doc = await request.app[REQUESTS].create(party, req, client_ip(request))
    return web.json_response(party_view(doc), status=201)


@routes.post("/api/party/requests/{request_id}/reply")
async def party_reply(request: web.Request) -> web.Response:
    party = await party_of(request)
    rid = request_id_of(request)
    message = parse_reply(await read_json(request))
    doc = await request.app[REQUESTS].reply(party, rid, message, client_ip(request))
    return web.json_response(party_view(doc))
