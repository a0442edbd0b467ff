"""Who may call what, for every route the server has (issue #14's standing campaign).

The table below says, for each method and path of ``app.router.routes()`` (static files aside;
``HEAD`` follows its ``GET``), which callers pass authorization: anonymous, each role, a unit's
token, a party's portal token. The test calls every route as every caller with real credentials
and fails when a caller passes where the table says no, is refused where it says yes, or when a
route exists that the table does not list (or the other way round) — a new route needs a line
here before it can ship. "Passes" means any answer but 401 and 403 (a 400 or 404 for a dummy id
is fine); refused means 401 or 403.
"""

from __future__ import annotations

import aiohttp

from dispatch_server.auth import PERMISSIONS, ROLES
from tests.conftest import LiveServer

ANONYMOUS, UNIT, PARTY = "anonymous", "unit", "party"
CALLERS = (ANONYMOUS, *ROLES, UNIT, PARTY)
EVERYONE = frozenset(CALLERS)


def staff(permission: str) -> frozenset[str]:
    return PERMISSIONS[permission]


ROUTES: dict[tuple[str, str], frozenset[str]] = {
    # Engine.IO: anyone may shake hands; credentials are checked when a namespace is joined.
    ("GET", "/socket.io/"): EVERYONE,
    ("POST", "/socket.io/"): EVERYONE,
    ("OPTIONS", "/socket.io/"): EVERYONE,
    # public by design
    ("POST", "/api/login"): EVERYONE,
    ("POST", "/api/party/login"): EVERYONE,
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/healthz/live"): EVERYONE,
    ("GET", "/healthz/ready"): EVERYONE,
    # 404 for all without [metrics] token (metrics have a listener of their own); with one, the
    # token alone passes (tests/dispatch_server/test_metrics.py)
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/api/openapi.json"): EVERYONE,
    ("GET", "/"): EVERYONE,
    ("GET", "/field"): EVERYONE,
    ("GET", "/portal"): EVERYONE,
    ("GET", "/report/action"): EVERYONE,  # the page; its data comes from /api/actions/{id}/report
    ("GET", "/portal/court-public-key.pem"): EVERYONE,  # what a party verifies a package with
    ("GET", "/portal/dispatch_verify.py"): EVERYONE,  # the second verifier, for anyone to run
    ("GET", "/vendor/socket.io.min.js"): EVERYONE,
    ("GET", "/dl/{token}/{what}"): EVERYONE,  # the link is the credential (unguessable, revocable, expiring)
    ("PATCH", "/whip/{unit_id}/{session_id}"): EVERYONE,  # 405 for all: no trickle ICE
    ("PATCH", "/whep/{unit_id}/{session_id}"): EVERYONE,
    # a person's session
    ("POST", "/api/logout"): frozenset(ROLES),
    ("GET", "/api/me"): staff("session.self"),
    ("GET", "/api/console-config"): staff("session.self"),
    ("GET", "/api/units"): staff("units.read"),
    ("GET", "/api/health"): staff("system.health"),
    # units
    ("POST", "/whip/{unit_id}"): frozenset({UNIT}),
    ("DELETE", "/whip/{unit_id}/{session_id}"): frozenset({UNIT}),
    ("GET", "/telemetry/{unit_id}"): frozenset({UNIT}),
    ("POST", "/api/units/{unit_id}/sos"): frozenset({UNIT}),
    ("POST", "/api/units/{unit_id}/snapshots"): frozenset({UNIT}),
    # live view and talk-back
    ("POST", "/whep/{unit_id}"): staff("live.watch"),
    ("DELETE", "/whep/{unit_id}/{session_id}"): staff("live.watch"),
    ("POST", "/api/talk/{unit_id}"): staff("live.watch"),
    ("DELETE", "/api/talk/{unit_id}/{talk_id}"): staff("live.watch"),
    # dispatch
    ("GET", "/api/units/nearest"): staff("dispatch.read"),
    ("GET", "/api/units/{unit_id}/track"): staff("dispatch.read"),
    ("GET", "/api/actions"): staff("dispatch.read"),
    ("POST", "/api/actions"): staff("dispatch.write"),
    ("GET", "/api/actions/{id}"): staff("dispatch.read"),
    ("PATCH", "/api/actions/{id}"): staff("dispatch.write"),
    ("POST", "/api/actions/{id}/start"): staff("dispatch.write"),
    ("POST", "/api/actions/{id}/end"): staff("dispatch.write"),
    ("GET", "/api/actions/{id}/report"): staff("reports.read"),
    ("GET", "/api/actions/{id}/procedure"): staff("dispatch.read"),
    ("POST", "/api/actions/{id}/cancel"): staff("dispatch.write"),
    ("POST", "/api/instructions"): staff("dispatch.write"),
    ("GET", "/api/instructions"): staff("dispatch.read"),
    ("GET", "/api/instructions/{id}"): staff("dispatch.read"),
    ("POST", "/api/instructions/{id}/cancel"): staff("dispatch.write"),
    ("GET", "/api/alerts"): staff("dispatch.read"),
    ("POST", "/api/alerts/{id}/ack"): staff("alerts.ack"),
    ("GET", "/api/audit"): staff("audit.read"),
    # administration: units and people
    ("POST", "/api/units"): staff("units.admin"),
    ("POST", "/api/units/{unit_id}/rotate"): staff("units.admin"),
    ("POST", "/api/units/{unit_id}/disable"): staff("units.admin"),
    ("POST", "/api/units/{unit_id}/enable"): staff("units.admin"),
    ("GET", "/api/users"): staff("accounts.admin"),
    ("POST", "/api/users"): staff("accounts.admin"),
    ("POST", "/api/users/{username}/password"): staff("accounts.admin"),
    ("POST", "/api/users/{username}/role"): staff("accounts.admin"),
    ("POST", "/api/users/{username}/disable"): staff("accounts.admin"),
    ("POST", "/api/users/{username}/enable"): staff("accounts.admin"),
    # the evidence archive
    ("GET", "/api/recordings"): staff("evidence.view"),
    ("GET", "/api/recordings/{id}"): staff("evidence.view"),
    ("GET", "/api/recordings/{id}/segments/{seq}"): staff("evidence.view"),
    ("PUT", "/api/recordings/{id}/category"): staff("evidence.hold"),
    ("GET", "/api/holds"): staff("evidence.view"),
    ("POST", "/api/holds"): staff("evidence.hold"),
    ("DELETE", "/api/holds/{case}"): staff("evidence.hold"),
    ("POST", "/api/retention/run"): staff("evidence.retention"),
    ("POST", "/api/archive/sign"): staff("evidence.sign"),
    ("GET", "/api/snapshots"): staff("evidence.view"),
    ("GET", "/api/snapshots/{snapshot_id}"): staff("evidence.view"),
    # party access: the portal (a party's token), and the court's side
    ("GET", "/api/party/me"): frozenset({PARTY}),
    ("GET", "/api/party/actions"): frozenset({PARTY}),
    ("GET", "/api/party/requests"): frozenset({PARTY}),
    ("POST", "/api/party/requests"): frozenset({PARTY}),
    ("POST", "/api/party/requests/{request_id}/reply"): frozenset({PARTY}),
    ("POST", "/api/party/codes"): staff("party.issue"),
    ("GET", "/api/footage-requests"): staff("requests.read"),
    ("GET", "/api/footage-requests/{request_id}"): staff("requests.read"),
    ("POST", "/api/footage-requests/{request_id}/decision"): staff("requests.decide"),
    ("GET", "/api/footage-requests/{request_id}/review"): staff("requests.decide"),
    ("PUT", "/api/footage-requests/{request_id}/regions"): staff("requests.decide"),
    ("POST", "/api/footage-requests/{request_id}/export"): staff("requests.decide"),
    ("GET", "/api/footage-requests/{request_id}/preview"): staff("requests.decide"),
    ("POST", "/api/footage-requests/{request_id}/release"): staff("requests.decide"),
    ("POST", "/api/links/{link_id}/revoke"): staff("requests.decide"),
    # statistics (汇总统计): the figures, their files, the actions behind a figure; the printable page
    ("GET", "/api/stats"): staff("stats.read"),
    ("GET", "/api/stats/actions"): staff("stats.read"),
    ("GET", "/report/stats"): EVERYONE,  # a page: its figures come from /api/stats with the person's token
}
# files, not handlers
STATIC_PREFIXES = ("/static/", "/vendor/leaflet/", "/vendor/fonts/noto-sans-sc/", "/vendor/echarts/")

# Path parameters filled in well-formed, so that a refusal is about who calls, not about the id.
DUMMY = {"unit_id": "bc-01", "session_id": "s-0000", "talk_id": "t-0000", "id": "rec-0000", "seq": "0",
         "case": "(2026)冀0916执1号", "snapshot_id": "snap-20260101T000000Z-0000abcd", "request_id": "req-0000",
         "link_id": "lnk-0000", "username": "m-nobody", "token": "0" * 43, "what": "package"}
CASE = "（2026）冀0916执123号"
# Routes that change a unit's credentials get another unit: the table's own unit must keep its token.
OTHER_UNIT = {"/api/units/{unit_id}/rotate", "/api/units/{unit_id}/disable", "/api/units/{unit_id}/enable"}


def served_routes(live: LiveServer) -> set[tuple[str, str]]:
    out = set()
    for route in live.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(STATIC_PREFIXES) or path.rstrip("/") in {p.rstrip("/") for p in STATIC_PREFIXES}:
            continue
        out.add((route.method, path))
    return out


async def tokens(live: LiveServer, http: aiohttp.ClientSession) -> dict[str, str | None]:
    out: dict[str, str | None] = {ANONYMOUS: None, UNIT: live.add_unit("bc-01")}
    for role in ROLES:
        live.add_user(f"m-{role}", role)
        out[role] = await live.login(f"m-{role}")
    async with http.post(f"{live.url}/api/party/codes", json={"case_number": CASE, "party_name": "张三"},
                         headers={"Authorization": f"Bearer {out['admin']}"}) as r:
        code = (await r.json())["code"]
    async with http.post(f"{live.url}/api/party/login",
                         json={"case_number": CASE, "code": code, "name": "张三"}) as r:
        out[PARTY] = (await r.json())["token"]
    return out


async def test_every_route_admits_exactly_the_callers_its_line_names(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    served = served_routes(live)
    with_get = {(m, p) for m, p in served if m == "HEAD"}
    assert all(("GET", p) in served for _, p in with_get), "a HEAD route without its GET"
    handlers = served - with_get
    assert handlers - set(ROUTES) == set(), "routes the table does not list: add a line to ROUTES"
    assert set(ROUTES) - handlers == set(), "the table lists routes the server does not have"

    creds = await tokens(live, http)
    wrong: list[str] = []
    # logging out ends the session every later call needs: last
    order = sorted(served, key=lambda mp: (mp[1] == "/api/logout", mp[1], mp[0]))
    for method, path in order:
        allowed = ROUTES[("GET" if method == "HEAD" else method, path)]
        params = {**DUMMY, "unit_id": "bc-02"} if path in OTHER_UNIT else DUMMY
        url = live.url + path.format(**{k: v for k, v in params.items() if "{" + k + "}" in path})
        for caller in CALLERS:
            headers = {"Content-Type": "application/json"}
            token = creds[caller]
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            async with http.request(method, url, data=b"{}" if method in ("POST", "PUT", "PATCH") else None,
                                    headers=headers) as r:
                status = r.status
            passed = status not in (401, 403)
            if passed != (caller in allowed):
                wrong.append(f"{method} {path} as {caller}: {status} ({'passed' if passed else 'refused'}, "
                             f"expected {'pass' if caller in allowed else 'refusal'})")
    assert not wrong, "\n".join(wrong)


def test_the_table_names_only_known_callers() -> None:
    assert all(callers <= EVERYONE and callers for callers in ROUTES.values())
    assert set(DUMMY) >= {name.strip("{}") for _, p in ROUTES for name in p.split("/") if name.startswith("{")}
