"""Export packages for parties: one ZIP file a party can check offline, and its verifier.

A package holds the redacted, watermarked export, a manifest signed by the server (what the
export is, the recorded segments it was made from with their ledger entries and RFC 9162
inclusion proofs against a signed tree head, what was redacted and why, and the completeness
statement of the action), the signature, the server's public key and a README for the party.
The format is in ``docs/archive-format.md`` ("Export package").

The ZIP is written in one canonical layout (members stored uncompressed, fixed header fields,
no extra data, Zip64 records only where a size or offset needs them), so the verifier can compare
every header byte with the layout it expects: one flipped byte anywhere in the file is a finding,
whether it lands in a member (CRC-32, hashes, signature) or in the ZIP structure around them.

:func:`verify_package` needs nothing but the file (and, better, the court's public key, obtained
separately): it imports only the standard library, ``cryptography`` and the archive's format
helpers, never the server.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import struct
import sys
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from utctime import iso_millis, parse_iso_millis

from .durable import fsync_dir
from .ledger import Ledger, canonical_json, key_id, load_public_key, public_key_pem_of, verify_sth_signature
from .merkle import leaf_hash, verify_inclusion
from .verify import Findings

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
STH_KEYS = ("tree_size", "root_hash", "timestamp", "key_id", "signature")
SOURCE_FIELDS = ("recording_id", "seq", "sha256", "bytes", "start", "end")  # copied from the entry's data
SMALL_MEMBER_LIMIT = {MANIFEST: 64 << 20, SIGNATURE: 1024, PUBLIC_KEY: 16 << 10, README: 1 << 20}
READ_SIZE = 1 << 20

_EXPORT_NAME = re.compile(r"^export\.[a-z0-9]{1,8}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at or above this needs Zip64 fields (tests lower it)

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class PackageError(Exception):
    """A package cannot be built: bad arguments, a source not in the ledger, an unreadable key."""


class PackageNotFoundError(Exception):
    """The path given to the verifier is not a readable file."""


# ---- keys ------------------------------------------------------------------------------------


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The ledger's Ed25519 private key (unencrypted PKCS#8 PEM, ``<data_dir>/keys/ledger-ed25519.pem``).

    The ledger creates this file on its first start; it has no public loader, so this reads the
    file the way :class:`~recordings.ledger.Ledger` does. Raises :class:`PackageError`.
    """
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise PackageError(f"signing key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PackageError(f"signing key {path}: cannot be read: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PackageError(f"signing key {path}: not an Ed25519 private key")
    return key


def manifest_message(manifest_bytes: bytes) -> bytes:
    """The bytes ``manifest.sig`` signs: a domain-separation line, then ``manifest.json`` exactly."""
    return f"{MANIFEST_CONTEXT}\n".encode() + manifest_bytes


# ---- the canonical ZIP layout ----------------------------------------------------------------
# Every member: stored (method 0), flags 0, no data descriptor, no comment, ASCII name, version
# made by 0x032D (Unix, 4.5), external attributes 0o100644 << 16, the same DOS time as member 0.
# Zip64: a member of >= 4 GiB - 1 bytes carries a local extra 0x0001 (size, size) and the central
# one (size, size[, offset]); an offset at or above that carries the central extra (offset); the
# end of the central directory gets the Zip64 record and locator when its offset needs them.


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    crc: int


def _dos_datetime(ts: float) -> tuple[int, int]:
    t = time.gmtime(ts)
    if t.tm_year < 1980:
        return 0, (1 << 5) | 1  # 1980-01-01 00:00:00
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


def _local_header(m: _Member, offset: int, dos: tuple[int, int]) -> bytes:
    name = m.name.encode("ascii")
    big = m.size >= _ZIP64_LIMIT
    extra = struct.pack("<HHQQ", 1, 16, m.size, m.size) if big else b""
    size32 = 0xFFFFFFFF if big else m.size
    version = 45 if big or offset >= _ZIP64_LIMIT else 10
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, 0, dos[0], dos[1], m.crc, size32, size32,
                       len(name), len(extra)) + name + extra


def _central_header(m: _Member, offset: int, dos: tuple[int, int]) -> bytes:
    name = m.name.encode("ascii")
    big, far = m.size >= _ZIP64_LIMIT, offset >= _ZIP64_LIMIT
    fields = ([m.size, m.size] if big else []) + ([offset] if far else [])
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    size32 = 0xFFFFFFFF if big else m.size
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x032D, 45 if fields else 10, 0, 0, dos[0], dos[1],
                       m.crc, size32, size32, len(name), len(extra), 0, 0, 0, 0o100644 << 16,
                       0xFFFFFFFF if far else offset) + name + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    out = b""
    if cd_offset >= _ZIP64_LIMIT or cd_size >= _ZIP64_LIMIT:
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x032D, 45, 0, 0, count, count, cd_size, cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, cd_offset + cd_size, 1)
    return out + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, min(cd_size, 0xFFFFFFFF),
                             min(cd_offset, 0xFFFFFFFF), 0)


def _layout(members: list[_Member], dos: tuple[int, int]) -> tuple[list[tuple[int, bytes]], int, bytes]:
    """``(offset, local header)`` per member, the offset of the central directory and the bytes
    from there to the end of the file."""
    headers, offset = [], 0
    for m in members:
        header = _local_header(m, offset, dos)
        headers.append((offset, header))
        offset += len(header) + m.size
    central = b"".join(_central_header(m, off, dos) for m, (off, _) in zip(members, headers))
    return headers, offset, central + _end_records(len(members), offset, len(central))


# ---- the manifest's parts, checked the same way by the builder and the verifier ----------------


def _request_problem(request: Any) -> str | None:
    if not isinstance(request, dict):
        return "request is not an object"
    missing = [k for k in REQUEST_KEYS if k not in request]
    if missing:
        return f"request lacks {missing}"
    for k in ("id", "case_number", "action_id", "recipient", "approved_by", "reason"):
        if not isinstance(request[k], str) or not request[k]:
            return f"request.{k} must be a non-empty string"
    return None


def _redactions_problem(redactions: Any) -> str | None:
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


def redaction_entries(redactions: list[dict[str, Any]], approved_by: str) -> list[dict[str, Any]]:
    """The manifest's flat redaction list: entries already in that form are kept; a redaction
    record of the export (``RedactionRecord.to_dict()``: ``start_s``, ``end_s``, ``blurred`` and
    ``kept`` boxes with their reasons) becomes one entry per box: blurred boxes ``method: "blur"``
    by ``system`` (``auto:*``) or ``approved_by`` (``manual:*``); kept boxes (detections the
    approver's keep region left visible) ``method: "none"``, reason ``manual:keep``, by
    ``approved_by``, with ``detected`` naming the detector."""
    out: list[dict[str, Any]] = []
    for r in redactions:
        if not (isinstance(r, dict) and "blurred" in r and "method" not in r):
            out.append(r)
            continue
        times = {"start_s": r.get("start_s"), "end_s": r.get("end_s")}
        for box in r.get("blurred") or []:
            reason = str(box.get("reason", ""))
            out.append({**times, "region": {k: box.get(k) for k in ("x", "y", "w", "h")}, "method": "blur",
                        "reason": reason, "by": "system" if reason.startswith("auto:") else approved_by})
        for box in r.get("kept") or []:
            out.append({**times, "region": {k: box.get(k) for k in ("x", "y", "w", "h")}, "method": "none",
                        "reason": "manual:keep", "by": approved_by, "detected": box.get("reason")})
    return out


def _completeness_problem(c: Any) -> str | None:
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


def _sth_problem(sth: Any) -> str | None:
    if not isinstance(sth, dict) or set(sth) != set(STH_KEYS):
        return f"sth must have exactly the keys {list(STH_KEYS)}"
    size = sth["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return f"sth.tree_size {size!r} is not a positive integer"
    if not all(isinstance(sth[k], str) and _HEX64.match(sth[k]) for k in ("root_hash", "key_id")):
        return "sth.root_hash and sth.key_id must be hex SHA-256"
    if not isinstance(sth["timestamp"], str) or not isinstance(sth["signature"], str):
        return "sth.timestamp and sth.signature must be strings"
    return None


# ---- building --------------------------------------------------------------------------------


def _hash_file(path: Path) -> tuple[str, int, int]:
    """(sha256 hex, CRC-32, bytes) of a file."""
    h, crc, n = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            h.update(chunk)
            crc = zlib.crc32(chunk, crc)
            n += len(chunk)
    return h.hexdigest(), crc, n


def _export_name(path: Path) -> str:
    name = "export" + path.suffix.lower()
    return name if _EXPORT_NAME.match(name) else "export.bin"


def _readme(package_id: str, export_name: str, kid: str) -> bytes:
    return f"""\
执行录像导出包 / Enforcement footage export package
====================================================

包编号 Package id: {package_id}
服务器公钥编号 Server key id: {kid}

【中文】
本文件是法院执行指挥系统为您导出的执行录像。包内文件：
  {export_name}    经过打码（遮挡旁观者面部）并加盖水印的录像，水印上有申请编号、接收人和时间，
                  请勿转发。
  manifest.json    清单：申请信息、录像文件的 SHA-256 哈希值、原始录像分段在法院防篡改账本中的
                  记录与包含证明、经签名的账本树根、打码的位置和原因、本次执行的完整性说明
                  （参与的执法设备、各自的录制时段、每一段中断及其原因）。
  manifest.sig     服务器对清单的 Ed25519 数字签名。
  public_key.pem   服务器的公钥。
如何核验（无需联网，无需法院服务器）：
  dispatch-audit verify-export 本文件.zip --public-key 法院公布的公钥.pem
结果为 OK 表示：录像就是法院生成的那一份，未被改动；它取自的每一段原始录像都记录在法院的账本
中；清单中的打码记录和完整性说明由法院服务器签名。若未使用 --public-key，请核对输出的公钥编号与
法院公布的编号是否一致。任何一个字节被改动，核验都会失败；如失败，请联系法院。
也可以按公开的格式说明（docs/archive-format.md 的 “Export package” 一节）自行核验。

[English]
This file is footage of an enforcement action, exported for you by the court's dispatch system.
  {export_name}    the recording, with the faces of bystanders blurred and a watermark showing
                  the request id, the recipient and the time. Do not pass it on.
  manifest.json    the manifest: the request, the SHA-256 hash of the recording, the ledger
                  entries of the original recorded segments with proofs that they are in the
                  court's tamper-evident ledger, the signed ledger tree head, what was blurred
                  and why, and the completeness statement of the action (the units, when each
                  recorded, and every gap with its cause).
  manifest.sig     the server's Ed25519 signature over manifest.json.
  public_key.pem   the server's public key.
To verify (offline, no court server needed):
  dispatch-audit verify-export THIS-FILE.zip --public-key COURT-PUBLIC-KEY.pem
OK means: the recording is the one the court produced, unchanged; every original segment it was
made from is in the court's ledger; the redaction list and the completeness statement are signed
by the court's server. Without --public-key, compare the key id printed with the one the court
publishes. Changing any single byte of this file makes the check fail; if it fails, contact the
court. You can also write your own check from the published format ("Export package" in
docs/archive-format.md).
""".encode()




def _source(ledger: Ledger, index: int, sth: Mapping[str, Any]) -> dict[str, Any]:
    found = ledger.entries(index, index + 1)
    if not found:
        raise PackageError(f"ledger entry {index} does not exist")
    entry = found[0]
    if entry.get("type") != "segment_sealed":
        raise PackageError(f"ledger entry {index} is a {entry.get('type')!r} entry, not segment_sealed")
    line = canonical_json(entry)  # the ledger writes canonical lines, so this is the line on disk
    proof = ledger.inclusion_proof(index, sth["tree_size"])
    if not verify_inclusion(leaf_hash(line), index, sth["tree_size"], [bytes.fromhex(p) for p in proof],
                            bytes.fromhex(sth["root_hash"])):
        raise PackageError(f"ledger entry {index} is not provably in the signed tree of {sth['tree_size']} "
                           "entries: the ledger file differs from what was signed (run dispatch-audit verify)")
    data = entry["data"]
    return {**{k: data.get(k) for k in SOURCE_FIELDS}, "index": index, "entry": line.decode(),
            "inclusion_proof": proof}


def build_package(out_path: Path, *, export_file: Path, ledger: Ledger, source_indexes: list[int],
                  request: dict[str, Any], redactions: list[dict[str, Any]], completeness: dict[str, Any],
                  signing_key: Ed25519PrivateKey, clock: Callable[[], float] = time.time,
                  export_duration_s: float | None = None, package_id: str | None = None) -> dict[str, Any]:
    """Write the package for ``export_file`` to ``out_path`` (temp file, fsync, rename, fsync dir).

    ``source_indexes``: ledger indexes of the ``segment_sealed`` entries the export was made from.
    ``request``: the keys :data:`REQUEST_KEYS` (strings; ``from``/``to`` the released range,
    UTC ISO, or ``None``), more keys are kept. ``redactions``: objects with ``method``, ``reason``
    (``auto:face`` or ``manual:<reason>``), ``by``, plus region/time keys as the caller has them,
    or the export's ``RedactionRecord.to_dict()`` records (flattened by :func:`redaction_entries`
    with ``request["approved_by"]``). ``completeness``: ``{"action_id", "units": [{"unit_id",
    "recorded_intervals": [[start, end], ...], "gaps": [{"start", "end", "cause"}, ...]}]}`` plus
    any further keys. If the latest signed tree
    head does not cover every source, a new one is signed (``ledger.sign_tree_head()``).
    ``export_duration_s``, if given, is recorded as ``export.duration_s``; ``package_id``
    defaults to a random UUID (hex).

    Blocking (reads the export twice: to hash it, then to copy it): run it in a worker thread.
    Returns the manifest (a dict) with two more keys, ``package_sha256`` and ``package_bytes``, of
    the package file. Raises
    :class:`PackageError` or ``ValueError`` for bad arguments; nothing is left behind on failure.
    """
    problem = _request_problem(request)
    if problem is None:
        redactions = redaction_entries(redactions, request["approved_by"]) if isinstance(redactions, list) else redactions
        problem = _redactions_problem(redactions) or _completeness_problem(completeness)
    if problem:
        raise ValueError(problem)
    if not source_indexes or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in source_indexes):
        raise ValueError("source_indexes must be non-negative ledger indexes, at least one")
    indexes = sorted(set(source_indexes))
    if len(indexes) != len(source_indexes):
        raise ValueError("source_indexes lists an index twice")
    public_pem = public_key_pem_of(signing_key.public_key())
    kid = key_id(signing_key.public_key())
    if key_id(load_public_key(ledger.public_key_pem())) != kid:
        raise PackageError("the signing key is not the ledger's key: the tree head would not verify against it")
    sth = ledger.latest_sth()
    if sth is None or sth["tree_size"] <= indexes[-1]:
        ledger.sign_tree_head()
        sth = ledger.latest_sth()
        if sth is None or sth["tree_size"] <= indexes[-1]:
            raise PackageError(f"ledger entry {indexes[-1]} does not exist (the ledger has {ledger.size} entries)")
    sources = [_source(ledger, i, sth) for i in indexes]
    export_file = Path(export_file)
    export_sha, export_crc, export_bytes = _hash_file(export_file)
    export_name = _export_name(export_file)
    package_id = package_id or uuid.uuid4().hex
    created_ts = clock()
    readme = _readme(package_id, export_name, kid)
    export_meta: dict[str, Any] = {"name": export_name, "sha256": export_sha, "bytes": export_bytes}
    if export_duration_s is not None:
        export_meta["duration_s"] = round(float(export_duration_s), 3)
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "package_id": package_id, "created": iso_millis(created_ts),
        "server_key_id": kid, "request": request, "export": export_meta,
        "readme": {"name": README, "sha256": hashlib.sha256(readme).hexdigest(), "bytes": len(readme)},
        "sth": {k: sth[k] for k in STH_KEYS}, "sources": sources, "redactions": redactions,
        "completeness": completeness,
    }
    manifest_bytes = canonical_json(manifest)
    signature = base64.b64encode(signing_key.sign(manifest_message(manifest_bytes))) + b"\n"
    small = {MANIFEST: manifest_bytes, SIGNATURE: signature, PUBLIC_KEY: public_pem, README: readme}
    members = [_Member(n, len(small[n]), zlib.crc32(small[n])) for n in FIXED_MEMBERS]
    members.append(_Member(export_name, export_bytes, export_crc))
    headers, _, tail = _layout(members, _dos_datetime(created_ts))

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    total = 0
    try:
        with open(tmp, "wb") as f:
            def put(data: bytes) -> None:
                nonlocal total
                f.write(data)
                h.update(data)
                total += len(data)

            for m, (_, header) in zip(members, headers):
                put(header)
                if m.name in small:
                    put(small[m.name])
                    continue
                crc, n = 0, 0
                with open(export_file, "rb") as src:
                    while chunk := src.read(READ_SIZE):
                        crc, n = zlib.crc32(chunk, crc), n + len(chunk)
                        put(chunk)
                if (crc, n) != (export_crc, export_bytes):
                    raise PackageError(f"{export_file} changed while it was being packaged")
            put(tail)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out_path.parent)
    return {**manifest, "package_sha256": h.hexdigest(), "package_bytes": total}


# ---- verifying -------------------------------------------------------------------------------


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
        at = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        self.r.fail("bad_package", "package", f"byte {self.pos - len(got) + at} ({region}) differs from the "
                    "canonical layout: the ZIP structure was altered")
        return True

    def member(self, m: _Member, keep: bool) -> tuple[bytes | None, str] | None:
        """The member's bytes (if ``keep``) and sha256; ``None`` if the file ends first."""
        h, crc, left, parts = hashlib.sha256(), 0, m.size, []
        while left:
            chunk = self.read(min(left, READ_SIZE))
            if not chunk:
                self.r.fail("bad_package", m.name, f"the file ends {left} bytes before the end of this member: truncated")
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
    exports = [n for n in names if _EXPORT_NAME.match(n)]
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
    members = [_Member(i.filename, i.file_size, i.CRC) for i in infos]
    d = infos[0].date_time
    dos = ((d[3] << 11) | (d[4] << 5) | (d[5] // 2), ((d[0] - 1980) << 9) | (d[1] << 5) | d[2])
    headers, _, tail = _layout(members, dos)
    small: dict[str, bytes] = {}
    export: tuple[str, int] | None = None
    with open(path, "rb") as f:
        reader = _Reader(f, r)
        for m, (_, header) in zip(members, headers):
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


def _read_with_zipfile(path: Path, r: PackageReport, export_name: str) -> tuple[dict[str, bytes], str, tuple[str, int]] | None:
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
    r.package_sha256, _, r.package_bytes = _hash_file(path)
    return small, export_name, (h.hexdigest(), size)


def _pinned_key(pem: bytes) -> Ed25519PublicKey:
    """The caller's pinned key; ``ValueError`` (a usage error) unless it is an Ed25519 public key."""
    try:
        return load_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc


def _check_key(r: PackageReport, embedded_pem: bytes, pinned_pem: bytes | None) -> Ed25519PublicKey | None:
    embedded = None
    try:
        embedded = load_public_key(embedded_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:  # the ledger helper lets the latter through
        r.fail("bad_key", PUBLIC_KEY, f"not an Ed25519 public key: {exc}")
    if pinned_pem is not None:
        key = _pinned_key(pinned_pem)
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
        canonical = canonical_json(manifest) == raw
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
    for problem in [_request_problem(manifest["request"]), _redactions_problem(manifest["redactions"]),
                    _completeness_problem(manifest["completeness"])]:
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
    if not _completeness_problem(manifest["completeness"]):
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
    problem = _sth_problem(sth)
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
        if not (isinstance(data.get("sha256"), str) and _HEX64.match(data["sha256"])):
            r.fail("bad_source", item, "the entry records no segment sha256")
        for k in SOURCE_FIELDS:
            if s.get(k) != data.get(k):
                r.fail("bad_source", item, f"{k} {s.get(k)!r} is not the entry's {data.get(k)!r}")
        proof_hex = s["inclusion_proof"]
        if not all(isinstance(p, str) and _HEX64.match(p) for p in proof_hex):
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
        _pinned_key(public_key_pem)
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


# ---- dispatch-audit verify-export ------------------------------------------------------------

VERIFY_EXPORT_HELP = "check an export package offline: signature, export hash, ledger inclusion proofs"


def add_verify_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", metavar="PACKAGE", help="the export package (.zip) to check")
    p.add_argument("--public-key", metavar="FILE",
                   help="the court's PEM public key, obtained separately; the package must be signed with it")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _summary(r: PackageReport) -> str:
    verdict = "OK" if r.ok else f"FAILED ({len(r.failures)} failures)"
    req = r.request
    return (f"{verdict}: package {r.package_id or '?'} (sha256 {r.package_sha256[:16]}…), request "
            f"{req.get('id', '?')} case {req.get('case_number', '?')} action {req.get('action_id', '?')} for "
            f"{req.get('recipient', '?')}; {r.export_name or 'export'} {r.export_bytes:,} bytes sha256 "
            f"{r.export_sha256[:16]}…; {r.sources_proven}/{r.sources} source segments proven in the tree of "
            f"{r.tree_size} entries signed {r.sth_timestamp or '?'}; {r.redactions} redactions; {r.units} units, "
            f"{r.gaps} gaps; key {r.key_id[:16] or '?'}{' (pinned)' if r.key_pinned else ''}")


def _usage_error(message: str) -> int:
    print(f"dispatch-audit: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_verify_export(args: argparse.Namespace) -> int:
    """Exit status: 0 the package verifies, 1 it has failures, 2 usage errors (no such file, bad key)."""
    pinned = None
    if args.public_key:
        try:
            pinned = Path(args.public_key).read_bytes()
            _pinned_key(pinned)
        except (OSError, ValueError) as exc:
            return _usage_error(f"--public-key {args.public_key}: {exc}")
    try:
        report = verify_package(Path(args.package), pinned)
    except PackageNotFoundError as exc:
        return _usage_error(str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for f in report.failures:
            print(f"FAIL {f}")
        for f in report.warnings:
            print(f"WARN {f}")
        print(_summary(report))
    return EXIT_OK if report.ok else EXIT_FAILURES
