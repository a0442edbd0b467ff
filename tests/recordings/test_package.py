"""Export packages: a real ledger and archive, one package, and a verifier that catches every change."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from recordings import zip_layout
from recordings.audit_cli import main as dispatch_audit
from recordings.audit_cli import run_verify_export
from recordings.ledger import Ledger, canonical_json, key_id, load_public_key, public_key_pem_of
from recordings.package import PackageError, build_package, load_signing_key
from recordings.package_format import manifest_message
from recordings.package_verify import PackageReport, verify_package
from recordings.verify import verify_archive


class StepClock:
    def __init__(self, t: float = 1795815600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


REQUEST = {"id": "req-7", "case_number": "(2026)京0105执1234号", "action_id": "act-3", "recipient": "张三",
           "approved_by": "user:judge-li", "from": "2026-11-27T21:40:00.000Z", "to": "2026-11-27T21:50:00.000Z",
           "reason": "查看强制执行过程"}
REDACTIONS = [
    {"start_s": 0.0, "end_s": 4.2, "region": {"x": 10, "y": 20, "w": 64, "h": 64}, "method": "blur",
     "reason": "auto:face", "by": "system"},
    {"start_s": 1.0, "end_s": 2.0, "region": {"x": 300, "y": 40, "w": 80, "h": 30}, "method": "blur",
     "reason": "manual:licence plate", "by": "user:judge-li"},
]
COMPLETENESS = {"action_id": "act-3", "case_number": REQUEST["case_number"], "units": [
    {"unit_id": "body-1", "recorded_intervals": [["2026-11-27T21:40:00.000Z", "2026-11-27T21:44:00.000Z"],
                                                 ["2026-11-27T21:44:05.000Z", "2026-11-27T21:50:00.000Z"]],
     "gaps": [{"recording_id": "r1", "start": "2026-11-27T21:44:00.000Z", "end": "2026-11-27T21:44:05.000Z",
               "cause": "link_lost"}]},
    {"unit_id": "body-2", "recorded_intervals": [["2026-11-27T21:41:00.000Z", "2026-11-27T21:49:00.000Z"]],
     "gaps": [], "statement": "recorded"},
]}


@dataclass
class Court:
    root: Path
    archive: Path
    key_path: Path
    ledger: Ledger
    sources: list[int]
    export: Path

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return load_signing_key(self.key_path)

    @property
    def public_pem(self) -> bytes:
        return self.ledger.public_key_pem()


def _seal(led: Ledger, archive: Path, rid: str, seq: int, size: int) -> int:
    rel = f"recordings/{rid}/{seq:06d}.webm"
    path = archive / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    e = led.append("segment_sealed", actor=f"unit:{rid}", data={
        "recording_id": rid, "seq": seq, "path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": size,
        "start": f"2026-11-27T21:4{seq}:00.000Z", "end": f"2026-11-27T21:4{seq}:59.000Z",
        "frames": {"video": 30, "audio": 50}, "recovered": False})
    return int(e["index"])


def make_court(root: Path) -> Court:
    archive, key_path = root / "archive", root / "data" / "keys" / "ledger-ed25519.pem"
    led = Ledger(archive, key_path, where="recorder@test", clock=StepClock())
    led.open()  # entry 0: key_created
    led.append("recording_opened", actor="unit:body-1", data={
        "recording_id": "r1", "unit_id": "body-1", "action_id": "act-3", "case_number": REQUEST["case_number"],
        "officers": ["王警官"], "video_codec": "vp8", "audio_codec": "opus"})
    sources = [_seal(led, archive, "r1", 1, 700), _seal(led, archive, "r1", 2, 900)]
    led.append("gap", actor="system", data={"recording_id": "r1", "start": "2026-11-27T21:44:00.000Z",
                                            "end": "2026-11-27T21:44:05.000Z", "cause": "link_lost"})
    sources.append(_seal(led, archive, "r1", 3, 500))
    led.sign_tree_head()
    led.append("recording_opened", actor="unit:body-2", data={
        "recording_id": "r2", "unit_id": "body-2", "action_id": "act-3", "case_number": REQUEST["case_number"],
        "officers": ["李警官"], "video_codec": "vp8", "audio_codec": "opus"})
    sources.append(_seal(led, archive, "r2", 1, 600))  # after the last signed tree head
    export = root / "export-input.MP4"
    export.write_bytes(os.urandom(3000))
    return Court(root, archive, key_path, led, sources, export)


def build(court: Court, out: Path, sources: list[int] | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(export_file=court.export, ledger=court.ledger,
                                source_indexes=court.sources if sources is None else sources, request=REQUEST,
                                redactions=REDACTIONS, completeness=COMPLETENESS, signing_key=court.signing_key,
                                clock=StepClock(1795816000.0), export_duration_s=600.0)
    args.update(kw)
    return build_package(out, **args)


@dataclass
class Built:
    court: Court
    path: Path
    data: bytes
    result: dict[str, Any]
    work: Path


@pytest.fixture(scope="module")
def court(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Court]:
    c = make_court(tmp_path_factory.mktemp("court"))
    yield c
    c.ledger.close()


@pytest.fixture(scope="module")
def built(court: Court, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = court.root / "package.zip"
    result = build(court, out)
    return Built(court, out, out.read_bytes(), result, tmp_path_factory.mktemp("work"))


def kinds(report: PackageReport) -> set[str]:
    return {f.kind for f in report.failures}


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def canonical_zip(parts: dict[str, bytes], created: float = 1795816000.0) -> bytes:
    """The package layout around ``parts`` (in the given order), as the builder writes it."""
    ms = [zip_layout.ZipMember(n, len(d), zlib.crc32(d)) for n, d in parts.items()]
    headers, _, tail = zip_layout.layout(ms, zip_layout.dos_datetime(created))
    return b"".join(h + parts[m.name] for m, (_, h) in zip(ms, headers, strict=True)) + tail


def resign(manifest: dict[str, Any], key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    raw = canonical_json(manifest)
    return raw, base64.b64encode(key.sign(manifest_message(raw))) + b"\n"


def write(work: Path, data: bytes, name: str = "p.zip") -> Path:
    p = work / name
    p.write_bytes(data)
    return p


# ---- an untouched package ----


def test_untouched_package_verifies_with_no_failures(built: Built) -> None:
    court = built.court
    report = verify_package(built.path)
    assert report.failures == []
    assert [w.kind for w in report.warnings] == ["unpinned_key"]
    manifest = built.result
    assert report.package_sha256 == built.result["package_sha256"] == hashlib.sha256(built.data).hexdigest()
    assert built.result["package_bytes"] == len(built.data) and report.package_id == manifest["package_id"]
    assert report.export_sha256 == hashlib.sha256(court.export.read_bytes()).hexdigest()
    assert report.sources == report.sources_proven == 4
    assert (report.redactions, report.units, report.gaps) == (2, 2, 1)
    assert report.key_id == key_id(load_public_key(court.public_pem)) == manifest["server_key_id"]
    pinned = verify_package(built.path, court.public_pem)
    assert pinned.ok and pinned.key_pinned and not pinned.warnings
    assert verify_archive(court.archive, court.public_pem).ok


def test_package_is_a_plain_zip_with_the_documented_members(built: Built) -> None:
    with zipfile.ZipFile(built.path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["manifest.json", "manifest.sig", "public_key.pem", "README.txt", "export.mp4"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.read("export.mp4") == built.court.export.read_bytes()
        readme = zf.read("README.txt").decode()
        assert "dispatch-audit verify-export" in readme and "核验" in readme
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("manifest.json") == canonical_json(manifest)
        sig = base64.b64decode(zf.read("manifest.sig"))
        load_public_key(zf.read("public_key.pem")).verify(sig, manifest_message(zf.read("manifest.json")))
    assert manifest["request"] == REQUEST and manifest["redactions"] == REDACTIONS
    assert {k: v for k, v in built.result.items() if not k.startswith("package_")} | {"package_id": ""} == \
        manifest | {"package_id": ""}
    assert manifest["completeness"] == COMPLETENESS
    assert manifest["export"] == {"name": "export.mp4", "sha256": hashlib.sha256(built.court.export.read_bytes())
                                  .hexdigest(), "bytes": 3000, "duration_s": 600.0}
    assert not list(built.path.parent.glob(".package.zip.*"))
    if shutil.which("unzip"):  # Info-ZIP reads the canonical layout too
        out = subprocess.run(["unzip", "-t", str(built.path)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "No errors detected" in out.stdout, out.stdout + out.stderr


def test_sources_are_the_exact_ledger_lines_with_proofs_to_a_newly_signed_head(built: Built) -> None:
    manifest = built.result
    lines = (built.court.archive / "ledger" / "entries.jsonl").read_bytes().split(b"\n")
    assert [s["index"] for s in manifest["sources"]] == built.court.sources
    for s in manifest["sources"]:
        assert s["entry"].encode() == lines[s["index"]]
        assert s["sha256"] == json.loads(s["entry"])["data"]["sha256"]
    # entry 7 came after the last tree head, so the builder signed one that covers it
    assert manifest["sth"]["tree_size"] == 8
    sths = (built.court.archive / "ledger" / "sth.jsonl").read_text().splitlines()
    assert json.loads(sths[-1]) == manifest["sth"] and len(sths) == 2


def test_a_covering_tree_head_is_reused(built: Built, tmp_path: Path) -> None:
    before = built.court.ledger.latest_sth()
    result = build(built.court, tmp_path / "p.zip", sources=[built.court.sources[0]])
    assert result["sth"] == before == built.court.ledger.latest_sth()
    assert verify_package(tmp_path / "p.zip", built.court.public_pem).ok


# ---- single flipped bytes ----


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_fails_verification(built: Built, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(built.data) - 1), label="position")
    delta = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(built.data)
    damaged[pos] ^= delta
    report = verify_package(write(built.work, bytes(damaged), "flip.zip"))
    assert report.failures, f"flipping byte {pos} by {delta:#x} went unnoticed"


def _structure_positions(data: bytes) -> list[int]:
    """Every byte of the file that is not member data: local headers, central directory, end records."""
    inside: set[int] = set()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for i in zf.infolist():
            start = i.header_offset + 30 + len(i.filename)
            inside.update(range(start, start + i.file_size))
    return [p for p in range(len(data)) if p not in inside]


def test_every_flipped_byte_of_the_zip_structure_is_a_named_package_failure(built: Built) -> None:
    positions = _structure_positions(built.data)
    assert len(positions) > 300
    path = built.work / "structure.zip"
    for pos in positions:
        for delta in (0x01, 0x80):
            damaged = bytearray(built.data)
            damaged[pos] ^= delta
            path.write_bytes(damaged)
            report = verify_package(path)
            assert report.failures, f"flipping byte {pos} by {delta:#x} went unnoticed"
            assert kinds(report) & {"bad_package", "missing", "extra"}, (pos, report.failures)


def test_flipped_byte_in_the_export_names_the_export(built: Built) -> None:
    with zipfile.ZipFile(built.path) as zf:
        info = zf.getinfo("export.mp4")
    damaged = bytearray(built.data)
    damaged[info.header_offset + 30 + len("export.mp4") + 100] ^= 0x10
    report = verify_package(write(built.work, bytes(damaged)))
    assert [(f.kind, f.item) for f in report.failures] == [("bad_package", "export.mp4"), ("altered", "export.mp4")]


def test_truncated_or_extended_or_non_zip_files_fail(built: Built) -> None:
    for data in (built.data[:-1], built.data[: len(built.data) // 2], built.data + b"\0", b"", b"not a zip"):
        report = verify_package(write(built.work, data))
        assert "bad_package" in kinds(report), report.failures


# ---- deliberate changes ----


def test_a_pinned_key_catches_a_package_signed_by_another_server(built: Built, tmp_path: Path) -> None:
    other = make_court(tmp_path)
    try:
        build(other, tmp_path / "forged.zip")
    finally:
        other.ledger.close()
    assert verify_package(tmp_path / "forged.zip").ok  # self-consistent: only a pinned key tells
    report = verify_package(tmp_path / "forged.zip", built.court.public_pem)
    assert ("bad_key", "public_key.pem") in {(f.kind, f.item) for f in report.failures}
    assert "bad_signature" in kinds(report)
    mismatch = verify_package(built.path, other.public_pem)
    assert {"bad_key", "bad_signature"} <= kinds(mismatch)


def test_a_swapped_public_key_is_bad_key_under_a_pinned_key(built: Built) -> None:
    parts = members(built.data)
    parts["public_key.pem"] = public_key_pem_of(Ed25519PrivateKey.generate().public_key())
    path = write(built.work, canonical_zip(parts))
    report = verify_package(path, built.court.public_pem)
    assert ("bad_key", "public_key.pem") in {(f.kind, f.item) for f in report.failures}
    assert "bad_signature" in kinds(verify_package(path))  # unpinned: the swapped key signed nothing


def test_a_manifest_edited_and_rezipped_without_resigning_fails(built: Built) -> None:
    parts = members(built.data)
    manifest = json.loads(parts["manifest.json"])
    manifest["request"]["recipient"] = "李四"
    parts["manifest.json"] = canonical_json(manifest)
    report = verify_package(write(built.work, canonical_zip(parts)), built.court.public_pem)
    assert [(f.kind, f.item) for f in report.failures] == [("bad_signature", "manifest.sig")]
    buf = io.BytesIO()  # re-zipped by an ordinary tool: the layout differs too
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    report = verify_package(write(built.work, buf.getvalue()), built.court.public_pem)
    assert {"bad_package", "bad_signature"} <= kinds(report)


def test_an_altered_inclusion_proof_fails_even_if_the_manifest_is_resigned(built: Built) -> None:
    parts = members(built.data)
    manifest = json.loads(parts["manifest.json"])
    proof = manifest["sources"][1]["inclusion_proof"]
    proof[0] = proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1")
    parts["manifest.json"], parts["manifest.sig"] = resign(manifest, built.court.signing_key)
    report = verify_package(write(built.work, canonical_zip(parts)), built.court.public_pem)
    assert [(f.kind, f.item) for f in report.failures] == [("not_included", f"source {built.court.sources[1]}")]
    assert report.sources_proven == 3


def test_an_altered_source_entry_fails_even_if_the_manifest_is_resigned(built: Built) -> None:
    parts = members(built.data)
    manifest = json.loads(parts["manifest.json"])
    source = manifest["sources"][0]
    entry = json.loads(source["entry"])
    entry["data"]["sha256"] = source["sha256"] = hashlib.sha256(b"other footage").hexdigest()
    source["entry"] = canonical_json(entry).decode()
    parts["manifest.json"], parts["manifest.sig"] = resign(manifest, built.court.signing_key)
    report = verify_package(write(built.work, canonical_zip(parts)), built.court.public_pem)
    assert [(f.kind, f.item) for f in report.failures] == [("not_included", f"source {built.court.sources[0]}")]
    source["sha256"] = "0" * 64  # a listed hash that is not the entry's
    parts["manifest.json"], parts["manifest.sig"] = resign(manifest, built.court.signing_key)
    report = verify_package(write(built.work, canonical_zip(parts)), built.court.public_pem)
    assert "bad_source" in kinds(report)


def test_a_replaced_export_or_an_extra_member_fails(built: Built) -> None:
    parts = members(built.data)
    parts["export.mp4"] = os.urandom(len(parts["export.mp4"]))
    report = verify_package(write(built.work, canonical_zip(parts)), built.court.public_pem)
    assert [(f.kind, f.item) for f in report.failures] == [("altered", "export.mp4")]
    parts = members(built.data)
    parts["notes.txt"] = b"hello"
    report = verify_package(write(built.work, canonical_zip(parts)))
    assert ("extra", "notes.txt") in {(f.kind, f.item) for f in report.failures}


def test_zip64_records_are_written_and_verified_when_sizes_need_them(built: Built, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_layout, "ZIP64_LIMIT", 2000)  # instead of 4 GiB: the export and later offsets need Zip64
    out = tmp_path / "big.zip"
    build(built.court, out, sources=[built.court.sources[0]])
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None and zf.read("export.mp4") == built.court.export.read_bytes()
        assert zf.getinfo("export.mp4").extra
    assert verify_package(out, built.court.public_pem).ok
    data = out.read_bytes()
    for pos in _structure_positions(data)[::3]:
        damaged = bytearray(data)
        damaged[pos] ^= 0x04
        assert verify_package(write(tmp_path, bytes(damaged), "d.zip")).failures, pos


# ---- building ----


def test_build_refuses_bad_input_and_leaves_nothing_behind(built: Built, tmp_path: Path) -> None:
    court, out = built.court, tmp_path / "p.zip"
    with pytest.raises(PackageError, match="not segment_sealed"):
        build(court, out, sources=[1])
    with pytest.raises(PackageError, match="does not exist"):
        build(court, out, sources=[10_000])
    with pytest.raises(PackageError, match="not the ledger's key"):
        build(court, out, signing_key=Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="reason"):
        build(court, out, redactions=[{"method": "blur", "reason": "face", "by": "system"}])
    with pytest.raises(ValueError, match="gaps"):
        build(court, out, completeness={"action_id": "a", "units": [{"unit_id": "u", "recorded_intervals": []}]})
    with pytest.raises(ValueError, match="request lacks"):
        build(court, out, request={"id": "x"})
    assert list(tmp_path.iterdir()) == []


def test_load_signing_key_reads_the_ledger_key_and_refuses_others(built: Built, tmp_path: Path) -> None:
    key = load_signing_key(built.court.key_path)
    assert key_id(key.public_key()) == built.result["server_key_id"]
    (tmp_path / "bad.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    for path in (tmp_path / "bad.pem", tmp_path / "absent.pem"):
        with pytest.raises(PackageError):
            load_signing_key(path)


# ---- dispatch-audit verify-export ----


def test_cli_exit_status_is_0_ok_1_failures_2_usage(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    key = write(built.work, built.court.public_pem, "court.pem")
    assert dispatch_audit(["verify-export", str(built.path), "--public-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: package ") and "4/4 source segments proven" in out and "(pinned)" in out
    damaged = bytearray(built.data)
    damaged[len(damaged) // 2] ^= 1
    assert dispatch_audit(["verify-export", str(write(built.work, bytes(damaged)))]) == 1
    assert "FAIL bad_package" in capsys.readouterr().out
    assert dispatch_audit(["verify-export", str(built.work / "absent.zip")]) == 2
    assert dispatch_audit(["verify-export", str(built.path), "--public-key", str(built.work / "absent.pem")]) == 2
    assert dispatch_audit(["verify-export", str(built.path), "--public-key", str(built.court.export)]) == 2
    assert "--public-key" in capsys.readouterr().err
    assert run_verify_export(argparse.Namespace(package=str(built.path), public_key=None, json=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["sources_proven"] == 4 and report["request"]["id"] == "req-7"


def test_verify_export_is_a_dispatch_audit_subcommand(built: Built) -> None:
    from recordings import audit_cli

    args = audit_cli.build_parser().parse_args(["verify-export", str(built.path), "--json"])
    assert args.run is run_verify_export and args.run(args) == 0


def test_export_redaction_records_are_flattened_with_who_did_what(built: Built, tmp_path: Path) -> None:
    records = [{"start_s": 0.0, "end_s": 0.2,
                "blurred": [{"x": 1, "y": 2, "w": 30, "h": 30, "reason": "auto:face"},
                            {"x": 100, "y": 2, "w": 40, "h": 20, "reason": "manual:plate"}],
                "kept": [{"x": 200, "y": 5, "w": 30, "h": 30, "reason": "auto:face"}]}]
    result = build(built.court, tmp_path / "p.zip", sources=[built.court.sources[0]], redactions=records)
    assert result["redactions"] == [
        {"start_s": 0.0, "end_s": 0.2, "region": {"x": 1, "y": 2, "w": 30, "h": 30}, "method": "blur",
         "reason": "auto:face", "by": "system"},
        {"start_s": 0.0, "end_s": 0.2, "region": {"x": 100, "y": 2, "w": 40, "h": 20}, "method": "blur",
         "reason": "manual:plate", "by": "user:judge-li"},
        {"start_s": 0.0, "end_s": 0.2, "region": {"x": 200, "y": 5, "w": 30, "h": 30}, "method": "none",
         "reason": "manual:keep", "by": "user:judge-li", "detected": "auto:face"}]
    assert verify_package(tmp_path / "p.zip", built.court.public_pem).ok
