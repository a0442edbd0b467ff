"""The OpenAPI document describes exactly the routes the server has."""

from __future__ import annotations

import re

import aiohttp

from tests.conftest import LiveServer


async def test_openapi_covers_every_api_route(live: LiveServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{live.url}/api/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    documented = {
        (path, method.upper()) for path, item in doc["paths"].items() for method in item if method != "parameters"
    }
    served = set()
    for route in live.app.router.routes():
        info = route.get_info()
        path = info.get("formatter") or info.get("path") or ""
        if route.method in ("HEAD", "OPTIONS", "*") or not re.match(r"^/(api|whip|whep|telemetry)/", path):
            continue
        served.add((path, route.method))
    assert served - documented == set(), "routes missing from /api/openapi.json"
    assert documented - served == set(), "documented routes the server does not have"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                assert op["responses"], f"{method} {path} documents no response"
