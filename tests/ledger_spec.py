"""The entry types and fields ``docs/archive-format.md`` specifies, and a check of what the code writes.

Every test runs under :func:`tests.conftest.ledger_spec_guard`: each entry any ledger appends
(in-process) or any archive under the test's ``tmp_path`` holds (servers in subprocesses) is
compared with the specification, and a type, a ``data`` field or a field of a documented
sub-object that the specification does not list fails the test. A third party implements the
format from the document alone: the code may not write what it does not say.

The document lists each type under a heading ``#### `type``` (or several types that share their
fields) in the section "Entry types", followed by a table whose first column names each field in
backticks; a sub-object's fields are named ``parent.child`` (``decision.by``), and ``parent.*``
allows any field (a free-form object).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Iterable, Mapping

DOC = Path(__file__).resolve().parents[1] / "docs" / "archive-format.md"
SECTION = "## Entry types"


@dataclass
class EntrySpec:
    fields: set[str] = field(default_factory=set)  # top-level data fields
    nested: dict[str, set[str]] = field(default_factory=dict)  # parent -> its fields ("*": any)


@cache
def entry_specs() -> dict[str, EntrySpec]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else None]
    specs: dict[str, EntrySpec] = {}
    current: list[EntrySpec] = []
    for line in section.splitlines():
        if line.startswith("#### "):  # one heading may name several types that share their fields
            current = [specs.setdefault(t, EntrySpec()) for t in re.findall(r"`([a-z_]+)`", line)]
            continue
        if not current or not line.startswith("| `"):
            continue
        name = line.split("|")[1].strip()
        for key in re.findall(r"`([a-z_0-9.*]+)`", name):
            for spec in current:
                if "." in key:
                    parent, child = key.split(".", 1)
                    spec.nested.setdefault(parent, set()).add(child)
                    spec.fields.add(parent)
                else:
                    spec.fields.add(key)
    return specs


def problems_of(type: str, data: Mapping[str, Any]) -> list[str]:
    specs = entry_specs()
    spec = specs.get(type)
    if spec is None:
        return [f"entry type {type!r} is not in {DOC.name} ({SECTION})"]
    out = [f"{type}: data field {k!r} is not in {DOC.name}" for k in data if k not in spec.fields]
    for parent, children in spec.nested.items():
        value = data.get(parent)
        if isinstance(value, dict) and "*" not in children:
            out += [f"{type}: field {parent}.{k} is not in {DOC.name}" for k in value if k not in children]
    return out


def archive_problems(roots: Iterable[Path]) -> list[str]:
    """What the ledgers under ``roots`` hold that the specification does not list."""
    found: list[str] = []
    for root in roots:
        for entries in root.rglob("ledger/entries.jsonl"):
            for line in entries.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a tampering test's doing; the verifier's business
                if isinstance(entry, dict) and isinstance(entry.get("data"), dict) and isinstance(entry.get("type"),
                                                                                                   str):
                    found += problems_of(entry["type"], entry["data"])
    return found
