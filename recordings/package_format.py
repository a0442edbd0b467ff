"""The export package format, shared by the builder and the verifier: member names, manifest
keys and limits, what ``manifest.sig`` signs, and the checks of the manifest's parts (the
builder refuses what the verifier would report). Specified in ``docs/archive-format.md``
("Export package").
"""

from __future__ import annotations

import re
from typing import Any

from .ledger import STH_KEYS

FORMAT = "dispatch-export-package"
FORMAT_VERSION = 1
MANIFEST_CONTEXT = "dispatch-export-manifest:v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
README = "README.txt"
FIXED_MEMBERS = (MANIFEST, SIGNATURE, PUBLIC_KEY, README)  # in this order, then the export
MANIFEST_KEYS = frozenset({"format", "version", "package_id", "created", "server_key_id", "request", "export",
                           "readme", "sth", "sources", "redactions", "completeness"})
REQUEST_KEYS = ("id", "case_number", "action_id", "recipient", "approved_by", "from", "to", "reason")
SOURCE_FIELDS = ("recording_id", "seq", "sha256", "bytes", "start", "end")  # copied from the entry's data
SMALL_MEMBER_LIMIT = {MANIFEST: 64 << 20, SIGNATURE: 1024, PUBLIC_KEY: 16 << 10, README: 1 << 20}
READ_SIZE = 1 << 20

EXPORT_NAME = re.compile(r"^export\.[a-z0-9]{1,8}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def manifest_message(manifest_bytes: bytes) -> bytes:
    """The bytes ``manifest.sig`` signs: a domain-separation line, then ``manifest.json`` exactly."""
    return f"{MANIFEST_CONTEXT}\n".encode() + manifest_bytes


# ---- the manifest's parts ------------------------------------------------------------------------


def request_problem(request: Any) -> str | None:
    if not isinstance(request, dict):
        return "request is not an object"
    missing = [k for k in REQUEST_KEYS if k not in request]
    if missing:
        return f"request lacks {missing}"
    for k in ("id", "case_number", "action_id", "recipient", "approved_by", "reason"):
        if not isinstance(request[k], str) or not request[k]:
            return f"request.{k} must be a non-empty string"
    return None


def redactions_problem(redactions: Any) -> str | None:
    if not isinstance(redactions, list):
        return "redactions is not a list"
    for i, r in enumerate(redactions):
        if not isinstance(r, dict):
            return f"redactions[{i}] is not an object"
        for k in ("method", "reason", "by"):
            if not isinstance(r.get(k), str) or not r[k]:
                return f"redactions[{i}].{k} must be a non-empty string"
        if not (r["reason"].startswith("auto:") or r["reason"].startswith("manual:")):
            return f"redactions[{i}].reason must be auto:<detector> or manual:<reason>, not {r['reason']!r}"
    return None


def completeness_problem(c: Any) -> str | None:
    if not isinstance(c, dict):
        return "completeness is not an object"
    if not isinstance(c.get("action_id"), str) or not isinstance(c.get("units"), list):
        return "completeness needs action_id (string) and units (list)"
    for i, u in enumerate(c["units"]):
        if not isinstance(u, dict) or not isinstance(u.get("unit_id"), str):
            return f"completeness.units[{i}] needs unit_id"
        if not isinstance(u.get("recorded_intervals"), list) or not isinstance(u.get("gaps"), list):
            return f"completeness.units[{i}] needs recorded_intervals and gaps (lists)"
        for j, iv in enumerate(u["recorded_intervals"]):
            if not isinstance(iv, list) or len(iv) != 2:
                return f"completeness.units[{i}].recorded_intervals[{j}] must be a [start, end] pair"
        for j, g in enumerate(u["gaps"]):
            if not isinstance(g, dict) or "start" not in g or "end" not in g or not isinstance(g.get("cause"), str):
                return f"completeness.units[{i}].gaps[{j}] needs start, end and cause"
    return None


def sth_problem(sth: Any) -> str | None:
    if not isinstance(sth, dict) or set(sth) != set(STH_KEYS):
        return f"sth must have exactly the keys {list(STH_KEYS)}"
    size = sth["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return f"sth.tree_size {size!r} is not a positive integer"
    if not all(isinstance(sth[k], str) and HEX64.match(sth[k]) for k in ("root_hash", "key_id")):
        return "sth.root_hash and sth.key_id must be hex SHA-256"
    if not isinstance(sth["timestamp"], str) or not isinstance(sth["signature"], str):
        return "sth.timestamp and sth.signature must be strings"
    return None
