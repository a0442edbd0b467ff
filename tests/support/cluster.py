"""What the multi-node tests share: a node's config, a small publishing unit and the check that a
unit publishes on a given node (read from the cluster's roster through any node's API)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.processes import Process
from tests.support.server import write_config


def node_config(tmp_path: Path, name: str, postgres_url: str, redis_url: str) -> Path:
    """One node of the cluster: the shared database and Redis, its own data directory (archive,
    ledger, catalog stay per node) and its own ``node_id``."""
    cfg = write_config(tmp_path / f"{name}.toml", tmp_path / f"data-{name}", f'[redis]\nurl = "{redis_url}"\n')
    text = cfg.read_text(encoding="utf-8")
    text = text.replace("[storage]\n", f'[storage]\nurl = "{postgres_url}"\n', 1)
    text = text.replace("port = 0\n", f'port = 0\nnode_id = "{name}"\n', 1)
    cfg.write_text(text, encoding="utf-8")
    return cfg


async def start_whip_unit(servers: list[str], unit_id: str, token: str) -> Process:
    """A ``field-client`` publishing a small test pattern over WHIP (no audio, no GPS), trying
    ``servers`` in order."""
    args = [arg for url in servers for arg in ("--server", url)]
    return await Process.start(
        "-m", "field_client", *args, "--unit", unit_id, "--token", token, "--signalling", "whip",
        "--video", "test-pattern", "--audio", "none", "--size", "160x120", "--fps", "10", "--gps", "none")


async def published_on(http: aiohttp.ClientSession, url: str, session: str, unit_id: str, node: str) -> bool:
    """Whether the roster, read through the node at ``url``, shows ``unit_id`` publishing on ``node``."""
    async with http.get(f"{url}/api/units", headers={"Authorization": f"Bearer {session}"}) as r:
        assert r.status == 200, await r.text()
        units = (await r.json())["units"]
    [unit] = [u for u in units if u["id"] == unit_id]
    return bool(unit["publishing"]) and unit["node"] == node
