"""The evidence ledger's writer: an append-only, hash-chained JSON-lines file with signed tree heads.

Format: ``docs/archive-format.md``. Every :meth:`Ledger.append` is on disk (written, flushed and
``fsync``-ed) before it returns, so an entry the caller saw is never lost by a crash; a crash in
the middle of a write leaves a torn last line, which :meth:`Ledger.open` cuts off and records.

Before it appends or signs anything, :meth:`Ledger.open` checks the ledger against its own tree
heads and against the checkpoint of what was verified last time (:mod:`recordings.ledger_load`,
:mod:`recordings.checkpoint`): a history this server did not write is refused
(:class:`LedgerIntegrityError`), never signed over.

The module-level helpers (:func:`sth_message`, :func:`key_id`, :func:`load_public_key`,
:func:`verify_sth_signature`, :func:`canonical_json`) are shared with the offline verifier.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from utctime import iso_millis

from .canonical import canonical_json as canonical_json  # re-exported: the line format
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from .durable import fsync_dir
from .ledger_load import load_ledger
from .merkle import MerkleTree, leaf_hash

ENTRIES_FILE = "ledger/entries.jsonl"
STH_FILE = "ledger/sth.jsonl"
PUBLIC_KEY_FILE = "ledger/public_key.pem"
RECORDINGS_DIR = "recordings"
STH_CONTEXT = "dispatch-ledger-sth:v1"
OUTCOMES = frozenset({"ok", "denied", "failed", "recovered"})
ENTRY_KEYS = ("index", "prev", "time", "type", "actor", "where", "outcome", "data")
STH_KEYS = ("tree_size", "root_hash", "timestamp", "key_id", "signature")


class LedgerError(Exception):
    """The ledger cannot be opened or written."""


class KeyMismatchError(LedgerError):
    """The archive's ``public_key.pem`` is not the public half of the configured signing key."""


class LedgerIntegrityError(LedgerError):
    """The ledger on disk does not hold up against its own tree heads or the checkpoint: nothing
    is appended or signed. ``problems`` names each thing that failed."""

    def __init__(self, archive_dir: Path, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"the evidence ledger of {archive_dir} failed its start-up check and is refused "
                         f"(nothing is appended or signed): {'; '.join(problems)}")


class LedgerWriteError(LedgerError):
    """A line could not be written durably; the file was cut back to its previous length."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_  # e.g. errno.ENOSPC: the disk is full


# ---- helpers shared with the verifier -------------------------------------------------------


def sth_message(tree_size: int, root_hash: str, timestamp: str) -> bytes:
    """The bytes an STH signature is over."""
    return f"{STH_CONTEXT}\n{tree_size}\n{root_hash}\n{timestamp}".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the raw 32-byte Ed25519 public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM; ``ValueError`` unless it is an Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key but {type(key).__name__}")
    return key


def public_key_pem_of(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_public_key_pem(archive_dir: Path) -> bytes:
    """The archive's ``ledger/public_key.pem``; ``FileNotFoundError`` when absent."""
    return (Path(archive_dir) / PUBLIC_KEY_FILE).read_bytes()


def verify_sth_signature(sth: Mapping[str, Any], public_key: Ed25519PublicKey) -> bool:
    """True if ``sth`` is well formed enough to check and its signature verifies under ``public_key``."""
    try:
        message = sth_message(int(sth["tree_size"]), str(sth["root_hash"]), str(sth["timestamp"]))
        signature = base64.b64decode(str(sth["signature"]), validate=True)
        public_key.verify(signature, message)
    except (KeyError, ValueError, TypeError, binascii.Error, InvalidSignature):
        return False
    return True


# ---- the writer ------------------------------------------------------------------------------




def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Ledger:
    """Appends entries to ``<archive>/ledger/entries.jsonl`` and signs tree heads into ``sth.jsonl``.

    ``where`` is the default ``where`` of entries (e.g. ``recorder@node1``); ``clock`` gives POSIX
    seconds. ``checkpoint_path`` (kept outside the archive) remembers what was verified, so that a
    start checks only what is new and a rewritten or rolled-back ledger is refused; None keeps no
    checkpoint (every start checks everything, and only against the archive itself).
    ``on_signed(sth)`` is called after every new tree head, outside the lock (witnesses).
    All methods are thread-safe; :meth:`append` and :meth:`sign_tree_head` block on
    ``fsync`` (milliseconds), so async callers run them in an executor.
    """

    def __init__(self, archive_dir: Path, signing_key_path: Path, *, where: str = "server",
                 clock: Callable[[], float] = time.time, checkpoint_path: Path | None = None,
                 on_signed: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.archive_dir = Path(archive_dir)
        self.signing_key_path = Path(signing_key_path)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.where = where
        self._clock = clock
        self._on_signed = on_signed
        self._sth_lines = 0
        self._sth_hash: Any = hashlib.sha256()
        self.checked = (0, 0)  # (entries, tree heads) the last open checked; the rest the checkpoint vouched for
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        self._offsets = array("Q")  # byte offset of each line of entries.jsonl
        self._entries_len = 0
        self._sth_len = 0
        self._latest_sth: dict[str, Any] | None = None
        self._key: Ed25519PrivateKey | None = None
        self._entries_fd = -1
        self._sth_fd = -1

    @property
    def _entries_path(self) -> Path:
        return self.archive_dir / ENTRIES_FILE

    @property
    def _sth_path(self) -> Path:
        return self.archive_dir / STH_FILE

    # -- lifecycle --

    def open(self, anchors: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> list[str]:
        """Create or load the archive's ledger, repairing a torn tail; returns notes on what was
        repaired or looks wrong (the server logs them). ``anchors`` are ``(witness, tree head)``
        pairs held outside the archive: the ledger must extend each one signed by its key.
        Raises :class:`KeyMismatchError` and :class:`LedgerIntegrityError` (the start-up check
        failed: nothing was appended or signed)."""
        with self._lock:
            if self._entries_fd >= 0:
                return []
            notes: list[str] = []
            self._tree, self._offsets = MerkleTree(), array("Q")
            self._entries_len = self._sth_len = 0
            self._latest_sth = None
            for d in (self.archive_dir, self.archive_dir / "ledger", self.archive_dir / RECORDINGS_DIR):
                if not d.is_dir():
                    d.mkdir(parents=True, exist_ok=True)
                    fsync_dir(d.parent)
            if not self.signing_key_path.exists() and (self.archive_dir / PUBLIC_KEY_FILE).exists():
                raise KeyMismatchError(
                    f"the signing key {self.signing_key_path} is missing but the archive "
                    f"{self.archive_dir} was signed with one ({PUBLIC_KEY_FILE} exists): restore the key "
                    "file or point archive.signing_key at it; a new key would not match the archive")
            key, created = self._load_or_create_key(notes)
            public = key.public_key()
            self._check_public_key_file(public, notes)
            self._key = key
            try:
                entries_torn = self._open_file(self._entries_path, "_entries_fd")
                try:
                    # One writer per ledger: a second server (or a CLI) appending too would break the chain.
                    fcntl.flock(self._entries_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LedgerError(
                        f"the ledger {self._entries_path} is open in another process (another server node or a "
                        "running server): give every node its own [archive] dir") from None
                sth_torn = self._open_file(self._sth_path, "_sth_fd")
                self._load_and_check(public, notes, anchors)
            except BaseException:
                self._close_files()
                self._key = None
                raise
        for file, dropped in ((ENTRIES_FILE, entries_torn), (STH_FILE, sth_torn)):
            if dropped is not None:
                notes.append(f"{file}: dropped a torn last line of {len(dropped)} bytes (crash during a write)")
                self.append("ledger_repaired", actor="system", outcome="recovered",
                            data={"file": file, "dropped_bytes": len(dropped),
                                  "dropped_sha256": hashlib.sha256(dropped).hexdigest()})
        if created:
            self.append("key_created", actor="system", data={"key_id": key_id(public), "algorithm": "Ed25519"})
        with self._lock:
            self._write_checkpoint(self._tree.size)
        return notes

    def close(self) -> None:
        """Sign a final tree head if entries are uncovered, note in the checkpoint that the ledger
        was closed cleanly (nothing may follow until the next open), then close the files.
        Idempotent."""
        if self._entries_fd < 0:
            return
        try:
            self.sign_tree_head()
            with self._lock:
                if self._latest_sth is not None and self._latest_sth["tree_size"] == self._tree.size:
                    self._write_checkpoint(self._tree.size, closed=True)
        finally:
            with self._lock:
                self._close_files()

    # -- writing --

    def append(self, type: str, *, actor: str, where: str | None = None, outcome: str = "ok",
               data: dict[str, Any]) -> dict[str, Any]:
        """Append one entry; returns it (with ``index``, ``prev`` and ``time``) once it is on disk.

        Raises ``ValueError`` for a malformed entry (nothing written) and :class:`LedgerWriteError`
        when the disk refuses the write (nothing left behind).
        """
        if not type or not isinstance(type, str):
            raise ValueError("an entry needs a type")
        if not actor or not isinstance(actor, str):
            raise ValueError("an entry needs an actor")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, got {outcome!r}")
        if not isinstance(data, dict):
            raise ValueError("data must be a JSON object")
        with self._lock:
            self._require_open()
            size = self._tree.size
            entry = {"index": size, "prev": self._tree.leaf(size - 1).hex() if size else "",
                     "time": iso_millis(self._clock()), "type": type, "actor": actor,
                     "where": self.where if where is None else where, "outcome": outcome, "data": data}
            line = canonical_json(entry)
            self._entries_len = self._write_line(self._entries_fd, self._entries_len, line, ENTRIES_FILE)
            self._offsets.append(self._entries_len - len(line) - 1)
            self._tree.append(leaf_hash(line))
            written: dict[str, Any] = json.loads(line)  # a copy: the caller's data is not shared
            return written

    def append_many(self, items: Sequence[tuple[str, str, str | None, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Append ``(type, actor, where, outcome, data)`` items in order with one write and one
        ``fsync``; returns the entries. All or nothing: a failed write leaves none of them."""
        for type, actor, _where, outcome, data in items:
            if not type or not actor or outcome not in OUTCOMES or not isinstance(data, dict):
                raise ValueError(f"malformed entry {type!r} by {actor!r}")
        with self._lock:
            self._require_open()
            size = self._tree.size
            prev = self._tree.leaf(size - 1).hex() if size else ""
            lines: list[bytes] = []
            for i, (type, actor, where, outcome, data) in enumerate(items):
                line = canonical_json({"index": size + i, "prev": prev, "time": iso_millis(self._clock()),
                                       "type": type, "actor": actor, "where": self.where if where is None else where,
                                       "outcome": outcome, "data": data})
                lines.append(line)
                prev = leaf_hash(line).hex()
            if not lines:
                return []
            start = self._entries_len
            self._entries_len = self._write_line(self._entries_fd, start, b"\n".join(lines), ENTRIES_FILE)
            offset = start
            for line in lines:
                self._offsets.append(offset)
                offset += len(line) + 1
                self._tree.append(leaf_hash(line))
            return [json.loads(line) for line in lines]

    def sign_tree_head(self) -> dict[str, Any] | None:
        """Sign the current tree and append the STH; ``None`` if no entry arrived since the last."""
        with self._lock:
            self._require_open()
            assert self._key is not None
            size = self._tree.size
            if size == 0 or (self._latest_sth is not None and self._latest_sth["tree_size"] == size):
                return None
            root = self._tree.root(size).hex()
            timestamp = iso_millis(self._clock())
            signature = self._key.sign(sth_message(size, root, timestamp))
            sth = {"tree_size": size, "root_hash": root, "timestamp": timestamp,
                   "key_id": key_id(self._key.public_key()), "signature": base64.b64encode(signature).decode()}
            line = canonical_json(sth)
            self._sth_len = self._write_line(self._sth_fd, self._sth_len, line, STH_FILE)
            self._sth_hash.update(line + b"\n")
            self._sth_lines += 1
            self._latest_sth = sth
            self._write_checkpoint(size)
        if self._on_signed is not None:
            self._on_signed(dict(sth))
        return dict(sth)

    def _write_checkpoint(self, entries: int, closed: bool = False) -> None:
        """Remember (outside the archive) that entries ``0..entries-1`` and all of ``sth.jsonl``
        were verified or written by this server (``closed``: and it stops now). Lock held."""
        if self.checkpoint_path is None:
            return
        write_checkpoint(self.checkpoint_path, Checkpoint(
            archive=str(self.archive_dir.resolve()), entries=entries,
            root_hash=self._tree.root(entries).hex() if entries else "", sth_lines=self._sth_lines,
            sth_bytes=self._sth_len, sth_sha256=self._sth_hash.hexdigest(), verified_at=iso_millis(self._clock()),
            latest_sth=dict(self._latest_sth) if self._latest_sth else None, closed=closed))

    # -- reading --

    @property
    def size(self) -> int:
        return self._tree.size

    def public_key_pem(self) -> bytes:
        """The public half of the signing key (SubjectPublicKeyInfo PEM); available once opened."""
        if self._key is None:
            raise LedgerError("the ledger has not been opened")
        return public_key_pem_of(self._key.public_key())

    def entries(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """Entries ``start .. stop-1`` (Python slice bounds clipped to the ledger), read from disk."""
        with self._lock:
            begin, end, _ = slice(start, stop).indices(self._tree.size)
            if begin >= end:
                return []
            first = self._offsets[begin]
            last = self._offsets[end] if end < len(self._offsets) else self._entries_len
        with open(self._entries_path, "rb") as f:
            f.seek(first)
            blob = f.read(last - first)
        return [json.loads(line) for line in blob.split(b"\n") if line]

    def raw_lines(self, start: int, stop: int) -> list[bytes]:
        """The exact bytes of entry lines ``start .. stop-1`` (without ``\n``), as on disk."""
        with self._lock:
            begin, end, _ = slice(start, stop).indices(self._tree.size)
            if begin >= end:
                return []
            first = self._offsets[begin]
            last = self._offsets[end] if end < len(self._offsets) else self._entries_len
        with open(self._entries_path, "rb") as f:
            f.seek(first)
            return f.read(last - first).split(b"\n")[:end - begin]

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[str]:
        """RFC 9162 inclusion proof (hex, leaf upwards) of entry ``index`` in the tree of
        ``tree_size`` entries (default: the latest signed tree head's size, else all)."""
        with self._lock:
            if tree_size is None:
                tree_size = self._latest_sth["tree_size"] if self._latest_sth else self._tree.size
            return [h.hex() for h in self._tree.inclusion_proof(index, tree_size)]

    def latest_sth(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._latest_sth) if self._latest_sth else None

    def consistency_proof(self, old_size: int, size: int) -> list[str]:
        """RFC 9162 consistency proof (hex) from the tree of ``old_size`` entries to that of ``size``."""
        with self._lock:
            return [h.hex() for h in self._tree.consistency_proof(old_size, size)]

    def extends(self, sth: Mapping[str, Any]) -> str | None:
        """None if the ledger extends the tree head ``sth`` (its entries ``0..tree_size-1`` have
        its root), else what is wrong. The signature is the caller's to check."""
        with self._lock:
            try:
                size, root = int(sth["tree_size"]), str(sth["root_hash"])
            except (KeyError, TypeError, ValueError):
                return "not a tree head"
            if size > self._tree.size:
                return (f"it covers {size} entries but the ledger holds {self._tree.size}: the ledger was rolled "
                        "back or cut short")
            if size < 1 or self._tree.root(size).hex() != root:
                return f"its root is not the Merkle root of entries 0..{size - 1}: history was rewritten"
            return None

    # -- internals --

    def _close_files(self) -> None:
        for name in ("_entries_fd", "_sth_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def _require_open(self) -> None:
        if self._entries_fd < 0:
            raise LedgerError("the ledger is not open")

    def _write_line(self, fd: int, length: int, line: bytes, name: str) -> int:
        """Append ``line + \\n`` durably at ``length``; on failure cut the file back and raise."""
        data = line + b"\n"
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, length)
                os.fsync(fd)
            except OSError as exc2:
                raise LedgerWriteError(f"{name}: write failed ({exc}) and cutting back failed ({exc2}); "
                                       "the next start repairs the torn line", exc.errno) from exc
            raise LedgerWriteError(f"{name}: write failed: {exc}", exc.errno) from exc
        return length + len(data)

    def _load_or_create_key(self, notes: list[str]) -> tuple[Ed25519PrivateKey, bool]:
        path = self.signing_key_path
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            pass
        else:
            try:
                key = serialization.load_pem_private_key(pem, password=None)
            except (ValueError, TypeError) as exc:
                raise LedgerError(f"signing key {path}: cannot be read: {exc}") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise LedgerError(f"signing key {path}: not an Ed25519 private key")
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                notes.append(f"signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
            return key, False
        parent = path.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, mode=0o700)
            os.chmod(parent, 0o700)
            fsync_dir(parent.parent)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = parent / f".{path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never overwrites a key another process created meanwhile
        except FileExistsError:
            os.unlink(tmp)
            return self._load_or_create_key(notes)
        os.unlink(tmp)
        fsync_dir(parent)
        notes.append(f"created the ledger signing key {path}")
        return key, True

    def _check_public_key_file(self, public: Ed25519PublicKey, notes: list[str]) -> None:
        path = self.archive_dir / PUBLIC_KEY_FILE
        mine = public_key_pem_of(public)
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(mine)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
            if self._entries_path.exists() and self._entries_path.stat().st_size:
                notes.append(f"{PUBLIC_KEY_FILE} was missing; wrote it again from the signing key")
            return
        try:
            theirs = load_public_key(existing)
        except ValueError as exc:
            raise KeyMismatchError(f"{path}: {exc}") from exc
        if key_id(theirs) != key_id(public):
            raise KeyMismatchError(
                f"{path} (key id {key_id(theirs)[:16]}…) is not the public key of the signing key "
                f"{self.signing_key_path} (key id {key_id(public)[:16]}…): the archive was signed with "
                "another key; restore that key file or point archive.signing_key at it")

    def _open_file(self, path: Path, attr: str) -> bytes | None:
        """Open ``path`` for appending; cut off a torn last line and return its bytes (None if none)."""
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        setattr(self, attr, fd)
        if not existed:
            os.fsync(fd)
            fsync_dir(path.parent)
            return None
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        tail_start = max(0, size - 65536)
        while True:
            chunk = os.pread(fd, size - tail_start, tail_start)
            cut = chunk.rfind(b"\n")
            if cut >= 0 or tail_start == 0:
                break
            tail_start = max(0, tail_start - (1 << 20))
        keep = tail_start + cut + 1  # cut == -1 and tail_start == 0: the whole file is one torn line
        if keep == size:
            return None
        dropped = os.pread(fd, size - keep, keep)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return dropped

    def _load_and_check(self, public: Ed25519PublicKey, notes: list[str],
                        anchors: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Rebuild the tree and check everything the checkpoint does not vouch for (lock held)."""
        checkpoint = None
        if self.checkpoint_path is not None:
            try:
                checkpoint = read_checkpoint(self.checkpoint_path)
            except CheckpointError as exc:
                raise LedgerIntegrityError(self.archive_dir, [f"{exc}: cannot tell what was verified before"]) from exc
            if checkpoint is not None and checkpoint.archive != str(self.archive_dir.resolve()):
                raise LedgerIntegrityError(self.archive_dir, [
                    f"the checkpoint {self.checkpoint_path} belongs to the archive {checkpoint.archive}"])
            if checkpoint is None and self._entries_path.stat().st_size:
                notes.append(f"no checkpoint at {self.checkpoint_path}: checked every entry and tree head from the "
                             "start; from now on a rewritten or rolled-back ledger is refused at start")
        loaded = load_ledger(self._entries_path, self._sth_path, public, key_id(public), checkpoint)
        for source, head in anchors:
            if head.get("key_id") != key_id(public) or not verify_sth_signature(head, public):
                notes.append(f"witness {source} holds a tree head not signed by this archive's key; not used")
                continue
            size, n = int(head["tree_size"]), loaded.tree.size
            if size > n:
                loaded.problem(f"witness {source} holds a tree head of {size} entries but the ledger holds {n}: "
                               "the ledger was rolled back or cut short")
            elif loaded.tree.root(size).hex() != head["root_hash"]:
                loaded.problem(f"witness {source} holds a tree head of {size} entries that this ledger does not "
                               "extend: history was rewritten")
        if loaded.problems:
            raise LedgerIntegrityError(self.archive_dir, loaded.problems)
        self._tree, self._offsets = loaded.tree, loaded.offsets
        self._entries_len, self._sth_len = loaded.entries_len, loaded.sth_len
        self._sth_lines, self._sth_hash = loaded.sth_lines, loaded.sth_sha256
        self._latest_sth = loaded.latest_sth
        self.checked = (loaded.entries_checked, loaded.sths_checked)
