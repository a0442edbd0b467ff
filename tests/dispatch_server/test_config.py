from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import pytest
import uvloop

from dispatch_server.config import ConfigError, load_settings
from tests.support.server import ServerProcess, write_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_toml_equals_the_embedded_defaults() -> None:
    shipped = load_settings(REPO / "config.toml", env={})
    defaults = load_settings(None, env={})
    assert shipped.server == defaults.server
    assert shipped.media == defaults.media
    assert shipped.data_dir == REPO / "data"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 9000\n[media]\npublisher_timeout_s = 2.5\n")
    s = load_settings(cfg, env={"DISPATCH_SERVER__PORT": "9100", "DISPATCH_CONSOLE__PATROL_INTERVAL_S": "3"})
    assert s.server.port == 9100
    assert s.media.publisher_timeout_s == 2.5
    assert s.console.patrol_interval_s == 3.0
    assert s.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[sever]\nport = 1\n", {}, "sever"),
        ("[server]\nport = 'x'\n", {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("", {"DISPATCH_MEDIA__VIEWER_QUEUE_FRAMES": "zero"}, "media.viewer_queue_frames"),
        ("[[media.ice_servers]]\nurls = ['http://x']\n", {}, "media.ice_servers[0].urls"),
        ("[[media.ice_servers]]\nurls = ['turn:t.example:3478']\n", {}, "media.ice_servers[0]"),
        ("[redis]\nurl = 'http://x'\n", {}, "redis.url"),
        ("[cluster]\nsecret = 'short'\n", {}, "cluster.secret"),
        ("[cluster]\nadvertise_url = '10.0.0.5:8080'\n", {}, "cluster.advertise_url"),
        ("", {"DISPATCH_CLUSTER__PULL_LINGER_S": "0"}, "cluster.pull_linger_s"),
        ("[server\n", {}, "config file"),
        ("[server]\nevent_loop = 'tokio'\n", {}, "server.event_loop"),
        ("[media]\nworkers = -2\n", {}, "media.workers"),
        ("[media]\nviewer_rtx_share = -0.5\n", {}, "media.viewer_rtx_share"),
        ("", {"DISPATCH_GEO__TELEMETRY_HEARTBEAT_S": "0"}, "geo.telemetry_heartbeat_s"),
        ("[party]\nwatermark_font = 'fonts/none.ttc'\n", {}, "party.watermark_font"),
        ("[[procedure.rules]]\ntype = 'seizure'\n[[procedure.rules]]\ntype = 'seizure'\n", {},
         "procedure.rules[1].type"),
        ("[[procedure.rules]]\ntype = 'search'\nmin_recorders = -1\n", {}, "procedure.rules[0].min_recorders"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env=env)
    assert str(err.value).startswith(key)


def test_media_workers_default_to_one_per_core(tmp_path: Path) -> None:
    assert load_settings(None, env={}).media.worker_count == len(os.sched_getaffinity(0))
    assert load_settings(None, env={"DISPATCH_MEDIA__WORKERS": "0"}).media.worker_count == 0
    assert load_settings(None, env={"DISPATCH_MEDIA__WORKERS": "3"}).media.worker_count == 3
    # The suite's config files keep media in the server's process unless a test asks otherwise.
    assert load_settings(write_config(tmp_path / "a.toml", tmp_path), env={}).media.worker_count == 0
    cfg = write_config(tmp_path / "b.toml", tmp_path, "[media]\nengine = \"frames\"\n")
    assert load_settings(cfg, env={}).media.worker_count == 0
    cfg = write_config(tmp_path / "c.toml", tmp_path, "[media]\nworkers = 2\n")
    assert load_settings(cfg, env={}).media.worker_count == 2
    cfg = write_config(tmp_path / "d.toml", tmp_path, media_workers=None)
    assert load_settings(cfg, env={}).media.workers == -1


def test_secrets_print_as_stars(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[redis]\nurl = 'redis://u:hunter2@127.0.0.1:6379/0'\n"
        "[cluster]\nsecret = 'cluster-secret-of-thirty-two-chars!'\n"
        "[[media.ice_servers]]\nurls = ['turn:t.example:3478']\nusername = 'u'\ncredential = 's3cret'\n"
    )
    s = load_settings(cfg, env={})
    text = repr(s)
    assert "hunter2" not in text and "s3cret" not in text and "cluster-secret" not in text
    assert "***" in text
    assert s.media.ice_servers[0].as_rtc_dict()["credential"] == "s3cret"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("event_loop", "loop_class"), [
    ("uvloop", "uvloop.Loop"),
    ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop"),
])
def test_the_server_runs_on_the_configured_event_loop(tmp_path: Path, event_loop: str, loop_class: str) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data")
    server = ServerProcess(cfg, env={"DISPATCH_SERVER__EVENT_LOOP": event_loop}).start()
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as r:
            assert json.load(r)["ok"] is True
    finally:
        assert server.stop() == 0
    assert f"event loop: {loop_class}" in server.output()


async def test_the_test_suite_runs_on_uvloop_as_the_server_does() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
