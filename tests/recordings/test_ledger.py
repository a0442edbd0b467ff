"""The ledger writer: durable canonical lines, the hash chain, keys, tree heads, crash repair."""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from recordings.ledger import (
    ENTRIES_FILE,
    PUBLIC_KEY_FILE,
    STH_FILE,
    KeyMismatchError,
    Ledger,
    LedgerWriteError,
    canonical_json,
    load_public_key,
    sth_message,
    verify_sth_signature,
)
from recordings.merkle import MerkleTree, leaf_hash, verify_inclusion
from recordings.verify import verify_archive


class FakeClock:
    def __init__(self, t: float = 1795815600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "archive", tmp_path / "data" / "keys" / "ledger-ed25519.pem"


@pytest.fixture
def ledger(paths: tuple[Path, Path]) -> Iterator[Ledger]:
    led = Ledger(*paths, where="recorder@test", clock=FakeClock())
    led.open()
    yield led
    led.close()


def raw_lines(archive: Path, name: str = ENTRIES_FILE) -> list[bytes]:
    return (archive / name).read_bytes().split(b"\n")[:-1]


def test_first_open_creates_a_private_key_and_publishes_its_public_half(paths: tuple[Path, Path]) -> None:
    archive, key = paths
    led = Ledger(archive, key, clock=FakeClock())
    notes = led.open()
    assert any("created the ledger signing key" in n for n in notes)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (archive / PUBLIC_KEY_FILE).read_bytes() == led.public_key_pem()
    load_public_key(led.public_key_pem())
    first = led.entries()[0]
    assert first["type"] == "key_created" and first["index"] == 0 and first["prev"] == ""
    led.close()
    assert not any(p.name.endswith(".pem") for p in archive.rglob("*") if p.name != "public_key.pem")


def test_entries_are_canonical_hash_chained_lines(ledger: Ledger, paths: tuple[Path, Path]) -> None:
    e1 = ledger.append("viewed", actor="user:ana", where="http:10.0.0.7",
                       data={"recording_id": "r1", "reason": "Zoë"})
    e2 = ledger.append("played", actor="user:ana", outcome="denied", data={"recording_id": "r1"})
    assert (e1["index"], e2["index"]) == (1, 2)
    assert e1["where"] == "http:10.0.0.7" and e2["where"] == "recorder@test"
    assert e1["time"].endswith("Z") and len(e1["time"]) == 24 and e1["time"] < e2["time"]
    lines = raw_lines(paths[0])
    assert lines[1] == canonical_json(e1) and "Zoë".encode() in lines[1]
    assert e2["prev"] == leaf_hash(lines[1]).hex()
    assert ledger.entries(1, 3) == [e1, e2]
    assert ledger.entries(-1) == [e2]


def test_malformed_entries_are_refused_before_anything_is_written(ledger: Ledger, paths: tuple[Path, Path]) -> None:
    before = (paths[0] / ENTRIES_FILE).read_bytes()
    with pytest.raises(ValueError):
        ledger.append("viewed", actor="user:a", outcome="maybe", data={})
    with pytest.raises(ValueError):
        ledger.append("viewed", actor="user:a", data={"x": float("nan")})
    with pytest.raises(TypeError):
        ledger.append("viewed", actor="user:a", data={"x": object()})
    assert (paths[0] / ENTRIES_FILE).read_bytes() == before
    assert ledger.size == 1


def test_entries_survive_a_reopen_and_the_chain_continues(paths: tuple[Path, Path]) -> None:
    led = Ledger(*paths, clock=FakeClock())
    led.open()
    for i in range(5):
        led.append("viewed", actor="user:a", data={"recording_id": "r", "seq": i})
    led.close()
    again = Ledger(*paths, clock=FakeClock())
    assert again.open() == []
    assert again.size == 6
    e = again.append("viewed", actor="user:a", data={"recording_id": "r", "seq": 5})
    assert e["index"] == 6 and e["prev"] == leaf_hash(raw_lines(paths[0])[5]).hex()
    again.close()
    assert verify_archive(paths[0], allow_unanchored=True).failures == []


def test_tree_heads_sign_the_merkle_root_and_skip_when_nothing_is_new(ledger: Ledger, paths: tuple[Path, Path]) -> None:
    for i in range(6):
        ledger.append("viewed", actor="user:a", data={"recording_id": "r", "seq": i})
    sth = ledger.sign_tree_head()
    assert sth is not None and sth["tree_size"] == 7
    assert ledger.sign_tree_head() is None
    assert ledger.latest_sth() == sth
    tree = MerkleTree(leaf_hash(line) for line in raw_lines(paths[0]))
    assert sth["root_hash"] == tree.root().hex()
    key = load_public_key(ledger.public_key_pem())
    assert verify_sth_signature(sth, key)
    key.verify(base64.b64decode(sth["signature"]), sth_message(7, sth["root_hash"], sth["timestamp"]))
    assert not verify_sth_signature({**sth, "tree_size": 6}, key)
    proof = [bytes.fromhex(h) for h in ledger.inclusion_proof(3)]
    assert verify_inclusion(tree.leaf(3), 3, 7, proof, bytes.fromhex(sth["root_hash"]))
    assert json.loads(raw_lines(paths[0], STH_FILE)[-1]) == sth


def test_close_signs_the_uncovered_entries_once(paths: tuple[Path, Path]) -> None:
    led = Ledger(*paths, clock=FakeClock())
    led.open()
    led.append("viewed", actor="user:a", data={})
    led.close()
    led.close()
    sths = [json.loads(line) for line in raw_lines(paths[0], STH_FILE)]
    assert [s["tree_size"] for s in sths] == [2]
    again = Ledger(*paths, clock=FakeClock())
    again.open()
    again.close()  # nothing new: no second tree head
    assert len(raw_lines(paths[0], STH_FILE)) == 1


def test_a_torn_last_line_is_cut_off_and_recorded(paths: tuple[Path, Path]) -> None:
    led = Ledger(*paths, clock=FakeClock())
    led.open()
    led.append("viewed", actor="user:a", data={})
    led.close()
    good = (paths[0] / ENTRIES_FILE).read_bytes()
    with open(paths[0] / ENTRIES_FILE, "ab") as f:
        f.write(b'{"actor":"user:a","data":{"recor')  # the crash hit in the middle of a write
    with open(paths[0] / STH_FILE, "ab") as f:
        f.write(b'{"tree_size":9')
    again = Ledger(*paths, clock=FakeClock())
    notes = again.open()
    assert len(notes) == 2 and "32 bytes" in notes[0] and "14 bytes" in notes[1]
    assert (paths[0] / ENTRIES_FILE).read_bytes().startswith(good)
    repaired = again.entries(2)
    assert [(e["type"], e["outcome"], e["data"]["file"], e["data"]["dropped_bytes"]) for e in repaired] == [
        ("ledger_repaired", "recovered", ENTRIES_FILE, 32), ("ledger_repaired", "recovered", STH_FILE, 14)]
    assert repaired[0]["prev"] == leaf_hash(good.split(b"\n")[-2]).hex()
    again.close()
    assert verify_archive(paths[0], allow_unanchored=True).failures == []


def test_a_write_failure_leaves_no_partial_line(ledger: Ledger, paths: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = (paths[0] / ENTRIES_FILE).read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(LedgerWriteError) as caught:
        ledger.append("viewed", actor="user:a", data={"reason": "y" * 100})
    assert caught.value.errno == errno.ENOSPC  # the caller can tell a full disk from other faults
    assert (paths[0] / ENTRIES_FILE).read_bytes() == before
    monkeypatch.setattr(os, "write", real_write)
    e = ledger.append("viewed", actor="user:a", data={})
    assert e["index"] == 1
    ledger.close()
    assert verify_archive(paths[0], allow_unanchored=True).failures == []


def test_appends_from_many_threads_stay_consecutive(ledger: Ledger, paths: tuple[Path, Path]) -> None:
    def work(t: int) -> None:
        for i in range(25):
            ledger.append("viewed", actor=f"user:{t}", data={"recording_id": "r", "seq": i})
            if i % 10 == 0:
                ledger.sign_tree_head()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert ledger.size == 151
    assert [e["index"] for e in ledger.entries()] == list(range(151))
    ledger.close()
    assert verify_archive(paths[0], allow_unanchored=True).failures == []


def test_an_archive_signed_by_another_key_refuses_to_open(paths: tuple[Path, Path], tmp_path: Path) -> None:
    led = Ledger(*paths, clock=FakeClock())
    led.open()
    led.close()
    other = Ledger(paths[0], tmp_path / "other-keys" / "k.pem", clock=FakeClock())
    with pytest.raises(KeyMismatchError, match="public_key.pem"):
        other.open()
    assert not (tmp_path / "other-keys" / "k.pem").exists()  # no stray key was created
    Ledger(tmp_path / "archive2", paths[1]).open()  # the original key still opens a fresh archive
    other_key = Ledger(tmp_path / "archive3", tmp_path / "k3" / "k.pem")
    other_key.open()
    other_key.close()
    with pytest.raises(KeyMismatchError, match="not the public key"):
        Ledger(paths[0], tmp_path / "k3" / "k.pem").open()


def test_a_second_writer_is_refused_while_the_first_holds_the_ledger(tmp_path: Path) -> None:
    from recordings.ledger import Ledger, LedgerError

    first = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem")
    first.open()
    second = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem")
    with pytest.raises(LedgerError, match="open in another process"):
        second.open()
    first.close()
    second.open()  # once the first is closed, the lock is free
    second.close()
