"""Where the server's ``config.toml`` puts the evidence archive, read without the server package.

``dispatch-audit --config`` needs one answer from the server's configuration: the archive
directory. This reads it the way ``dispatch_server.config.load_settings`` does, for those keys
only: the defaults (``[storage] data_dir = "data"``, ``[archive] dir = ""`` meaning
``<data_dir>/archive``), then the TOML file, then environment overrides named
``DISPATCH_<SECTION>__<KEY>`` (``DISPATCH_ARCHIVE__DIR``, ``DISPATCH_STORAGE__DATA_DIR``; the
section and key are matched case-insensitively). Relative paths resolve against the config
file's folder (the working directory when there is no file); ``~`` is expanded. Keys this does
not use are not checked: the server checks them when it starts.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

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


def configured_archive_dir(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The archive directory the server would use with config file ``path`` (see
    :func:`config_path`) and environment ``env``."""
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
    data_dir = _resolve(_string(storage, "storage", "data_dir", DEFAULT_DATA_DIR), base_dir)
    configured = _string(archive, "archive", "dir", "")
    return _resolve(configured, base_dir) if configured else data_dir / "archive"


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
