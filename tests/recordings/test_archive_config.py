"""``dispatch-audit --config`` finds the archive exactly where the server puts it, without the server."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from dispatch_server.config import ConfigError as ServerConfigError
from dispatch_server.config import load_settings
from recordings.archive_config import ConfigError, configured_archive_dir
from tests.recordings.test_verify import AUDIT, build_archive

CASES: list[tuple[str, str | None, dict[str, str]]] = [
    ("defaults, no file", None, {}),
    ("defaults from an empty file", "", {}),
    ("relative data_dir", '[storage]\ndata_dir = "state"\n', {}),
    ("relative archive dir", '[storage]\ndata_dir = "state"\n[archive]\ndir = "../evidence"\n', {}),
    ("absolute archive dir", '[archive]\ndir = "/srv/evidence"\n', {}),
    ("home archive dir", '[archive]\ndir = "~/evidence"\n', {}),
    ("empty archive dir", '[storage]\ndata_dir = "/var/lib/dispatch"\n[archive]\ndir = ""\n', {}),
    ("env archive dir", '[archive]\ndir = "from-file"\n', {"DISPATCH_ARCHIVE__DIR": "from-env"}),
    ("env data_dir", '[storage]\ndata_dir = "from-file"\n', {"DISPATCH_STORAGE__DATA_DIR": "/from/env"}),
    ("env names in any case", "", {"DISPATCH_archive__Dir": "mixed"}),
    ("env without a file", None, {"DISPATCH_STORAGE__DATA_DIR": "d", "DISPATCH_ARCHIVE__DIR": ""}),
    ("other keys of the sections", '[archive]\nsegment_s = 4.0\n[storage]\ndata_dir = "x"\n', {}),
]


@pytest.mark.parametrize(("text", "env"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_archive_dir_is_the_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None,
                                    env: dict[str, str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = None
    if text is not None:
        (tmp_path / "etc").mkdir()
        path = tmp_path / "etc" / "config.toml"
        path.write_text(text)
    assert configured_archive_dir(path, env) == load_settings(path, env).archive_dir


def test_the_config_file_is_found_as_the_server_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('[archive]\ndir = "here"\n')
    named = tmp_path / "named.toml"
    named.write_text('[archive]\ndir = "named"\n')
    assert configured_archive_dir(None, {}) == load_settings(None, {}).archive_dir == tmp_path / "here"
    env = {"DISPATCH_CONFIG": str(named)}
    assert configured_archive_dir(None, env) == load_settings(None, env).archive_dir == tmp_path / "named"


@pytest.mark.parametrize("text", ['[archive]\ndir = 5\n', '[storage]\ndata_dir = ["a"]\n', "archive = 1\n"])
def test_a_wrong_type_is_refused_naming_the_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ServerConfigError) as server:
        load_settings(path, {})
    with pytest.raises(ConfigError) as ours:
        configured_archive_dir(path, {})
    assert str(ours.value) == str(server.value)


def test_an_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        configured_archive_dir(tmp_path / "absent.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[archive\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        configured_archive_dir(bad, {})


def test_cli_verifies_the_archive_a_config_and_its_env_override_name(tmp_path: Path) -> None:
    built = build_archive(tmp_path / "a", random.Random(3), recordings=1, segments=1)
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('[storage]\ndata_dir = "../a"\n[archive]\ndir = "elsewhere"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}

    def audit(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AUDIT), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**env, **extra})

    missing = audit("verify", "--config", str(cfg))  # relative to the config file's folder, not data_dir
    assert missing.returncode == 2 and f"{tmp_path / 'etc' / 'elsewhere'}: not a directory" in missing.stderr
    by_env = audit("verify", "--config", str(cfg), "--json", "--allow-unanchored", DISPATCH_ARCHIVE__DIR="../a/archive")
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["archive"] == str(built.archive)
    by_data_dir = audit("verify", "--json", "--allow-unanchored", DISPATCH_CONFIG=str(cfg),
                        DISPATCH_STORAGE__DATA_DIR=str(tmp_path / "a"),
                        DISPATCH_ARCHIVE__DIR="")
    assert by_data_dir.returncode == 0, by_data_dir.stderr
    assert json.loads(by_data_dir.stdout)["archive"] == str(built.archive)
