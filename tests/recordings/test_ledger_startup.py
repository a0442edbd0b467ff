"""The ledger's start-up check: a history the server did not write is refused, never signed over.

Finding 1 of issue #15: edit an entry (a party's ``downloaded`` entry, actor changed), rewrite
every later ``prev``, delete the tree heads that cover it. The chain is intact again and every
remaining tree head verifies; only the checkpoint kept outside the archive remembers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recordings.checkpoint import read_checkpoint
from recordings.ledger import ENTRIES_FILE, STH_FILE, Ledger, LedgerIntegrityError, canonical_json
from recordings.merkle import leaf_hash
from tests.recordings.test_ledger import FakeClock


def build(root: Path, n: int = 40, sign_every: int = 5) -> Ledger:
    led = Ledger(root / "archive", root / "keys" / "k.pem", clock=FakeClock(),
                 checkpoint_path=root / "keys" / "checkpoints" / "a.json")
    led.open()
    for i in range(n):
        if i == 27:
            led.append("downloaded", actor="party:张三@(2026)冀0916执123号", where="http:10.0.0.9",
                       data={"request_id": "fr-0123456789ab", "link_id": "ln-0123456789ab", "what": "package"})
        else:
            led.append("viewed", actor="user:ana", where="http:10.0.0.7", data={"recording_id": f"rec-{i}"})
        if i % sign_every == sign_every - 1:
            led.sign_tree_head()
    led.close()
    return led


def reopen(root: Path) -> Ledger:
    led = Ledger(root / "archive", root / "keys" / "k.pem", clock=FakeClock(),
                 checkpoint_path=root / "keys" / "checkpoints" / "a.json")
    led.open()
    return led


def forge_entry(archive: Path, index: int, actor: str) -> None:
    """Change entry ``index``'s actor and rewrite every later ``prev`` so the chain holds again."""
    path = archive / ENTRIES_FILE
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    entries[index]["actor"] = actor
    lines: list[bytes] = []
    for i, e in enumerate(entries):
        if i:
            e["prev"] = leaf_hash(lines[-1]).hex()
        lines.append(canonical_json(e))
    path.write_bytes(b"".join(x + b"\n" for x in lines))


def drop_heads_from(archive: Path, size: int) -> None:
    """Delete every tree head that covers entry ``size - 1`` or later."""
    path = archive / STH_FILE
    keep = [line for line in path.read_bytes().splitlines() if json.loads(line)["tree_size"] < size]
    path.write_bytes(b"".join(x + b"\n" for x in keep))


def test_finding_1_a_rewritten_and_rechained_history_is_refused_and_not_signed(tmp_path: Path) -> None:
    build(tmp_path)
    archive = tmp_path / "archive"
    forge_entry(archive, 27, "party:李四@(2026)冀0916执123号")
    drop_heads_from(archive, 28)
    before = {p: (archive / p).read_bytes() for p in (ENTRIES_FILE, STH_FILE)}
    with pytest.raises(LedgerIntegrityError) as caught:
        reopen(tmp_path)
    text = str(caught.value)
    assert "tree heads were removed or altered" in text
    assert "history was rewritten" in text
    assert {p: (archive / p).read_bytes() for p in before} == before  # nothing appended, nothing signed


def test_without_the_checkpoint_the_same_forgery_still_fails_if_a_tree_head_covers_it(tmp_path: Path) -> None:
    build(tmp_path)
    archive = tmp_path / "archive"
    forge_entry(archive, 27, "party:李四@(2026)冀0916执123号")
    (tmp_path / "keys" / "checkpoints" / "a.json").unlink()
    with pytest.raises(LedgerIntegrityError, match=r"tree head 6 .*: its signed root is not the Merkle root"):
        reopen(tmp_path)


def test_a_rollback_to_an_earlier_tree_head_is_refused(tmp_path: Path) -> None:
    build(tmp_path)
    archive = tmp_path / "archive"
    entries = (archive / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
    (archive / ENTRIES_FILE).write_bytes(b"".join(entries[:20]))
    drop_heads_from(archive, 21)
    with pytest.raises(LedgerIntegrityError, match="entries were removed"):
        reopen(tmp_path)


def test_a_flipped_byte_in_an_old_tree_head_is_refused(tmp_path: Path) -> None:
    build(tmp_path)
    path = tmp_path / "archive" / STH_FILE
    data = bytearray(path.read_bytes())
    data[30] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerIntegrityError, match="tree heads were removed or altered"):
        reopen(tmp_path)


def test_a_foreign_line_after_the_checkpoint_is_refused(tmp_path: Path) -> None:
    build(tmp_path)
    path = tmp_path / "archive" / ENTRIES_FILE
    last = json.loads(path.read_bytes().splitlines()[-1])
    forged = {**last, "index": last["index"] + 1, "prev": leaf_hash(canonical_json(last)).hex(), "actor": "user:x"}
    with path.open("ab") as f:
        f.write(json.dumps(forged).encode() + b"\n")  # not canonical: not written by the ledger
    with pytest.raises(LedgerIntegrityError, match="not in canonical form"):
        reopen(tmp_path)


def test_a_start_checks_only_what_came_after_the_checkpoint(tmp_path: Path) -> None:
    build(tmp_path, n=40, sign_every=5)
    led = reopen(tmp_path)
    assert led.checked == (0, 0)  # everything was verified before: root and hash stand for it
    for i in range(7):
        led.append("viewed", actor="user:ana", data={"recording_id": f"more-{i}"})
    led.sign_tree_head()
    led.append("viewed", actor="user:ana", data={"recording_id": "uncovered"})
    led._close_files()  # a crash: no final tree head, the checkpoint is from the last signature
    again = reopen(tmp_path)
    assert again.checked == (1, 0)  # the one entry after the last signature
    checkpoint = read_checkpoint(tmp_path / "keys" / "checkpoints" / "a.json")
    assert checkpoint is not None and checkpoint.entries == again.size == 49  # key_created, 40, 7, 1
    again.close()


def test_a_ledger_without_checkpoint_is_checked_in_full_and_gets_one(tmp_path: Path) -> None:
    build(tmp_path)
    (tmp_path / "keys" / "checkpoints" / "a.json").unlink()
    led = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem", clock=FakeClock(),
                 checkpoint_path=tmp_path / "keys" / "checkpoints" / "a.json")
    notes = led.open()
    assert any("no checkpoint" in n for n in notes)
    assert led.checked == (41, 8)  # key_created and 40 entries; a head every 5 (the last covers all)
    assert read_checkpoint(tmp_path / "keys" / "checkpoints" / "a.json") is not None
    led.close()


def test_the_checkpoint_of_another_archive_is_refused(tmp_path: Path) -> None:
    build(tmp_path)
    other = Ledger(tmp_path / "other", tmp_path / "keys" / "k.pem", clock=FakeClock(),
                   checkpoint_path=tmp_path / "keys" / "checkpoints" / "a.json")
    with pytest.raises(LedgerIntegrityError, match="belongs to the archive"):
        other.open()
