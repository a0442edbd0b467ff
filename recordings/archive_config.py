"""Where the server's ``config.toml`` puts the evidence archive, read without the server package.

``dispatch-audit --config`` needs a few answers from the server's configuration: the archive
directory, and what anchors it outside the archive (the checkpoint of what the server verified,
the witnesses it sends tree heads to) and how often it signs. This reads them the way
``dispatch_server.config.load_settings`` does, for those keys only: the defaults
(``[storage] data_dir = "data"``, ``[archive] dir = ""`` meaning ``<data_dir>/archive``), then the
TOML file, then environment overrides named ``DISPATCH_<SECTION>__<KEY>``
(``DISPATCH_ARCHIVE__DIR``, ``DISPATCH_STORAGE__DATA_DIR``; the section and key are matched
case-insensitively). Relative paths resolve against the config file's folder (the working
directory when there is no file); ``~`` is expanded. Keys this does not use are not checked: the
server checks them when it starts.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .checkpoint import default_checkpoint_path

ENV_PREFIX = "DISPATCH_"
DEFAULT_CONFIG = "config.toml"
DEFAULT_DATA_DIR = "data"


class ConfigError(ValueError):
    """The config file cannot be read or a key this needs has the wrong type; names the key."""


def config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """``path``, else ``$DISPATCH_CONFIG``, else ``./config.toml`` when it exists, else None."""
    if path is not None:
        return Path(path)
    named = env.get("DISPATCH_CONFIG")
    if named:
        return Path(named)
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None


DEFAULT_SIGN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ArchiveLocation:
    """What ``dispatch-audit`` takes from the server's configuration."""

    dir: Path
    checkpoint: Path
    witnesses: tuple[str, ...]  # directories (resolved) and http(s) URLs
    sign_interval_s: float
    server_url: str  # where the server listens ([server] host and port), for ``verify --fresh``


def configured_archive_dir(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The archive directory the server would use with config file ``path`` (see
    :func:`config_path`) and environment ``env``."""
    return configured_archive(path, env).dir


def configured_archive(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> ArchiveLocation:
    """The archive, its checkpoint, witnesses and signing interval as the server would use them."""
    file = config_path(path, env)
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if file is not None:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file}: not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        base_dir = file.resolve().parent
    storage = _section(raw, env, "storage")
    archive = _section(raw, env, "archive")
    server = _section(raw, env, "server")
    host = _string(server, "server", "host", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    port = server.get("port", 8080)
    data_dir = _resolve(_string(storage, "storage", "data_dir", DEFAULT_DATA_DIR), base_dir)
    configured = _string(archive, "archive", "dir", "")
    archive_dir = _resolve(configured, base_dir) if configured else data_dir / "archive"
    key = _string(archive, "archive", "signing_key", "")
    key_path = _resolve(key, base_dir) if key else data_dir / "keys" / "ledger-ed25519.pem"
    checkpoint = _string(archive, "archive", "checkpoint", "")
    witnesses = archive.get("witnesses", [])
    if isinstance(witnesses, str):
        witnesses = [w for w in witnesses.split(",") if w.strip()]  # from the environment
    if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
        raise ConfigError(f"archive.witnesses: expected a list of directories or URLs, got {witnesses!r}")
    interval = archive.get("sign_interval_s", DEFAULT_SIGN_INTERVAL_S)
    try:
        sign_interval_s = float(interval)
    except (TypeError, ValueError):
        raise ConfigError(f"archive.sign_interval_s: expected a number, got {interval!r}") from None
    return ArchiveLocation(
        dir=archive_dir,
        checkpoint=_resolve(checkpoint, base_dir) if checkpoint else default_checkpoint_path(key_path.parent,
                                                                                              archive_dir),
        witnesses=tuple(witness_location(w, base_dir) for w in witnesses),
        sign_interval_s=sign_interval_s,
        server_url=f"http://{host}:{port}")


def witness_location(value: str, base_dir: Path) -> str:
    """An ``http(s)://`` witness as it is; a witness directory resolved like the other paths."""
    value = value.strip()
    return value if value.startswith(("http://", "https://")) else str(_resolve(value, base_dir))


def _section(raw: Mapping[str, Any], env: Mapping[str, str], name: str) -> dict[str, Any]:
    """The file's table ``name`` with the environment's overrides on top (later names win)."""
    table = raw.get(name, {})
    overrides: dict[str, str] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):]
        if "__" not in rest:
            continue  # DISPATCH_CONFIG and the like are not overrides
        section, key = rest.lower().split("__", 1)
        if section == name:
            overrides[key] = value
    if not isinstance(table, Mapping):
        if overrides:
            return dict(overrides)  # the server's merge replaces a non-table with the overrides
        raise ConfigError(f"{name}: expected a table, got {table!r}")
    return {**table, **overrides}


def _string(table: Mapping[str, Any], section: str, key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{section}.{key}: expected a string, got {value!r}")
    return value


def _resolve(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()
