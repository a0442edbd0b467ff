"""Observability as the court's IT staff use it: Prometheus scrapes /metrics, the counters move by
what happened, series do not grow with units, the alerting rules evaluate in a real Prometheus,
health checks answer, and JSON logs carry the ids a collector searches by."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatch_server.appkeys import ARCHIVE, LIVE, METRICS_LISTENER
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish
from tests.support.redis_server import free_port
from tests.support.server import ServerProcess, write_config
from tests.support.unit_client import Console, RawUnit
from tests.support.waits import until

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "docs" / "prometheus" / "dispatch-alerts.yml"
DASHBOARD = REPO / "docs" / "grafana" / "dispatch-dashboard.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: aiohttp.ClientSession, live: LiveServer) -> Samples:
    port = live.app[METRICS_LISTENER].port
    async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.timeout(120)
async def test_counters_move_by_what_happened_in_a_live_session(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: Any, opus_loop: Any
) -> None:
    live: LiveServer = await make_live(archive={"segment_s": 1.0})
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02")}
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    before = await scrape(http, live)
    units = [await RawUnit(live.url, u, t).connect() for u, t in tokens.items()]
    pub = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-01", tokens["bc-01"], pub)
    viewer = await make_viewer(audio=False)
    await whep_view(http, live.url, "bc-01", op, viewer)
    await viewer.wait_frames(5, timeout=20)
    now = time.time()
    fixes = [{"lat": 38.04 + i * 1e-4, "lon": 114.51, "ts": now - 5 + i} for i in range(3)]
    ack = await units[1].call("positions", msgpack.packb(fixes))
    assert ack["accepted"] == 3
    bad = await units[1].call("positions", msgpack.packb([{"lat": 91, "lon": 0, "ts": now}]))
    assert len(bad["rejected"]) == 1
    _, created = await api(http, "POST", f"{live.url}/api/instructions", op, {"unit": "bc-02", "type": "text",
                                                                             "text": "到南门"})
    pending = await asyncio.wait_for(units[1].pending.get(), 10)
    assert (await units[1].call("received", {"ids": [i["id"] for i in pending["instructions"]]}))["ok"]
    await console.next("instruction_update", lambda u: u["state"] == "delivered")
    assert (await units[0].call("sos", {"note": "需要支援"}))["ok"]
    await console.next("alert", lambda a: a["kind"] == "sos")
    await until(lambda: any(k for k in live.app[ARCHIVE].active.values() if k.recording.stats.segments), 30,
                "a segment sealed")

    after = await scrape(http, live)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dispatch_instructions_total", type="text", state="queued") == 1
    assert delta("dispatch_instructions_total", type="text", state="delivered") == 1
    assert delta("dispatch_instruction_delivery_seconds_count") == 1
    assert delta("dispatch_alerts_total", kind="sos") == 1
    assert delta("dispatch_fixes_total", outcome="accepted") == 3
    assert delta("dispatch_fixes_total", outcome="rejected") == 1
    assert value(after, "dispatch_publishers") == 1 and value(after, "dispatch_connected_units") == 2
    assert value(after, "dispatch_recordings_open") == 1
    assert value(after, "dispatch_archive_segments_sealed_total") >= 1
    assert value(after, "dispatch_archive_bytes_sealed_total") > 0
    assert delta("dispatch_relay_frames_in_total", kind="video") > 10
    assert delta("dispatch_relay_frames_out_total", kind="video") >= 5
    assert delta("dispatch_viewer_first_frame_seconds_count") >= 1
    assert value(after, "dispatch_viewers") == 1
    assert delta("dispatch_publisher_packet_loss_ratio_count") >= 1
    assert value(after, "dispatch_alerts_open") >= 1
    assert value(after, "dispatch_ledger_entries") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "dispatch_event_loop_lag_seconds_count") > 0
    # No unit id, case number or person is ever a label.
    labels = {v for (_, ls) in after for _, v in ls}
    assert not labels & {"bc-01", "bc-02", "op", created["id"]}
    await viewer.close()
    await pub.close()
    for unit in units:
        await unit.close()
    await console.close()


@pytest.mark.timeout(180)
async def test_series_stay_flat_as_units_grow_from_2_to_50(live: LiveServer, http: aiohttp.ClientSession) -> None:
    async def unit_round(names: list[str]) -> list[RawUnit]:
        out = []
        for name in names:
            unit = await RawUnit(live.url, name, live.add_unit(name)).connect()
            assert (await unit.call("position", {"lat": 38.0, "lon": 114.5, "ts": time.time()}))["ok"]
            out.append(unit)
        return out

    first = await unit_round([f"u{i:02d}" for i in range(2)])
    small = await scrape(http, live)
    more = await unit_round([f"u{i:02d}" for i in range(2, 50)])
    large = await scrape(http, live)
    assert value(large, "dispatch_connected_units") == 50
    series = {key for key in large if not key[0].startswith(("process_", "python_"))}
    assert len(series) == len({key for key in small if not key[0].startswith(("process_", "python_"))}), \
        sorted(series - set(small))
    for unit in first + more:
        await unit.close()


async def test_metrics_stay_off_the_public_port_unless_a_token_is_set(
    make_live: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    plain: LiveServer = await make_live()
    async with http.get(f"{plain.url}/metrics") as r:
        assert r.status == 404
    token = "scrape-token-0123456789"
    guarded: LiveServer = await make_live(metrics={"token": token, "port": -1}, archive={"enabled": False},
                                          storage={"data_dir": str(tmp_path / "guarded")})
    assert guarded.app[METRICS_LISTENER].port is None
    async with http.get(f"{guarded.url}/metrics") as r:
        assert r.status == 401
    async with http.get(f"{guarded.url}/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200 and "dispatch_publishers" in await r.text()


async def test_health_checks_say_only_whether_the_node_lives_and_takes_work(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    for path in ("/healthz/live", "/healthz/ready"):
        async with http.get(f"{live.url}{path}") as r:
            assert r.status == 200 and await r.json() == {"ok": True}
    await live.app[LIVE].close()  # draining: it no longer takes work, but it lives
    async with http.get(f"{live.url}/healthz/ready") as r:
        assert r.status == 503 and await r.json() == {"ok": False}
    async with http.get(f"{live.url}/healthz/live") as r:
        assert r.status == 200


async def test_the_dashboard_and_the_rules_name_only_metrics_the_server_has(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    out = await asyncio.to_thread(subprocess.run, ["promtool", "check", "rules", str(RULES)], capture_output=True,
                                  text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += re.findall(r"expr: (.+)", RULES.read_text(encoding="utf-8"))
    names = {n for e in exprs for n in re.findall(r"\b((?:dispatch|process)_[a-z_]+)", e)}
    async with http.get(f"http://127.0.0.1:{live.app[METRICS_LISTENER].port}/metrics") as r:
        families = list(text_string_to_metric_families(await r.text()))
    # A family is listed even before it has samples (a labelled counter nothing has counted yet).
    exposed = {f.name + suffix for f in families for suffix in ("", "_total", "_bucket", "_count", "_sum", "_info")}
    assert names <= exposed, sorted(names - exposed)


@pytest.mark.timeout(180)
async def test_a_real_prometheus_scrapes_the_server_and_evaluates_the_rules(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is needed (make test installs it)"
    metrics_port, prom_port = free_port(), free_port()
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data",
                       extra="")
    cfg.write_text(cfg.read_text().replace("[metrics]\nport = -1\n", f"[metrics]\nport = {metrics_port}\n"))
    server = ServerProcess(cfg).start()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: dispatch
    static_configs: [{{targets: ["127.0.0.1:{metrics_port}"]}}]
""")
    proc = await asyncio.to_thread(subprocess.Popen, [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{prom_port}/api/v1"
        async with aiohttp.ClientSession() as http:
            async def api_get(path: str) -> Any:
                try:
                    async with http.get(base + path) as r:
                        return (await r.json())["data"]
                except aiohttp.ClientError:
                    return None

            deadline = time.monotonic() + 90
            targets: Any = None
            groups: Any = None
            while time.monotonic() < deadline:
                targets = await api_get("/targets")
                groups = await api_get("/rules")
                up = targets and any(t["health"] == "up" for t in targets["activeTargets"])
                evaluated = groups and groups["groups"] and all(
                    r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
                    for g in groups["groups"] for r in g["rules"])
                if up and evaluated:
                    break
                await asyncio.sleep(0.5)
            assert targets and any(t["health"] == "up" for t in targets["activeTargets"]), targets
            rules = [r for g in groups["groups"] for r in g["rules"]]
            assert len(rules) == 7
            assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules
            series = await api_get('/query?query=dispatch_node_info')
            assert series and series["result"], "the server's metrics are in Prometheus"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.stop()


@pytest.mark.timeout(120)
async def test_json_logs_carry_the_ids_a_collector_searches_by(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data", extra='[log]\nformat = "json"\n')
    from tests.support.server import add_unit

    token = add_unit(cfg, "bc-77")
    server = ServerProcess(cfg).start()
    try:
        unit = await RawUnit(server.url, "bc-77", token).connect()
        await unit.close()
        await until(lambda: any('"unit": "bc-77"' in line for line in server.log), 20, "a log line about bc-77")
    finally:
        server.stop()
    docs = [json.loads(line) for line in server.log if line.startswith("{")]
    assert docs and all({"time", "level", "node", "component", "message"} <= set(d) for d in docs)
    about = [d for d in docs if d.get("unit") == "bc-77"]
    assert about and about[0]["component"].startswith("dispatch_server")
    assert token not in server.output()
