"""A witness: a store of the ledger's signed tree heads kept away from the archive.

The server sends every tree head it signs to its witnesses (``[archive] witnesses``,
:mod:`recordings.witness_client`); a witness keeps each one only if the ledger it comes from
provably extends the heads it already holds (an RFC 9162 consistency proof, §2.1.4), and refuses
one that does not (a rolled-back or rewritten ledger, or a second history signed with the same
key). An auditor later checks an archive against a witness's heads
(``dispatch-audit verify --known-head``).

A witness store is a directory (on another disk or machine):

- ``heads.jsonl``: the heads kept, one canonical tree-head line each (as in ``sth.jsonl``),
  sizes strictly increasing, every one consistent with the one before;
- ``public_key.pem``: the key whose heads it keeps (given, or the key of the first head's sender);
- ``refused.jsonl``: each refused head with the reason and the time, for the record.

``dispatch-audit witness serve`` puts a store behind HTTP (:class:`WitnessHTTPServer`):
``GET /heads`` (every head, JSON lines), ``GET /heads/latest`` (one head, 404 when none) and
``POST /heads`` with ``{"sth": {...}, "from_size": n, "consistency": [hex, ...]}``, answered
``200 {"latest": head}``, ``409 {"error": "inconsistent", ...}`` (refused and recorded),
``412 {"error": "need_proof", "latest": head}`` (send a proof from the witness's size) or ``400``.
Formats: ``docs/archive-format.md``, "Witnesses".
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import iso_millis

from .durable import fsync_dir
from .ledger import canonical_json, load_public_key, public_key_pem_of
from .merkle import verify_consistency
from .sth_check import sth_problem

HEADS_FILE = "heads.jsonl"
KEY_FILE = "public_key.pem"
REFUSED_FILE = "refused.jsonl"
MAX_BODY = 64 * 1024  # a tree head and a proof of at most 64 hashes fit easily


class WitnessError(Exception):
    """The witness store cannot be used (unreadable, another key)."""


@dataclass(frozen=True)
class Verdict:
    """What a witness answered: ``kept`` (stored or already held), ``need_proof`` (send a proof
    from ``latest``'s size), ``refused`` (inconsistent or invalid; ``reason`` says why)."""

    status: str
    reason: str
    latest: dict[str, Any] | None


class WitnessStore:
    """One witness directory; thread-safe, and safe against other processes (``flock``)."""

    def __init__(self, directory: Path, public_key: Ed25519PublicKey | None = None) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()
        self._key = public_key

    def key(self) -> Ed25519PublicKey | None:
        """The key whose heads this store keeps; None before the first head (and no key given)."""
        if self._key is None:
            try:
                self._key = load_public_key((self.dir / KEY_FILE).read_bytes())
            except FileNotFoundError:
                return None
            except ValueError as exc:
                raise WitnessError(f"{self.dir / KEY_FILE}: {exc}") from exc
        return self._key

    def heads(self) -> list[dict[str, Any]]:
        try:
            data = (self.dir / HEADS_FILE).read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n"):
            if line.strip():
                try:
                    head = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash: the store never vouched for it
                if isinstance(head, dict):
                    out.append(head)
        return out

    def latest(self) -> dict[str, Any] | None:
        heads = self.heads()
        return heads[-1] if heads else None

    def submit(self, sth: dict[str, Any], from_size: int | None, consistency: list[str],
               key: Ed25519PublicKey | None = None) -> Verdict:
        """Keep ``sth`` if it is signed by the store's key (``key`` adopts a key when the store
        has none yet) and consistent with the latest head held (``consistency``: the proof from
        ``from_size``, which must be that head's size)."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                return self._submit(sth, from_size, consistency, key)
            finally:
                os.close(fd)

    def _submit(self, sth: dict[str, Any], from_size: int | None, consistency: list[str],
                key: Ed25519PublicKey | None) -> Verdict:
        mine = self.key()
        if mine is None:
            if key is None:
                return self._refuse(sth, "this witness has no key yet: start it with the court's public key", None)
            self._write_key(key)
            mine = self._key = key
        latest = self.latest()
        problem = sth_problem(sth, mine)
        if problem:
            return self._refuse(sth, f"not a valid tree head of this witness's key: {problem}", latest)
        if latest is not None:
            size, held = sth["tree_size"], latest["tree_size"]
            if size < held or (size == held and sth["root_hash"] != latest["root_hash"]):
                if any(h == sth for h in self.heads()):
                    return Verdict("kept", "already held", latest)
                why = (f"a different root for size {held}" if size == held
                       else f"size {size} is smaller than the {held} entries this witness already saw")
                return self._refuse(sth, f"inconsistent with the head held ({why}): the ledger was rolled back or "
                                         "its history rewritten", latest)
            if size == held:
                return Verdict("kept", "already held", latest)
            if from_size != held:
                return Verdict("need_proof", f"send a consistency proof from size {held}", latest)
            try:
                proof = [bytes.fromhex(h) for h in consistency]
            except (TypeError, ValueError):
                return Verdict("refused", "the consistency proof is not a list of hex hashes", latest)
            if not verify_consistency(held, size, bytes.fromhex(latest["root_hash"]), bytes.fromhex(sth["root_hash"]),
                                      proof):
                return self._refuse(sth, f"the ledger of size {size} does not extend the head of size {held} this "
                                         "witness holds (the consistency proof fails): history was rewritten", latest)
        self._append(HEADS_FILE, canonical_json(sth))
        return Verdict("kept", "stored", sth)

    def _refuse(self, sth: dict[str, Any], reason: str, latest: dict[str, Any] | None) -> Verdict:
        try:
            self._append(REFUSED_FILE, canonical_json({"at": iso_millis(time.time()), "reason": reason, "sth": sth}))
        except (OSError, TypeError, ValueError):
            pass  # the verdict stands even if it cannot be recorded
        return Verdict("refused", reason, latest)

    def _append(self, name: str, line: bytes) -> None:
        path = self.dir / name
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line + b"\n")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            fsync_dir(self.dir)

    def _write_key(self, key: Ed25519PublicKey) -> None:
        tmp = self.dir / f".{KEY_FILE}.tmp"
        tmp.write_bytes(public_key_pem_of(key))
        os.replace(tmp, self.dir / KEY_FILE)
        fsync_dir(self.dir)


def parse_submission(body: bytes) -> tuple[dict[str, Any], int | None, list[str]]:
    """``{"sth": {...}, "from_size": n | null, "consistency": [hex, ...]}``; ValueError if not."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("sth"), dict):
        raise ValueError("expected {\"sth\": {...}, \"from_size\": n, \"consistency\": [...]}")
    from_size = doc.get("from_size")
    if from_size is not None and (not isinstance(from_size, int) or isinstance(from_size, bool)):
        raise ValueError("from_size must be an integer or null")
    proof = doc.get("consistency", [])
    if not isinstance(proof, list) or not all(isinstance(h, str) for h in proof) or len(proof) > 64:
        raise ValueError("consistency must be a list of at most 64 hex hashes")
    return doc["sth"], from_size, proof


class WitnessHTTPServer(ThreadingHTTPServer):
    """A :class:`WitnessStore` behind HTTP (see the module docstring)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: WitnessStore) -> None:
        self.store = store
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: WitnessHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the store's files are the record; the console stays quiet

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode())

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path.endswith("/heads/latest"):
            latest = self.server.store.latest()
            if latest is None:
                self._json(404, {"error": "none", "message": "this witness holds no tree head yet"})
            else:
                self._send(200, canonical_json(latest))
        elif path.endswith("/heads"):
            self._send(200, b"".join(canonical_json(h) + b"\n" for h in self.server.store.heads()),
                       "application/jsonl")
        else:
            self._json(404, {"error": "not_found", "message": "GET /heads, GET /heads/latest, POST /heads"})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/heads"):
            self._json(404, {"error": "not_found", "message": "POST /heads"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"the body must have 1..{MAX_BODY} bytes")
            sth, from_size, proof = parse_submission(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            self._json(400, {"error": "bad_request", "message": str(exc)})
            return
        verdict = self.server.store.submit(sth, from_size, proof)
        status = {"kept": 200, "need_proof": 412, "refused": 409}[verdict.status]
        error = {"kept": None, "need_proof": "need_proof", "refused": "inconsistent"}[verdict.status]
        self._json(status, {"error": error, "message": verdict.reason, "latest": verdict.latest})

