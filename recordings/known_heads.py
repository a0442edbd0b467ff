"""Tree heads kept outside the archive, and the proof that today's ledger extends each of them.

An archive can only vouch for itself: whoever rewrites it can cut it back to an earlier tree head
or rewrite history and drop the heads that covered it, and everything left is consistent.
``dispatch-audit verify --known-head SOURCE`` takes tree heads issued earlier and kept elsewhere
(an auditor's copy of ``sth.jsonl``, the tree head in a party's export package, a witness's store
or endpoint, the server's checkpoint) and proves with RFC 9162 consistency proofs (§2.1.4) that
the ledger extends every one of them:

- ``bad_signature``: the head is not signed by the archive's key (a re-signed archive, or a head of
  another archive): it cannot vouch for anything;
- ``rolled_back``: the head covers more entries than the ledger holds, or more than its latest
  tree head (entries or tree heads were removed);
- ``inconsistent``: the consistency proof from the head's size to the latest tree head fails (the
  history it signed was rewritten).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .findings import Findings
from .merkle import MerkleTree, verify_consistency
from .sth_check import sth_problem
from .witness import HEADS_FILE

MAX_SOURCE_BYTES = 256 << 20


class KnownHeadError(Exception):
    """A source of known heads cannot be read (a usage error: exit status 2)."""


@dataclass(frozen=True)
class KnownHead:
    source: str  # how findings name it: "<file>#<line>", "<url>#<n>", "<package> (manifest)"
    sth: Any  # parsed JSON; checked, not trusted


def _lines(data: bytes, label: str) -> list[KnownHead]:
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        return []
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return [KnownHead(label, doc)]
    if isinstance(doc, list):
        return [KnownHead(f"{label}#{n}", h) for n, h in enumerate(doc, 1)]
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(KnownHead(f"{label}#{n}", json.loads(line)))
        except ValueError:
            out.append(KnownHead(f"{label}#{n}", None))
    return out


def load_known_heads(source: str, timeout: float = 10.0) -> list[KnownHead]:
    """The tree heads in ``source``: an ``http(s)://`` witness (``GET <url>/heads``), a witness
    store or archive directory, an export package (its manifest's tree head), or a file of tree
    heads (JSON lines, a JSON list, or one JSON object)."""
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/")
        url = url if url.endswith("/heads") else url + "/heads"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return _lines(resp.read(MAX_SOURCE_BYTES), source)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise KnownHeadError(f"{source}: {exc}") from exc
    path = Path(source).expanduser()
    if path.is_dir():
        for candidate in (path / HEADS_FILE, path / "ledger" / "sth.jsonl", path / "sth.jsonl"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise KnownHeadError(f"{source}: a directory without {HEADS_FILE} or ledger/sth.jsonl")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KnownHeadError(f"{source}: {exc}") from exc
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                manifest = json.loads(z.read("manifest.json"))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise KnownHeadError(f"{source}: an export package without a readable manifest ({exc})") from exc
        return [KnownHead(f"{path.name} (manifest)", manifest.get("sth") if isinstance(manifest, dict) else None)]
    return _lines(data, str(source))


def check_known_heads(heads: list[KnownHead], tree: MerkleTree, latest: dict[str, Any] | None,
                      key: Ed25519PublicKey | None, report: Findings) -> int:
    """Prove that the ledger (``tree``, its latest valid tree head ``latest``) extends every head;
    failures go into ``report``. Returns how many were proven."""
    proven = 0
    for head in heads:
        item = f"known head {head.source}"
        if key is None:
            report.fail("bad_signature", item, "no usable public key: the head cannot be checked")
            continue
        problem = sth_problem(head.sth, key) if isinstance(head.sth, dict) else "not a JSON object"
        if problem:
            report.fail("bad_signature", item, f"{problem}: it cannot anchor this archive (re-signed with another "
                        "key, or a head of another archive)")
            continue
        size, root = head.sth["tree_size"], bytes.fromhex(head.sth["root_hash"])
        if size > tree.size:
            report.fail("rolled_back", item, f"signed for {size} entries, the ledger holds {tree.size}: it was rolled "
                        "back or cut short (or this copy is older than the head)")
            continue
        latest_size = latest["tree_size"] if latest else 0
        if latest is None or latest_size < size or latest_size > tree.size:
            # No tree head of the archive to prove against (or it covers entries that are gone,
            # reported already): compare the entries themselves.
            if tree.root(size) != root:
                report.fail("inconsistent", item, f"entries 0..{size - 1} are not the ones this head signed: history "
                            "was rewritten")
            elif latest_size < size:
                report.fail("rolled_back", item, f"the archive's tree heads end at size {latest_size}, before this "
                            f"head of size {size}: tree heads were removed")
            else:
                proven += 1
            continue
        proof = tree.consistency_proof(size, latest_size)
        if not verify_consistency(size, latest_size, root, bytes.fromhex(latest["root_hash"]), proof):
            report.fail("inconsistent", item, f"the consistency proof from size {size} to the latest tree head "
                        f"(size {latest_size}) fails: the history this head signed was rewritten")
            continue
        proven += 1
    return proven
