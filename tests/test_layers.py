"""Layering: who may import whom.

Packages: ``utctime`` and ``sqlcompat`` (bottom) < ``media``, ``geo``, ``recordings`` (libraries,
sealed from each other) < ``field_client`` (a program of its own) and ``dispatch_server`` (the server).

Inside ``dispatch_server``: ``stores/`` (storage) < the domain services (the package's top-level
modules) < the edges ``http/`` and ``sio/`` (and ``appkeys``) < the root (``app``, ``server``, ``cli``,
``__main__``), which wires them. The domain never imports an edge or the root.

Imports are read from the source: ``import x``, ``from x import y``, relative imports resolved
to the module they name, and ``importlib.import_module("x")`` / ``__import__("x")`` with a
literal name, so a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {"dispatch_server", "field_client", "media", "geo", "recordings", "utctime", "sqlcompat"}

# Top-level package -> the top-level packages of ours it may import.
ALLOWED = {
    "utctime": set(),
    "sqlcompat": set(),
    "media": {"utctime"},
    "geo": {"utctime", "sqlcompat"},
    "recordings": {"utctime", "sqlcompat"},
    "field_client": {"utctime", "media", "geo"},
    "dispatch_server": {"utctime", "sqlcompat", "media", "geo", "recordings"},
}

SERVER_ROOT = {"app", "server", "cli", "__main__"}
SERVER_EDGES = {"http", "sio", "appkeys"}  # appkeys: how the edges find the services the root built


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module ``source`` (the module ``module``) imports."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


def server_layer(module: str) -> str | None:
    """``stores``, ``domain``, ``edge`` or ``root`` for a module of ``dispatch_server``."""
    parts = module.split(".")
    if parts[0] != "dispatch_server" or len(parts) == 1:
        return None
    if parts[1] == "stores":
        return "stores"
    if parts[1] in SERVER_EDGES:
        return "edge"
    if parts[1] in SERVER_ROOT:
        return "root"
    return "domain"


# A server layer may import only the layers listed (and itself).
SERVER_ALLOWED = {
    "stores": {"stores"},
    "domain": {"stores", "domain"},
    "edge": {"stores", "domain", "edge"},
    "root": {"stores", "domain", "edge", "root"},
}
# Modules every server layer may use: settings and the error tree.
SERVER_SHARED = {"dispatch_server.config", "dispatch_server.errors"}


def violations(module: str, imports: set[str]) -> list[str]:
    top = module.split(".")[0]
    found = []
    for name in sorted(imports):
        other = name.split(".")[0]
        if other in OURS and other != top and other not in ALLOWED[top]:
            found.append(f"{module} imports {name} ({top} may not import {other})")
    layer = server_layer(module)
    if layer is not None:
        for name in sorted(imports):
            other_layer = server_layer(name)
            if other_layer is None or name in SERVER_SHARED or any(name.startswith(s + ".") for s in SERVER_SHARED):
                continue
            if other_layer not in SERVER_ALLOWED[layer]:
                found.append(f"{module} imports {name} (the {layer} layer may not import the {other_layer} layer)")
    return found


def all_violations() -> list[str]:
    found = []
    for top in OURS:
        for path in sorted((REPO / top).rglob("*.py")):
            module = module_name(path)
            source = path.read_text(encoding="utf-8")
            found += violations(module, imported_modules(source, module, path.name == "__init__.py"))
    return found


def test_every_package_imports_only_the_layers_below_it() -> None:
    assert all_violations() == []


def test_the_checker_sees_every_kind_of_forbidden_import() -> None:
    """Deliberate violations, one of each kind, must all be reported."""
    cases = {
        ("recordings.archive", "from media.relay import Channel"): "recordings may not import media",
        ("recordings.audit_cli", "import importlib\nimportlib.import_module('dispatch_server.config')"):
            "recordings may not import dispatch_server",
        ("dispatch_server.demo", "from field_client.fleet import run_fleet"):
            "dispatch_server may not import field_client",
        ("media.relay", "__import__('geo.fix')"): "media may not import geo",
        ("dispatch_server.instructions", "from .sio.push import Push"): "domain layer may not import the edge layer",
        ("dispatch_server.live", "from . import app"): "domain layer may not import the root layer",
        ("dispatch_server.stores.accounts", "from ..roster import Roster"):
            "stores layer may not import the domain layer",
        ("dispatch_server.http.api_actions", "from ..app import create_app"):
            "edge layer may not import the root layer",
        ("field_client.unit", "from recordings.ledger import Ledger"): "field_client may not import recordings",
    }
    for (module, source), expected in cases.items():
        found = violations(module, imported_modules(source, module, False))
        assert any(expected in v for v in found), (module, source, found)
    # and what is allowed passes
    assert violations("dispatch_server.http.api_actions", imported_modules(
        "from ..actions import ActionService\nfrom ..errors import BadRequest", "dispatch_server.http.api_actions",
        False)) == []
    assert violations("dispatch_server.actions", imported_modules(
        "from .stores.database import Database\nfrom .config import Settings", "dispatch_server.actions", False)) == []
