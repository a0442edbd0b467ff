"""Layering: media/, geo/ and recordings/ never import the server package or each other."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "media": {"dispatch_server", "geo", "recordings", "field_client"},
    "geo": {"dispatch_server", "media", "recordings", "field_client"},
    "recordings": {"dispatch_server", "media", "geo", "field_client"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_lower_layers_do_not_import_upwards() -> None:
    violations = []
    for package, forbidden in FORBIDDEN.items():
        for path in (REPO / package).rglob("*.py"):
            bad = imported_top_levels(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not violations
