"""The offline verifier: an untouched archive passes, and every single tampering is caught and named."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings.ledger import (
    ENTRIES_FILE,
    PUBLIC_KEY_FILE,
    STH_FILE,
    Ledger,
    canonical_json,
    key_id,
    public_key_pem_of,
    sth_message,
)
from recordings.verify import Report, verify_archive

AUDIT = Path(sys.executable).parent / "dispatch-audit"


class StepClock:
    def __init__(self) -> None:
        self.t = 1795815600.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


@dataclass
class Built:
    archive: Path
    key_path: Path
    public_pem: bytes
    segments: list[str]  # archive-relative paths of the segment files present
    sizes: int  # their total bytes


def build_archive(root: Path, rng: random.Random, recordings: int = 2, segments: int = 3) -> Built:
    """A real ledger over small random "segments": opened, sealed, closed, viewed, some deleted."""
    archive, key_path = root / "archive", root / "keys" / "ledger.pem"
    led = Ledger(archive, key_path, where="recorder@test", clock=StepClock())
    led.open()
    present: list[str] = []
    for r in range(recordings):
        rid = f"rec-{r:02d}"
        folder = archive / "recordings" / rid
        folder.mkdir(parents=True)
        led.append("recording_opened", actor=f"unit:u{r}", data={
            "recording_id": rid, "unit_id": f"u{r}", "action_id": f"a{r}", "case_number": f"(2026)京0105执{r}号",
            "officers": ["Li"], "video_codec": "vp8", "audio_codec": "opus"})
        for seq in range(1, segments + 1):
            body = rng.randbytes(rng.randint(1, 3000))
            rel = f"recordings/{rid}/{seq:06d}.webm"
            (archive / rel).write_bytes(body)
            led.append("segment_sealed", actor="system", data={
                "recording_id": rid, "seq": seq, "path": rel, "sha256": hashlib.sha256(body).hexdigest(),
                "bytes": len(body), "start": "2026-11-27T21:40:00.000Z", "end": "2026-11-27T21:40:10.000Z",
                "frames": {"video": 300, "audio": 500}, "recovered": False})
            present.append(rel)
            if rng.random() < 0.3:
                led.sign_tree_head()
        meta = json.dumps({"recording_id": rid, "segments": segments}).encode()
        (folder / "recording.json").write_bytes(meta)
        led.append("recording_closed", actor="system", data={
            "recording_id": rid, "segments": segments, "reason": "unit_stopped",
            "metadata_sha256": hashlib.sha256(meta).hexdigest()})
        led.append("viewed", actor="user:ana", where="http:10.0.0.7", data={"recording_id": rid, "seq": 1})
    if rng.random() < 0.5 and len(present) > 1:
        rel = present.pop(rng.randrange(len(present)))
        sha = hashlib.sha256((archive / rel).read_bytes()).hexdigest()
        (archive / rel).unlink()
        led.append("segment_deleted", actor="system", data={
            "recording_id": rel.split("/")[1], "seq": int(rel[-11:-5]), "path": rel, "sha256": sha,
            "reason": "retention"})
    led.close()
    return Built(archive, key_path, led.public_key_pem(), present, sum((archive / p).stat().st_size for p in present))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def items(report: Report) -> set[str]:
    return {f.item for f in report.failures}


def flip(path: Path, offset: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


TAMPERS = ["segment_byte", "entry_byte", "sth_byte", "delete_segment", "reorder_entries"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), recordings=st.integers(1, 3), segments=st.integers(1, 4),
       tamper=st.sampled_from(TAMPERS), mask=st.integers(1, 255), data=st.data())
def test_every_single_tampering_is_detected_and_named(seed: int, recordings: int, segments: int, tamper: str,
                                                      mask: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        built = build_archive(Path(tmp), random.Random(seed), recordings, segments)
        clean = verify_archive(built.archive, built.public_pem)
        assert clean.failures == [], clean.failures
        entries = built.archive / ENTRIES_FILE
        sths = built.archive / STH_FILE
        expected: set[str]
        if tamper == "segment_byte":
            rel = data.draw(st.sampled_from(built.segments))
            offset = data.draw(st.integers(0, (built.archive / rel).stat().st_size - 1))
            flip(built.archive / rel, offset, mask)
            expected, kinds = {rel}, {"altered"}
        elif tamper == "delete_segment":
            rel = data.draw(st.sampled_from(built.segments))
            (built.archive / rel).unlink()
            expected, kinds = {rel}, {"missing"}
        elif tamper == "entry_byte":
            lines = lines_of(entries)
            k = data.draw(st.integers(0, len(lines) - 1))
            offset = sum(len(x) + 1 for x in lines[:k]) + data.draw(st.integers(0, len(lines[k])))  # incl. its \n
            flip(entries, offset, mask)
            expected, kinds = {f"entry {k}"}, {"bad_entry", "chain_broken", "altered", "out_of_order", "missing"}
        elif tamper == "sth_byte":
            lines = lines_of(sths)
            n = data.draw(st.integers(1, len(lines)))
            offset = sum(len(x) + 1 for x in lines[:n - 1]) + data.draw(st.integers(0, len(lines[n - 1])))
            flip(sths, offset, mask)
            expected, kinds = {f"sth line {n}"}, {"bad_entry", "bad_signature"}
        else:
            lines = lines_of(entries)
            i, j = data.draw(st.lists(st.integers(0, len(lines) - 1), min_size=2, max_size=2, unique=True))
            lines[i], lines[j] = lines[j], lines[i]
            entries.write_bytes(b"".join(x + b"\n" for x in lines))
            expected, kinds = {f"entry {i}", f"entry {j}"}, {"out_of_order"}
        report = verify_archive(built.archive, built.public_pem)
        assert report.failures, f"{tamper} went unnoticed"
        named = {f.item for f in report.failures if f.kind in kinds}
        assert expected <= named, f"{tamper}: expected {expected} among {report.failures}"


def test_an_untouched_archive_verifies_and_counts_what_it_checked(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(1), recordings=3, segments=4)
    seen: list[tuple[int, int]] = []
    report = verify_archive(built.archive, progress=lambda done, total: seen.append((done, total)),
                            allow_unanchored=True)
    assert report.ok and report.failures == []
    assert report.segments == 12 and report.segments_proven == 12
    entries = len(lines_of(built.archive / ENTRIES_FILE))
    assert report.entries == report.tree_size == entries
    assert report.files_hashed == len(built.segments) + 3  # segments + recording.json
    assert report.bytes_hashed >= built.sizes
    assert seen[-1][0] == seen[-1][1] == report.bytes_hashed
    assert [w.kind for w in report.warnings] == ["unpinned_key", "unanchored"]
    assert not verify_archive(built.archive, built.public_pem).warnings


def test_a_deleted_segment_covered_by_the_ledger_is_not_missing(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(2), recordings=1, segments=3)
    rel = built.segments[0]
    sha = hashlib.sha256((built.archive / rel).read_bytes()).hexdigest()
    (built.archive / rel).unlink()
    led = Ledger(built.archive, built.key_path, clock=StepClock())
    led.open()
    n = led.size
    led.append("segment_deleted", actor="system", data={"recording_id": "rec-00", "seq": 1, "path": rel,
                                                        "sha256": sha, "reason": "retention"})
    assert items(verify_archive(built.archive, allow_unanchored=True)) == {f"entry {n}"}  # not yet signed: uncovered
    led.close()
    assert verify_archive(built.archive, allow_unanchored=True).failures == []


def test_extra_files_fail_and_unsealed_parts_only_warn(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(3), recordings=1, segments=2)
    (built.archive / "recordings" / "rec-00" / "000009.webm").write_bytes(b"planted")
    (built.archive / "recordings" / "rec-00" / "000003.webm.part").write_bytes(b"half")
    report = verify_archive(built.archive, built.public_pem)
    assert [(f.kind, f.item) for f in report.failures] == [("extra", "recordings/rec-00/000009.webm")]
    assert ("unsealed", "recordings/rec-00/000003.webm.part") in [(w.kind, w.item) for w in report.warnings]


def test_altered_recording_metadata_fails(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(4), recordings=1, segments=1)
    meta = built.archive / "recordings" / "rec-00" / "recording.json"
    meta.write_bytes(meta.read_bytes().replace(b'"segments": 1', b'"segments": 0'))
    assert [(f.kind, f.item) for f in verify_archive(built.archive, allow_unanchored=True).failures] == [
        ("altered", "recordings/rec-00/recording.json")]


def test_a_ledger_cut_short_is_reported_as_missing_entries(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(5), recordings=1, segments=2)
    entries = built.archive / ENTRIES_FILE
    lines = lines_of(entries)
    entries.write_bytes(b"".join(x + b"\n" for x in lines[:-2]))
    n = len(lines)
    found = [(f.kind, f.item) for f in verify_archive(built.archive, allow_unanchored=True).failures]
    assert ("missing", f"entries {n - 2}..{n - 1}") in found


def test_a_torn_last_entry_line_is_a_failure_until_the_server_repairs_it(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(6), recordings=1, segments=1)
    with open(built.archive / ENTRIES_FILE, "ab") as f:
        f.write(b'{"actor":"sys')
    n = len(lines_of(built.archive / ENTRIES_FILE))
    report = verify_archive(built.archive, allow_unanchored=True)
    assert ("bad_entry", f"entry {n}") in [(f.kind, f.item) for f in report.failures]
    led = Ledger(built.archive, built.key_path, clock=StepClock())
    led.open()
    led.close()
    assert verify_archive(built.archive, built.public_pem).failures == []


def _resign_with(archive: Path, attacker: Ed25519PrivateKey) -> None:
    """What someone with write access but without the key can do: re-sign every head with their own."""
    out = []
    for line in lines_of(archive / STH_FILE):
        sth = json.loads(line)
        sig = attacker.sign(sth_message(sth["tree_size"], sth["root_hash"], sth["timestamp"]))
        sth.update(key_id=key_id(attacker.public_key()), signature=base64.b64encode(sig).decode())
        out.append(canonical_json(sth) + b"\n")
    (archive / STH_FILE).write_bytes(b"".join(out))
    (archive / PUBLIC_KEY_FILE).write_bytes(public_key_pem_of(attacker.public_key()))


def test_a_swapped_public_key_fails_against_the_pinned_key(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(7), recordings=1, segments=2)
    assert verify_archive(built.archive, built.public_pem).failures == []
    _resign_with(built.archive, Ed25519PrivateKey.generate())
    pinned = verify_archive(built.archive, built.public_pem)
    kinds = {(f.kind, f.item) for f in pinned.failures}
    assert ("bad_key", PUBLIC_KEY_FILE) in kinds and ("bad_signature", "sth line 1") in kinds
    # Unpinned, the re-signed heads verify; only the ledger's own key_created entry gives it away.
    unpinned = verify_archive(built.archive, allow_unanchored=True)
    assert [(f.kind, f.item) for f in unpinned.failures] == [("bad_key", PUBLIC_KEY_FILE)]


def run_audit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPATCH_CONFIG"}
    return subprocess.run([str(AUDIT), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_cli_exit_codes_and_output(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(8), recordings=1, segments=2)
    key_file = tmp_path / "pinned.pem"
    key_file.write_bytes(built.public_pem)

    ok = run_audit("verify", "--archive", str(built.archive), "--public-key", str(key_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: ") and "(pinned)" in ok.stdout and "hashing" in ok.stderr

    exported = run_audit("export-key", "--archive", str(built.archive))
    assert exported.returncode == 0 and exported.stdout.encode() == built.public_pem

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[archive]\ndir = "archive"\n')
    by_config = run_audit("verify", "--config", str(cfg), "--json", cwd=tmp_path)
    report = json.loads(by_config.stdout)
    # No pinned key, no checkpoint, no witness: nothing outside the archive vouches for it.
    assert by_config.returncode == 1 and [f["kind"] for f in report["failures"]] == ["unanchored"]
    by_config = run_audit("verify", "--config", str(cfg), "--json", "--allow-unanchored", cwd=tmp_path)
    report = json.loads(by_config.stdout)
    assert by_config.returncode == 0 and report["ok"] and report["archive"] == str(built.archive)
    assert "unanchored" in [w["kind"] for w in report["warnings"]]

    flip(built.archive / built.segments[0], 0, 0xFF)
    bad = run_audit("verify", "--archive", str(built.archive), "--quiet")
    assert bad.returncode == 1
    assert f"FAIL altered {built.segments[0]}: " in bad.stdout and bad.stdout.splitlines()[-1].startswith("FAILED")
    assert bad.stderr == ""

    assert run_audit("verify", "--archive", str(tmp_path / "nope")).returncode == 2
    (tmp_path / "empty").mkdir()
    no_archive = run_audit("verify", cwd=tmp_path / "empty")  # no --archive, no config.toml
    assert no_archive.returncode == 2 and "--archive" in no_archive.stderr
    assert run_audit("verify", "--archive", str(built.archive), "--public-key", str(cfg)).returncode == 2
    assert run_audit("frobnicate").returncode == 2
    assert run_audit("--help").returncode == 0


def test_on_a_live_archive_recent_unsigned_entries_are_pending_and_older_ones_fail(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(9), recordings=1, segments=2)
    clock = StepClock()
    clock.t += 3600  # an hour after the archive was built
    led = Ledger(built.archive, built.key_path, clock=clock)
    led.open()
    n = led.size
    for i in range(3):
        led.append("viewed", actor="user:ana", data={"recording_id": "rec-00", "seq": i + 1})
    (built.archive / "recordings" / "rec-00" / "000009.webm.part").write_bytes(b"being written")
    now = clock.t + 1
    live = verify_archive(built.archive, built.public_pem, live=True, sign_interval_s=60, now=now)
    assert live.failures == [] and live.live and live.pending == 3
    assert ("pending", f"entries {n}..{n + 2}") in [(w.kind, w.item) for w in live.warnings]
    # Much later, or on an archive no server writes, unsigned entries are a failure.
    late = verify_archive(built.archive, built.public_pem, live=True, sign_interval_s=60, now=now + 3600)
    assert [(f.kind, f.item) for f in late.failures] == [("uncovered", f"entries {n}..{n + 2}")]
    stopped = verify_archive(built.archive, built.public_pem, live=False)
    assert [(f.kind, f.item) for f in stopped.failures] == [("uncovered", f"entries {n}..{n + 2}")]
    assert "unsealed" in [w.kind for w in stopped.warnings]
    led.close()
