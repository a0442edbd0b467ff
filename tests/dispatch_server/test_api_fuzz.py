"""The HTTP API under schemathesis (issue #14's standing campaign): every operation of
``GET /api/openapi.json``, called against ``dispatch-server serve`` on port 0 with an
administrator's token (a unit's on the units' routes, a party's on the portal's), with inputs
generated from the document (valid ones and mutated ones; schemathesis also drops or mangles the
token) and, in half the paths, the ids of what the fixture created.

The check: no 5xx, and every status is one the document lists for the operation. The examples
are derandomized (the suite's Hypothesis profile), so a failure is a fixed regression case; the
server's output must hold no traceback at the end. How many requests the campaign made is printed
at the end (``pytest -s``) and quoted in docs/security.md.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from dispatch_server.http import openapi
from tests.support.server import ServerProcess, add_unit, add_user, write_config

ADMIN_PASSWORD = "campaign-admin-1"
EXAMPLES = 100  # per operation (~55), besides schemathesis' own explicit and boundary cases
# Not exercised: logging out ends the token every other operation is called with, and the
# telemetry route is a websocket upgrade (tests/dispatch_server/test_telemetry_fuzz.py).
SKIPPED = {("POST", "/api/logout"), ("GET", "/telemetry/{unit_id}")}

calls: dict[str, int] = {"requests": 0, "5xx": 0}
statuses: dict[int, int] = {}
# Ids of what the fixture created, by path parameter name: half the generated paths name one of
# them, so operations get past "404 unknown" into their bodies and state checks.
KNOWN: dict[str, list[str]] = {}
TOKENS: dict[str, str] = {}
UNIT_ROUTES = {("POST", "/whip/{unit_id}"), ("DELETE", "/whip/{unit_id}/{session_id}"),
               ("POST", "/api/units/{unit_id}/sos"), ("POST", "/api/units/{unit_id}/snapshots")}
CASE = "(2026)冀0916执123号"
ACTION = {"case_number": CASE, "title": "查封 车辆", "type": "seizure", "address": "石家庄市 某路 1 号",
          "area": {"type": "circle", "lat": 38.04, "lon": 114.51, "radius_m": 200},
          "planned_at": "2026-11-28T01:00:00Z", "units": ["bc-01"], "officers": ["王法警"], "judge": "李法官"}


def seed(url: str, admin: str, unit_token: str) -> None:
    """A unit, an action of a case, an instruction, an alert, a party's footage request."""
    auth = {"Authorization": f"Bearer {admin}"}

    def post(path: str, body: Any, headers: dict[str, str] = auth) -> Any:
        r = requests.post(f"{url}{path}", json=body, headers=headers, timeout=10)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r.json()

    action = post("/api/actions", ACTION)
    instruction = post("/api/instructions", {"unit": "bc-01", "type": "text", "text": "到达后报告"})
    alert = post("/api/units/bc-01/sos", {}, {"Authorization": f"Bearer {unit_token}"})
    code = post("/api/party/codes", {"case_number": CASE, "party_name": "张三"})
    party = post("/api/party/login", {"case_number": CASE, "code": code["code"], "name": "张三"}, {})
    footage = post("/api/party/requests", {"action_id": action["id"], "reason": "调取录像"},
                   {"Authorization": f"Bearer {party['token']}"})
    KNOWN.update(unit_id=["bc-01"], id=[action["id"], instruction["id"], alert["id"]],
                 request_id=[footage["id"]], case=[CASE], seq=["0"])
    TOKENS.update(admin=admin, unit=unit_token, party=party["token"])


def token_for(method: str, path: str) -> str:
    """The caller each operation is meant for: units on their routes, the party on the portal's,
    the administrator everywhere else (tests/dispatch_server/test_authorization.py tries the rest)."""
    if (method, path) in UNIT_ROUTES:
        return TOKENS["unit"]
    if path.startswith("/api/party/") and path not in ("/api/party/login", "/api/party/codes"):
        return TOKENS["party"]
    return TOKENS["admin"]


@pytest.fixture(scope="module")
def campaign_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("api-fuzz")
    config = write_config(work / "config.toml", work / "data")
    add_user(config, "campaign", "admin", ADMIN_PASSWORD)
    unit_token = add_unit(config, "bc-01")
    server = ServerProcess(config).start()
    try:
        r = requests.post(f"{server.url}/api/login", json={"username": "campaign", "password": ADMIN_PASSWORD},
                          timeout=10)
        assert r.status_code == 200, r.text
        seed(server.url, r.json()["token"], unit_token)
        yield server.url, r.json()["token"]
    finally:
        server.stop()  # fails the module when the server printed a traceback
        print(f"\nAPI campaign: {calls['requests']} requests, {calls['5xx']} answered 5xx; "
              f"by status: {dict(sorted(statuses.items()))}")
        (work / "campaign.json").write_text(json.dumps(calls))


# The document as the server builds it; test_the_campaign_uses_the_served_document checks that it
# is byte for byte what GET /api/openapi.json serves. (schemathesis' lazy from_fixture loader,
# which would fetch it from the running server, does not work under pytest 9.)
schema = schemathesis.openapi.from_dict(openapi.document())
for _method, _path in sorted(SKIPPED):  # left out of the campaign, not skipped in it
    schema = cast(OpenApiSchema, schema.exclude(method=_method, path=_path))
schemathesis.serializer.alias("application/sdp", "text/plain")  # WHIP, WHEP and talk-back offers


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    known = {name: KNOWN[name] for name in path_parameters or {} if name in KNOWN}
    if not known:
        return st.just(path_parameters)
    generated = dict(path_parameters or {})
    return st.one_of(st.just(generated),
                     st.fixed_dictionaries({k: st.sampled_from(v) for k, v in known.items()})
                     .map(lambda chosen: {**generated, **chosen}))


@schema.parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_no_input_reaches_a_5xx_and_every_status_is_documented(case: Any, campaign_server: tuple[str, str]) -> None:
    assert (case.method.upper(), case.path) not in SKIPPED
    url, _ = campaign_server
    headers = {"Authorization": f"Bearer {token_for(case.method.upper(), case.path)}"}
    response = case.call(base_url=url, headers=headers, timeout=30)
    calls["requests"] += 1
    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    if response.status_code >= 500:
        calls["5xx"] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance], headers=headers)


def test_the_campaign_uses_the_served_document_and_covers_it(campaign_server: tuple[str, str]) -> None:
    url, _ = campaign_server
    doc = requests.get(f"{url}/api/openapi.json", timeout=10).json()
    assert doc == json.loads(json.dumps(openapi.document()))
    operations = {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert SKIPPED <= operations and len(operations - SKIPPED) >= 50
