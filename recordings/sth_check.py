"""Is this object a tree head signed by this key? Shared by witnesses and ``--known-head``.

A signed tree head (``docs/archive-format.md``, "Signed tree heads") as an object: exactly the
keys ``tree_size`` (a positive integer), ``root_hash`` and ``key_id`` (hex SHA-256),
``timestamp`` (the UTC time format) and ``signature`` (the canonical base64 of 64 bytes), signed
by the key with that id.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import parse_iso_millis

from .ledger import STH_KEYS, key_id, verify_sth_signature

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sth_problem(sth: Mapping[str, Any], key: Ed25519PublicKey) -> str | None:
    """None if ``sth`` is a well-formed tree head with a valid signature by ``key``, else why not."""
    if not isinstance(sth, Mapping) or set(sth) != set(STH_KEYS):
        return f"not a tree head (keys must be {list(STH_KEYS)})"
    size = sth["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return f"tree_size {size!r} is not a positive integer"
    if not all(isinstance(sth[k], str) and _HEX64.match(sth[k]) for k in ("root_hash", "key_id")):
        return "root_hash and key_id must be hex SHA-256"
    try:
        parse_iso_millis(str(sth["timestamp"]))
        signature = base64.b64decode(str(sth["signature"]), validate=True)
    except (ValueError, binascii.Error) as exc:
        return str(exc)
    if len(signature) != 64 or base64.b64encode(signature).decode() != sth["signature"]:
        return "signature is not the canonical base64 of 64 bytes"
    if sth["key_id"] != key_id(key):
        return f"signed by key id {sth['key_id'][:16]}…, not {key_id(key)[:16]}…"
    if not verify_sth_signature(sth, key):
        return "the Ed25519 signature does not verify"
    return None
