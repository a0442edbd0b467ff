"""Verifying an export package offline: the party's side of :mod:`recordings.package`.

:func:`verify_package` needs nothing but the file (and, better, the court's public key, obtained
separately): it imports only the standard library, ``cryptography`` and the archive's format
helpers, never the server. It compares every ZIP header byte with the canonical layout
(:mod:`recordings.zip_layout`), so one flipped byte anywhere in the file is a finding, whether
it lands in a member (CRC-32, hashes, signature) or in the ZIP structure around them; a package
re-zipped by some other tool is still checked, member by member. What each finding means is in
``docs/archive-format.md`` ("Verifying a package").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from utctime import parse_iso_millis

from .canonical import is_canonical
from .findings import Findings
from .ledger import key_id, load_public_key, verify_sth_signature
from .merkle import leaf_hash, verify_inclusion
from .package_format import (
    EXPORT_NAME,
    FIXED_MEMBERS,
    FORMAT,
    FORMAT_VERSION,
    HEX64,
    MANIFEST,
    MANIFEST_KEYS,
    PUBLIC_KEY,
    READ_SIZE,
    README,
    SIGNATURE,
    SMALL_MEMBER_LIMIT,
    SOURCE_FIELDS,
    completeness_problem,
    manifest_message,
    redactions_problem,
    request_problem,
    sth_problem,
)
from .zip_layout import ZipMember, dos_from_date_time, hash_file, layout


class PackageNotFoundError(Exception):
    """The path given to the verifier is not a readable file."""


@dataclass
class PackageReport(Findings):
    path: str = ""
    package_sha256: str = ""
    package_bytes: int = 0
    package_id: str = ""
    created: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    export_name: str = ""
    export_sha256: str = ""
    export_bytes: int = 0
    sources: int = 0
    sources_proven: int = 0
    redactions: int = 0
    units: int = 0
    gaps: int = 0
    tree_size: int = 0
    root_hash: str = ""
    sth_timestamp: str = ""
    key_id: str = ""
    key_pinned: bool = False
    seconds: float = 0.0



class _Reader:
    """Reads the package front to back once: compares every ZIP header with the canonical
    layout, keeps the small members, hashes the export and the whole file."""

    def __init__(self, f: BinaryIO, report: PackageReport) -> None:
        self.f = f
        self.r = report
        self.whole = hashlib.sha256()
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.whole.update(data)
        self.pos += len(data)
        return data

    def expect(self, want: bytes, region: str) -> bool:
        got = self.read(len(want))
        if got == want:
            return True
        if len(got) < len(want):
            self.r.fail("bad_package", "package", f"the file ends at byte {self.pos} inside {region}: truncated")
            return False
        at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        self.r.fail("bad_package", "package", f"byte {self.pos - len(got) + at} ({region}) differs from the "
                    "canonical layout: the ZIP structure was altered")
        return True

    def member(self, m: ZipMember, keep: bool) -> tuple[bytes | None, str] | None:
        """The member's bytes (if ``keep``) and sha256; ``None`` if the file ends first."""
        h, crc, left, parts = hashlib.sha256(), 0, m.size, []
        while left:
            chunk = self.read(min(left, READ_SIZE))
            if not chunk:
                self.r.fail("bad_package", m.name,
                            f"the file ends {left} bytes before the end of this member: truncated")
                return None
            h.update(chunk)
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
            if keep:
                parts.append(chunk)
        if crc != m.crc:
            self.r.fail("bad_package", m.name, f"CRC-32 {crc:08x} differs from the {m.crc:08x} the ZIP directory "
                        "records: the member's bytes were altered")
        return (b"".join(parts) if keep else None), h.hexdigest()


def _read_package(path: Path, r: PackageReport) -> tuple[dict[str, bytes], str, tuple[str, int] | None] | None:
    """Small members by name, the export's member name and (sha256, bytes); ``None`` when the
    file is not a readable package at all (the findings say why)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as exc:  # a hostile file: every way zipfile gives up on it is a finding
        r.fail("bad_package", "package", f"not a readable ZIP file ({type(exc).__name__}: {exc})")
        return None
    names = [i.filename for i in infos]
    exports = [n for n in names if EXPORT_NAME.match(n)]
    expected = list(FIXED_MEMBERS) + exports[:1]
    for n in FIXED_MEMBERS:
        if n not in names:
            r.fail("missing", n, "the package has no such member")
    if not exports:
        r.fail("missing", "export.*", "the package has no export member")
    for n in names:
        if n not in expected or names.count(n) > 1:
            r.fail("extra", n, "unexpected member" if n not in expected else "the member appears more than once")
    if r.failures:
        return None
    for n, limit in SMALL_MEMBER_LIMIT.items():
        info = infos[names.index(n)]
        if info.file_size > limit:
            r.fail("bad_package", n, f"{info.file_size} bytes is more than this member may have ({limit})")
    if r.failures:
        return None
    canonical = names == expected
    if not canonical:
        r.fail("bad_package", "package", f"members are in the order {names}, not {expected}")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED or i.flag_bits or i.compress_size != i.file_size:
            r.fail("bad_package", i.filename, "not stored plainly (compression, flags or sizes differ from the format)")
            canonical = False
    if not canonical:  # re-zipped by some tool: still check what is inside, the way any unzip reads it
        return _read_with_zipfile(path, r, exports[0])
    members = [ZipMember(i.filename, i.file_size, i.CRC) for i in infos]
    headers, _, tail = layout(members, dos_from_date_time(infos[0].date_time))
    small: dict[str, bytes] = {}
    export: tuple[str, int] | None = None
    with open(path, "rb") as f:
        reader = _Reader(f, r)
        for m, (_, header) in zip(members, headers, strict=True):
            if not reader.expect(header, f"local header of {m.name}"):
                return None
            got = reader.member(m, keep=m.name in SMALL_MEMBER_LIMIT)
            if got is None:
                return None
            if got[0] is not None:
                small[m.name] = got[0]
            else:
                export = (got[1], m.size)
        if reader.expect(tail, "central directory and end records"):
            extra = 0
            while chunk := reader.read(READ_SIZE):
                extra += len(chunk)
            if extra:
                r.fail("bad_package", "package", f"{extra} bytes follow the end of the ZIP")
        r.package_sha256, r.package_bytes = reader.whole.hexdigest(), reader.pos
    return small, members[-1].name, export


def _read_with_zipfile(path: Path, r: PackageReport,
                       export_name: str) -> tuple[dict[str, bytes], str, tuple[str, int]] | None:
    small: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for n in SMALL_MEMBER_LIMIT:  # sizes checked against the limits already
                small[n] = zf.read(n)
            h, size = hashlib.sha256(), 0
            with zf.open(export_name) as m:
                while chunk := m.read(READ_SIZE):
                    h.update(chunk)
                    size += len(chunk)
    except Exception as exc:  # a hostile file, as in _read_package
        r.fail("bad_package", "package", f"a member cannot be read ({type(exc).__name__}: {exc})")
        return None
    r.package_sha256, _, r.package_bytes = hash_file(path)
    return small, export_name, (h.hexdigest(), size)


def load_pinned_key(pem: bytes) -> Ed25519PublicKey:
    """The caller's pinned key; ``ValueError`` (a usage error) unless it is an Ed25519 public key."""
    try:
        return load_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc


def _check_key(r: PackageReport, embedded_pem: bytes, pinned_pem: bytes | None) -> Ed25519PublicKey | None:
    embedded = None
    key: Ed25519PublicKey | None
    try:
        embedded = load_public_key(embedded_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:  # the ledger helper lets the latter through
        r.fail("bad_key", PUBLIC_KEY, f"not an Ed25519 public key: {exc}")
    if pinned_pem is not None:
        key = load_pinned_key(pinned_pem)
        r.key_pinned = True
        if embedded is not None and key_id(embedded) != key_id(key):
            r.fail("bad_key", PUBLIC_KEY, f"key id {key_id(embedded)[:16]}… is not the pinned key {key_id(key)[:16]}…")
    else:
        key = embedded
        r.warn("unpinned_key", PUBLIC_KEY, "the key was taken from the package itself; compare the key id with the "
               "one the court publishes, or pass the court's key (--public-key)")
    if key is not None:
        r.key_id = key_id(key)
    return key


def _check_manifest(r: PackageReport, raw: bytes, sig: bytes, key: Ed25519PublicKey | None) -> dict[str, Any] | None:
    if key is not None:
        try:
            signature = base64.b64decode(sig.rstrip(b"\n"), validate=True)
            if len(signature) != 64 or base64.b64encode(signature) + b"\n" != sig:
                raise ValueError("not the base64 of 64 bytes and a newline")
            key.verify(signature, manifest_message(raw))
        except (ValueError, binascii.Error, InvalidSignature) as exc:
            detail = str(exc) or "the Ed25519 signature does not verify"
            r.fail("bad_signature", SIGNATURE, f"{detail}: manifest.json is not what the server signed")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        r.fail("bad_manifest", MANIFEST, f"not JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or set(manifest) != MANIFEST_KEYS:
        r.fail("bad_manifest", MANIFEST, f"must be an object with exactly the keys {sorted(MANIFEST_KEYS)}")
        return None
    try:
        canonical = is_canonical(manifest, raw)
    except ValueError:
        canonical = False
    problems = [] if canonical else ["not in canonical form (sorted keys, no spaces, UTF-8)"]
    if manifest["format"] != FORMAT or manifest["version"] != FORMAT_VERSION:
        problems.append(f"format {manifest['format']!r} version {manifest['version']!r} is not "
                        f"{FORMAT!r} version {FORMAT_VERSION}")
    try:
        parse_iso_millis(manifest["created"])
    except ValueError as exc:
        problems.append(f"created: {exc}")
    for problem in [request_problem(manifest["request"]), redactions_problem(manifest["redactions"]),
                    completeness_problem(manifest["completeness"])]:
        if problem:
            problems.append(problem)
    if key is not None and manifest["server_key_id"] != key_id(key):
        r.fail("bad_key", MANIFEST, f"server_key_id {str(manifest['server_key_id'])[:16]}… is not the key "
               f"{key_id(key)[:16]}…")
    for p in problems:
        r.fail("bad_manifest", MANIFEST, p)
    r.package_id, r.created = str(manifest["package_id"]), str(manifest["created"])
    if isinstance(manifest["request"], dict):
        r.request = manifest["request"]
    if isinstance(manifest["redactions"], list):
        r.redactions = len(manifest["redactions"])
    if not completeness_problem(manifest["completeness"]):
        units = manifest["completeness"]["units"]
        r.units, r.gaps = len(units), sum(len(u["gaps"]) for u in units)
    return manifest


def _check_file_entry(r: PackageReport, manifest: dict[str, Any], key: str, name: str, sha: str, size: int) -> None:
    meta = manifest[key]
    if not isinstance(meta, dict) or not all(k in meta for k in ("name", "sha256", "bytes")):
        r.fail("bad_manifest", MANIFEST, f"{key} needs name, sha256 and bytes")
        return
    if meta["name"] != name:
        r.fail("bad_manifest", MANIFEST, f"{key}.name {meta['name']!r} is not the member {name!r}")
    if meta["sha256"] != sha:
        r.fail("altered", name, f"SHA-256 {sha} is not the {meta['sha256']!r} the manifest records")
    if meta["bytes"] != size:
        r.fail("altered", name, f"{size} bytes, the manifest records {meta['bytes']!r}")


def _check_sources(r: PackageReport, manifest: dict[str, Any], key: Ed25519PublicKey | None) -> None:
    sth = manifest["sth"]
    problem = sth_problem(sth)
    if problem:
        r.fail("bad_sth", MANIFEST, problem)
        return
    r.tree_size, r.root_hash, r.sth_timestamp = sth["tree_size"], sth["root_hash"], sth["timestamp"]
    if key is not None:
        if sth["key_id"] != key_id(key):
            r.fail("bad_sth", "sth", f"signed by key id {sth['key_id'][:16]}…, not {key_id(key)[:16]}…")
        elif not verify_sth_signature(sth, key):
            r.fail("bad_sth", "sth", "the Ed25519 signature of the tree head does not verify")
    sources = manifest["sources"]
    if not isinstance(sources, list) or not sources:
        r.fail("bad_manifest", MANIFEST, "sources must list at least one recorded segment")
        return
    r.sources = len(sources)
    root, seen = bytes.fromhex(sth["root_hash"]), set()
    for n, s in enumerate(sources):
        item = f"source {s.get('index', n) if isinstance(s, dict) else n}"
        if not (isinstance(s, dict) and isinstance(s.get("index"), int) and not isinstance(s["index"], bool)
                and isinstance(s.get("entry"), str) and isinstance(s.get("inclusion_proof"), list)):
            r.fail("bad_source", item, "needs index, entry (string) and inclusion_proof (list)")
            continue
        if s["index"] in seen:
            r.fail("bad_source", item, "listed twice")
        seen.add(s["index"])
        line = s["entry"].encode("utf-8", "surrogatepass")
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
                raise ValueError("not a ledger entry object")
        except (ValueError, RecursionError) as exc:
            r.fail("bad_source", item, f"the entry is not a ledger entry ({exc})")
            continue
        data = entry["data"]
        if entry.get("index") != s["index"] or entry.get("type") != "segment_sealed":
            r.fail("bad_source", item, f"the entry is entry {entry.get('index')!r} of type {entry.get('type')!r}, "
                   f"not segment_sealed entry {s['index']}")
        if not (isinstance(data.get("sha256"), str) and HEX64.match(data["sha256"])):
            r.fail("bad_source", item, "the entry records no segment sha256")
        for k in SOURCE_FIELDS:
            if s.get(k) != data.get(k):
                r.fail("bad_source", item, f"{k} {s.get(k)!r} is not the entry's {data.get(k)!r}")
        proof_hex = s["inclusion_proof"]
        if not all(isinstance(p, str) and HEX64.match(p) for p in proof_hex):
            r.fail("not_included", item, "the inclusion proof is not a list of hex SHA-256")
            continue
        if verify_inclusion(leaf_hash(line), s["index"], sth["tree_size"], [bytes.fromhex(p) for p in proof_hex], root):
            r.sources_proven += 1
        else:
            r.fail("not_included", item, f"the entry and its inclusion proof do not reproduce the root of the "
                   f"signed tree of {sth['tree_size']} entries")


def verify_package(path: Path, public_key_pem: bytes | None = None) -> PackageReport:
    """Check the package at ``path``; ``public_key_pem`` pins the court key that must have signed it.

    Raises :class:`PackageNotFoundError` if ``path`` is not a readable file and ``ValueError`` if
    the pinned key is not an Ed25519 public key; everything wrong *inside* the file is a finding.
    """
    path = Path(path)
    if not path.is_file():
        raise PackageNotFoundError(f"{path}: not a file")
    if public_key_pem is not None:
        load_pinned_key(public_key_pem)
    t0 = time.monotonic()
    r = PackageReport(path=str(path))
    try:
        got = _read_package(path, r)
    except OSError as exc:
        raise PackageNotFoundError(f"{path}: {exc}") from exc
    if got is not None:
        small, export_name, export = got
        key = _check_key(r, small[PUBLIC_KEY], public_key_pem)
        manifest = _check_manifest(r, small[MANIFEST], small[SIGNATURE], key)
        if manifest is not None:
            r.export_name = export_name
            if export is not None:
                r.export_sha256, r.export_bytes = export
                _check_file_entry(r, manifest, "export", export_name, *export)
            _check_file_entry(r, manifest, "readme", README, hashlib.sha256(small[README]).hexdigest(),
                              len(small[README]))
            _check_sources(r, manifest, key)
    r.seconds = round(time.monotonic() - t0, 3)
    return r
