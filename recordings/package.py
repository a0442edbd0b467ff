"""Building an export package for a party: one ZIP file the party can check offline.

A package holds the redacted, watermarked export, a manifest signed by the server (what the
export is, the recorded segments it was made from with their ledger entries and RFC 9162
inclusion proofs against a signed tree head, what was redacted and why, and the completeness
statement of the action), the signature, the server's public key and a README for the party.
The format is in ``docs/archive-format.md`` ("Export package") and :mod:`recordings.package_format`;
the ZIP is written in the canonical layout of :mod:`recordings.zip_layout`, which
:mod:`recordings.package_verify` checks byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from utctime import iso_millis

from .durable import fsync_dir
from .ledger import STH_KEYS, Ledger, canonical_json, key_id, load_public_key, public_key_pem_of
from .merkle import leaf_hash, verify_inclusion
from .package_format import (
    EXPORT_NAME,
    FIXED_MEMBERS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PUBLIC_KEY,
    READ_SIZE,
    README,
    SIGNATURE,
    SOURCE_FIELDS,
    completeness_problem,
    manifest_message,
    redactions_problem,
    request_problem,
)
from .zip_layout import ZipMember, dos_datetime, hash_file, layout


class PackageError(Exception):
    """A package cannot be built: bad arguments, a source not in the ledger, an unreadable key."""


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


def _export_name(path: Path) -> str:
    name = "export" + path.suffix.lower()
    return name if EXPORT_NAME.match(name) else "export.bin"


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
    found = ledger.raw_lines(index, index + 1)
    if not found:
        raise PackageError(f"ledger entry {index} does not exist")
    line = found[0]  # the exact bytes on disk: the leaf hash is over them
    entry = json.loads(line)
    if entry.get("type") != "segment_sealed":
        raise PackageError(f"ledger entry {index} is a {entry.get('type')!r} entry, not segment_sealed")
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
    ``request``: the keys :data:`~recordings.package_format.REQUEST_KEYS` (strings; ``from``/``to``
    the released range, UTC ISO, or ``None``), more keys are kept. ``redactions``: objects with
    ``method``, ``reason`` (``auto:face`` or ``manual:<reason>``), ``by``, plus region/time keys as
    the caller has them, or the export's ``RedactionRecord.to_dict()`` records (flattened by
    :func:`redaction_entries` with ``request["approved_by"]``). ``completeness``: ``{"action_id",
    "units": [{"unit_id", "recorded_intervals": [[start, end], ...], "gaps": [{"start", "end",
    "cause"}, ...]}]}`` plus any further keys. If the latest signed tree head does not cover every
    source, a new one is signed (``ledger.sign_tree_head()``). ``export_duration_s``, if given, is
    recorded as ``export.duration_s``; ``package_id`` defaults to a random UUID (hex).

    Blocking (reads the export twice: to hash it, then to copy it): run it in a worker thread.
    Returns the manifest (a dict) with two more keys, ``package_sha256`` and ``package_bytes``, of
    the package file. Raises :class:`PackageError` or ``ValueError`` for bad arguments; nothing is
    left behind on failure.
    """
    problem = request_problem(request)
    if problem is None:
        if isinstance(redactions, list):
            redactions = redaction_entries(redactions, request["approved_by"])
        problem = redactions_problem(redactions) or completeness_problem(completeness)
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
    export_sha, export_crc, export_bytes = hash_file(export_file)
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
    members = [ZipMember(n, len(small[n]), zlib.crc32(small[n])) for n in FIXED_MEMBERS]
    members.append(ZipMember(export_name, export_bytes, export_crc))
    headers, _, tail = layout(members, dos_datetime(created_ts))

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

            for m, (_, header) in zip(members, headers, strict=True):
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
