"""The tamper suite (issue #15): the outside tester's sixteen ways of tampering with an archive and
its export packages, and findings 1-3, each caught by the server's start-up check, by
``dispatch-audit verify``, or by ``verify --known-head``; and the second verifier
(``verifier/dispatch_verify.py``, written from the specification, run on a Python without our
packages) reaching the same verdict as ``dispatch-audit`` on every one of them.

An untouched archive verifies with no failure, stopped or live.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recordings.canonical import canonical_json
from recordings.known_heads import KnownHead, load_known_heads
from recordings.ledger import ENTRIES_FILE, STH_FILE, KeyMismatchError, Ledger, LedgerIntegrityError
from recordings.merkle import leaf_hash
from recordings.package import build_package, load_signing_key
from recordings.package_verify import verify_package
from recordings.snapshots import StillInfo, seal_snapshot
from recordings.verify import Report, verify_archive
from tests.recordings.test_ledger_startup import drop_heads_from, forge_entry
from tests.recordings.test_package import COMPLETENESS, REDACTIONS, REQUEST
from tests.recordings.test_package import StepClock as PackageClock
from tests.recordings.test_snapshots import jpeg
from tests.recordings.test_verify import StepClock, _resign_with

REPO = Path(__file__).resolve().parents[2]
SECOND = REPO / "verifier" / "dispatch_verify.py"
RID = "fr-0123456789ab"


@dataclass
class Evidence:
    root: Path
    archive: Path
    key_path: Path
    checkpoint: Path
    pem: Path  # the court's public key, held separately
    segments: list[str]
    package: str  # archive-relative
    kept: Path  # an auditor's copy of sth.jsonl, taken when the archive was complete


def _segment(led: Ledger, archive: Path, rid: str, seq: int, rng: random.Random) -> tuple[str, int]:
    rel = f"recordings/{rid}/{seq:06d}.webm"
    data = rng.randbytes(rng.randint(400, 2000))
    (archive / rel).parent.mkdir(parents=True, exist_ok=True)
    (archive / rel).write_bytes(data)
    e = led.append("segment_sealed", actor="system", where="recorder@test", data={
        "recording_id": rid, "seq": seq, "path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "start": f"2026-11-27T21:4{seq}:00.000Z", "end": f"2026-11-27T21:4{seq}:09.500Z",
        "frames": {"video": 285, "audio": 475}, "recovered": False, "offset_s": 10.0 * (seq - 1),
        "pts": {"video": [0, 855000], "audio": [0, 456000]}})
    return rel, int(e["index"])


def build_evidence(root: Path) -> Evidence:
    """An archive as a day of work leaves it: recordings, a still, evidence access, the operators'
    audit trail, an export package in exports/, tree heads along the way, a clean stop."""
    rng = random.Random(15)
    archive, key_path = root / "archive", root / "data" / "keys" / "ledger-ed25519.pem"
    checkpoint = root / "data" / "keys" / "checkpoints" / "archive.json"
    clock = StepClock()
    led = Ledger(archive, key_path, where="recorder@test", clock=clock, checkpoint_path=checkpoint)
    led.open()
    segments, sources = [], []
    for r, rid in enumerate(("rec-20261127T214000Z-0a1b2c3d", "rec-20261127T214100Z-4e5f6a7b")):
        led.append("recording_opened", actor="system", where="recorder@test", data={
            "recording_id": rid, "unit_id": f"bc-0{r}", "action_id": "act-3", "case_number": REQUEST["case_number"],
            "officers": ["王警官"], "category": "standard", "node": "test", "video_codec": "vp8",
            "audio_codec": "opus", "server_time": "2026-11-27T21:40:00.000Z"})
        for seq in (1, 2, 3):
            rel, index = _segment(led, archive, rid, seq, rng)
            segments.append(rel)
            sources.append(index)
            if seq == 2:
                led.append("gap", actor="system", where="recorder@test", data={
                    "recording_id": rid, "start": "2026-11-27T21:42:09.500Z", "end": "2026-11-27T21:43:00.000Z",
                    "seconds": 50.5, "cause": "link_lost"})
                led.sign_tree_head()
        meta = canonical_json({"recording_id": rid, "segments": 3})
        (archive / "recordings" / rid / "recording.json").write_bytes(meta)
        led.append("recording_closed", actor="system", where="recorder@test", data={
            "recording_id": rid, "segments": 3, "reason": "unit did not come back within 300 s",
            "end_cause": "link_lost", "metadata_sha256": hashlib.sha256(meta).hexdigest(),
            "server_time": "2026-11-27T21:50:00.000Z"})
    seal_snapshot(archive, led, StillInfo("bc-00", "act-3", REQUEST["case_number"], "ins-1", None), jpeg(3),
                  clock(), actor="unit:bc-00", where="http:10.0.0.5")
    led.append("viewed", actor="user:ana", where="http:10.0.0.7",
               data={"recording_id": segments[0].split("/")[1], "client_ip": "10.0.0.7"})
    led.append_many([("operator_action", "user:op", "dispatch", "ok",
                      {"seq": n, "at": "2026-11-27T21:40:00.000Z", "verb": verb, "subject": "act-3", "detail": {}})
                     for n, verb in enumerate(("action.created", "action.started", "action.ended"), 1)])
    led.sign_tree_head()
    # An export package, as the exporter builds and commits it.
    part = archive / "exports" / f"{RID}.part"
    part.mkdir(parents=True)
    (part / "export.mp4").write_bytes(rng.randbytes(5000))
    package = part / f"{RID}.zip"
    built = build_package(package, export_file=part / "export.mp4", ledger=led, source_indexes=sources[:3],
                          request={**REQUEST, "id": RID}, redactions=REDACTIONS, completeness=COMPLETENESS,
                          signing_key=load_signing_key(key_path), clock=PackageClock(1795816000.0),
                          export_duration_s=25.0)
    export_sha = hashlib.sha256((part / "export.mp4").read_bytes()).hexdigest()
    led.append("exported", actor="user:judge", where="exporter", data={
        "request_id": RID, "case_number": REQUEST["case_number"], "recording_id": segments[0].split("/")[1],
        "export_path": f"exports/{RID}/export.mp4", "export_sha256": export_sha, "export_bytes": 5000,
        "package_path": f"exports/{RID}/{RID}.zip", "package_sha256": built["package_sha256"],
        "package_bytes": built["package_bytes"], "sources": 3})
    os.rename(part, archive / "exports" / RID)
    led.append("downloaded", actor="party:张三@（2026）冀0916执123号", where="http:10.0.0.9",
               data={"request_id": RID, "link_id": "ln-0123456789ab", "what": "package", "range": ""})
    led.close()
    pem = root / "court.pem"
    pem.write_bytes(led.public_key_pem())
    kept = root / "auditor-sth.jsonl"
    shutil.copy(archive / STH_FILE, kept)
    return Evidence(root, archive, key_path, checkpoint, pem, segments, f"exports/{RID}/{RID}.zip", kept)


# ---- tamperings -----------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x20
    path.write_bytes(bytes(data))


def lines(ev: Evidence, name: str = ENTRIES_FILE) -> list[bytes]:
    return (ev.archive / name).read_bytes().splitlines()


def write_lines(ev: Evidence, items: list[bytes], name: str = ENTRIES_FILE) -> None:
    (ev.archive / name).write_bytes(b"".join(x + b"\n" for x in items))


def rechain_from(ev: Evidence, entries: list[dict[str, object]]) -> None:
    out: list[bytes] = []
    for i, e in enumerate(entries):
        e["index"] = i
        e["prev"] = leaf_hash(out[-1]).hex() if out else ""
        out.append(canonical_json(e))
    write_lines(ev, out)


def t_segment_byte(ev: Evidence) -> None:
    flip(ev.archive / ev.segments[1], 300)


def t_entry_byte(ev: Evidence) -> None:
    items = lines(ev)
    k = len(items) // 2
    items[k] = items[k].replace(b'"actor":"system"', b'"actor":"systen"', 1)
    write_lines(ev, items)


def t_sth_byte(ev: Evidence) -> None:
    flip(ev.archive / STH_FILE, 40)


def t_rechained_entry(ev: Evidence) -> None:
    forge_entry(ev.archive, 5, "user:someone-else")  # every later prev rewritten; the tree heads left


def t_truncated(ev: Evidence) -> None:
    write_lines(ev, lines(ev)[:-3])


def t_torn_line(ev: Evidence) -> None:
    with open(ev.archive / ENTRIES_FILE, "ab") as f:
        f.write(b'{"actor":"system","data":{"case_number":')


def t_swapped_lines(ev: Evidence) -> None:
    items = lines(ev)
    items[3], items[4] = items[4], items[3]
    write_lines(ev, items)


def t_forged_tail(ev: Evidence) -> None:
    items = lines(ev)
    last = json.loads(items[-1])
    for _ in range(2):
        forged = {"index": last["index"] + 1, "prev": leaf_hash(items[-1]).hex(), "time": "2026-11-27T23:59:00.000Z",
                  "type": "viewed", "actor": "user:mallory", "where": "http:10.6.6.6", "outcome": "ok",
                  "data": {"recording_id": "rec-none", "client_ip": "10.6.6.6"}}
        items.append(canonical_json(forged))
        last = forged
    write_lines(ev, items)


def t_resigned(ev: Evidence) -> None:
    _resign_with(ev.archive, Ed25519PrivateKey.generate())


def t_missing_file(ev: Evidence) -> None:
    (ev.archive / ev.segments[2]).unlink()


def t_extra_file(ev: Evidence) -> None:
    (ev.archive / ev.segments[0]).with_name("000009.webm").write_bytes(b"planted evidence")


def t_swapped_files(ev: Evidence) -> None:
    a, b = ev.archive / ev.segments[0], ev.archive / ev.segments[1]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def t_recording_json(ev: Evidence) -> None:
    path = next(ev.archive.glob("recordings/*/recording.json"))
    path.write_bytes(path.read_bytes().replace(b'"segments":3', b'"segments":2'))


def t_package_byte(ev: Evidence) -> None:
    flip(ev.archive / ev.package, 2000)


def t_export_replaced(ev: Evidence) -> None:
    (ev.archive / "exports" / RID / "export.mp4").write_bytes(b"\x00" * 5000)


def t_public_key_replaced(ev: Evidence) -> None:
    from recordings.ledger import public_key_pem_of
    (ev.archive / "ledger" / "public_key.pem").write_bytes(public_key_pem_of(Ed25519PrivateKey.generate().public_key()))


def t_finding_1(ev: Evidence) -> None:
    """A party's downloaded entry edited (actor changed), every later prev rewritten, the tree
    heads covering it deleted."""
    k = next(i for i, line in enumerate(lines(ev)) if b'"type":"downloaded"' in line)
    forge_entry(ev.archive, k, "party:李四@（2026）冀0916执123号")
    drop_heads_from(ev.archive, k + 1)


def t_finding_2(ev: Evidence) -> None:
    """Cut back to an earlier tree head; the files sealed after it deleted."""
    heads = [json.loads(x) for x in lines(ev, STH_FILE)]
    size = heads[0]["tree_size"]
    kept = lines(ev)[:size]
    write_lines(ev, kept)
    drop_heads_from(ev.archive, size + 1)
    named = b"\n".join(kept)
    for path in sorted(ev.archive.rglob("*"), reverse=True):
        rel = path.relative_to(ev.archive).as_posix()
        if path.is_file() and not rel.startswith("ledger/") and rel.encode() not in named \
                and path.name != "recording.json":
            path.unlink()
        elif path.is_file() and path.name == "recording.json" and b'"recording_closed"' not in named:
            path.unlink()
    for path in sorted(ev.archive.rglob("*"), reverse=True):
        if path.is_dir() and not any(path.iterdir()) and path.name not in ("recordings", "snapshots", "ledger"):
            path.rmdir()


def t_finding_3(ev: Evidence) -> None:
    """An operator's action erased from the ledger: the line removed, the rest re-chained, the
    tree heads after it deleted."""
    entries = [json.loads(x) for x in lines(ev)]
    k = next(i for i, e in enumerate(entries) if e["type"] == "operator_action" and e["data"]["verb"] == "action.ended")
    del entries[k]
    rechain_from(ev, entries)
    drop_heads_from(ev.archive, k + 1)


# (tampering, detected by: "start" the server's start-up check, "verify" dispatch-audit verify with
# the pinned key, "known" verify --known-head with the auditor's copy of the tree heads)
CASES: dict[str, tuple[Callable[[Evidence], None], set[str]]] = {
    "segment_byte": (t_segment_byte, {"verify"}),
    "entry_byte": (t_entry_byte, {"start", "verify"}),
    "sth_byte": (t_sth_byte, {"start", "verify"}),
    "rechained_entry": (t_rechained_entry, {"start", "verify", "known"}),
    "truncated": (t_truncated, {"start", "verify", "known"}),
    "torn_line": (t_torn_line, {"verify"}),
    "swapped_lines": (t_swapped_lines, {"start", "verify"}),
    "forged_tail": (t_forged_tail, {"start", "verify"}),
    "resigned": (t_resigned, {"start", "verify"}),
    "missing_file": (t_missing_file, {"verify"}),
    "extra_file": (t_extra_file, {"verify"}),
    "swapped_files": (t_swapped_files, {"verify"}),
    "recording_json": (t_recording_json, {"verify"}),
    "package_byte": (t_package_byte, {"verify"}),
    "export_replaced": (t_export_replaced, {"verify"}),
    "public_key_replaced": (t_public_key_replaced, {"start", "verify"}),
    "finding_1": (t_finding_1, {"start", "known"}),
    "finding_2": (t_finding_2, {"start", "known"}),
    "finding_3": (t_finding_3, {"start", "known"}),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    return build_evidence(tmp_path_factory.mktemp("evidence"))


def copy_of(ev: Evidence, root: Path) -> Evidence:
    """A copy at ``root``, its checkpoint naming the copy's archive (as if it had been made there)."""
    shutil.copytree(ev.root, root, dirs_exist_ok=True)
    copy = Evidence(root, root / "archive", root / "data" / "keys" / "ledger-ed25519.pem",
                    root / "data" / "keys" / "checkpoints" / "archive.json", root / "court.pem", ev.segments,
                    ev.package, root / "auditor-sth.jsonl")
    checkpoint = json.loads(copy.checkpoint.read_bytes())
    checkpoint["archive"] = str(copy.archive.resolve())
    copy.checkpoint.write_bytes(canonical_json(checkpoint))
    return copy


def second_verifier(*args: str) -> subprocess.CompletedProcess[str]:
    """The second verifier on a plain Python: no site-packages (-S), isolated (-I)."""
    return subprocess.run([sys.executable, "-S", "-I", str(SECOND), *args], capture_output=True, text=True,
                          timeout=120)


def audit(ev: Evidence, known: bool) -> Report:
    heads: list[KnownHead] = load_known_heads(str(ev.kept)) if known else []
    return verify_archive(ev.archive, ev.pem.read_bytes(), known_heads=heads, live=False)


def start_refused(ev: Evidence) -> bool:
    led = Ledger(ev.archive, ev.key_path, checkpoint_path=ev.checkpoint)
    try:
        led.open()
    except (LedgerIntegrityError, KeyMismatchError):
        return True
    led._close_files()  # the check is all that is wanted: nothing is signed
    return False


def same_verdict(ev: Evidence, report: Report, known: bool) -> None:
    args = ["archive", str(ev.archive), "--public-key", str(ev.pem)]
    if known:
        args += ["--known-head", str(ev.kept)]
    second = second_verifier(*args)
    assert second.returncode in (0, 1), second.stderr
    assert (second.returncode == 0) == report.ok, (
        f"dispatch-audit: {[str(f) for f in report.failures]}\nsecond verifier:\n{second.stdout}")


def test_an_untouched_archive_verifies_stopped_and_live_with_both_verifiers(pristine: Evidence,
                                                                              tmp_path: Path) -> None:
    ev = copy_of(pristine, tmp_path)
    for known in (False, True):
        report = audit(ev, known)
        assert report.failures == [], report.failures
        same_verdict(ev, report, known)
    package = second_verifier("package", str(ev.archive / ev.package), "--public-key", str(ev.pem))
    assert package.returncode == 0, package.stdout
    assert verify_package(ev.archive / ev.package, ev.pem.read_bytes()).ok
    assert not start_refused(ev)
    # Live: the server has it open and appended since its last tree head.
    led = Ledger(ev.archive, ev.key_path, clock=StepClock(), checkpoint_path=ev.checkpoint)
    led.open()
    led.append("viewed", actor="user:ana", where="http:10.0.0.7", data={"recording_id": "rec-x"})
    live = verify_archive(ev.archive, ev.pem.read_bytes(), now=StepClock().t + 30)
    assert live.live and live.failures == [] and live.pending == 1
    led.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_tampering_is_detected_and_both_verifiers_agree(case: str, pristine: Evidence, tmp_path: Path) -> None:
    ev = copy_of(pristine, tmp_path)
    tamper, detectors = CASES[case]
    tamper(ev)
    plain, known = audit(ev, False), audit(ev, True)
    detected = {name for name, hit in (("verify", not plain.ok), ("known", not known.ok)) if hit}
    assert detectors - {"start"} <= detected, f"{case}: {plain.failures} / {known.failures}"
    same_verdict(ev, plain, False)
    same_verdict(ev, known, True)
    if case in ("package_byte",):
        package = ev.archive / ev.package
        assert not verify_package(package, ev.pem.read_bytes()).ok
        assert second_verifier("package", str(package), "--public-key", str(ev.pem)).returncode == 1
    if "start" in detectors:
        assert start_refused(ev), f"{case}: the server would have signed over it"
