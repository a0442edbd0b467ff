"""Witnesses and known heads: tree heads kept outside the archive catch rollback and rewritten
history (issue #15, finding 2), whether a witness receives them live or an auditor brings them."""

from __future__ import annotations

import json
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recordings.known_heads import KnownHead, load_known_heads
from recordings.ledger import ENTRIES_FILE, STH_FILE, Ledger, LedgerIntegrityError, load_public_key
from recordings.verify import verify_archive
from recordings.witness import HEADS_FILE, REFUSED_FILE, WitnessHTTPServer, WitnessStore
from recordings.witness_client import WitnessSender, fetch_latest
from tests.recordings.test_ledger import FakeClock
from tests.recordings.test_ledger_startup import drop_heads_from, forge_entry
from tests.recordings.test_verify import _resign_with, build_archive


def grow(led: Ledger, n: int, sign_every: int = 3) -> list[dict[str, Any]]:
    heads = []
    for i in range(n):
        led.append("viewed", actor="user:ana", data={"recording_id": f"rec-{led.size}"})
        if i % sign_every == sign_every - 1:
            sth = led.sign_tree_head()
            assert sth is not None
            heads.append(sth)
    return heads


def test_a_store_keeps_consistent_heads_and_refuses_the_rest(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem", clock=FakeClock())
    led.open()
    key = load_public_key(led.public_key_pem())
    heads = grow(led, 12)
    store = WitnessStore(tmp_path / "witness")
    first, second, third = heads[0], heads[1], heads[3]
    assert store.submit(first, None, [], key=key).status == "kept"
    assert store.submit(second, None, []).status == "need_proof"  # it must prove it extends size 4
    proof = led.consistency_proof(first["tree_size"], second["tree_size"])
    assert store.submit(second, first["tree_size"], proof).status == "kept"
    assert store.submit(second, None, []).reason == "already held"
    wrong = led.consistency_proof(first["tree_size"], third["tree_size"])  # from the wrong size
    assert store.submit(third, second["tree_size"], wrong).status == "refused"
    assert store.submit(first, None, []).reason == "already held"  # an older head it holds is fine
    other = Ledger(tmp_path / "other", tmp_path / "keys2" / "k.pem", clock=FakeClock())
    other.open()
    stranger = grow(other, 9)[-1]
    assert "not a valid tree head of this witness's key" in store.submit(stranger, 7, []).reason
    assert [h["tree_size"] for h in store.heads()] == [first["tree_size"], second["tree_size"]]
    refused = (tmp_path / "witness" / REFUSED_FILE).read_text().splitlines()
    assert len(refused) == 2 and "consistency proof fails" in json.loads(refused[0])["reason"]


def test_the_sender_delivers_every_head_and_a_rolled_back_ledger_is_refused(tmp_path: Path) -> None:
    """Two witnesses: a directory and an HTTP endpoint (``dispatch-audit witness serve``)."""
    led = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem", clock=FakeClock())
    led.open()
    key = load_public_key(led.public_key_pem())
    server = WitnessHTTPServer(("127.0.0.1", 0), WitnessStore(tmp_path / "http-witness", key))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/heads"
    refusals: list[tuple[str, str]] = []
    targets = [str(tmp_path / "dir-witness"), url]
    (tmp_path / "dir-witness").mkdir()
    sender = WitnessSender(targets, led, key, lambda t, r: refusals.append((t, r)))
    sender.start()
    try:
        for sth in grow(led, 10):
            sender.signed(sth)
        sender.close()
        assert refusals == []
        assert sender.delivered == {t: 10 for t in targets}
        assert fetch_latest(url) == fetch_latest(targets[0]) == led.latest_sth()
        led.close()

        # The archive is rolled back to size 6 and grows a different history from there.
        archive = tmp_path / "archive"
        lines = (archive / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
        (archive / ENTRIES_FILE).write_bytes(b"".join(lines[:6]))
        drop_heads_from(archive, 7)
        again = Ledger(archive, tmp_path / "keys" / "k.pem", clock=FakeClock())
        again.open()
        forked = grow(again, 9)
        sender = WitnessSender(targets, again, key, lambda t, r: refusals.append((t, r)))
        sender.start()
        sender.signed(forked[-1])
        sender.close()
        assert sorted(t for t, _ in refusals) == sorted(targets)
        assert all("history was rewritten" in r or "inconsistent" in r for _, r in refusals), refusals
        assert [h["tree_size"] for h in WitnessStore(Path(targets[0])).heads()][-1] == 10  # kept what it had
    finally:
        server.shutdown()
        server.server_close()


def test_a_ledger_that_does_not_extend_a_witness_head_is_refused_at_open(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem", clock=FakeClock())
    led.open()
    heads = grow(led, 9)
    led.close()
    lines = (tmp_path / "archive" / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
    (tmp_path / "archive" / ENTRIES_FILE).write_bytes(b"".join(lines[:5]))
    drop_heads_from(tmp_path / "archive", 6)
    with pytest.raises(LedgerIntegrityError, match="witness w1 holds a tree head of 10 entries but the ledger holds 5"):
        Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem").open(anchors=[("w1", heads[-1])])
    forged = Ledger(tmp_path / "archive", tmp_path / "keys" / "k.pem")
    forged.open()  # without the witness nothing remembers: it opens
    forged.close()


def known(sth: dict[str, Any]) -> list[KnownHead]:
    return [KnownHead("kept", sth)]


def test_known_heads_catch_rollback_rewritten_history_and_resigning(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(10), recordings=2, segments=3)  # heads at 3, 5, 11, 13
    archive = built.archive
    heads = [json.loads(x) for x in (archive / STH_FILE).read_bytes().splitlines()]
    newest, early = heads[-1], heads[0]
    ok = verify_archive(archive, known_heads=known(newest) + known(early))
    assert ok.failures == [] and ok.known_heads_proven == 2
    assert "unanchored" not in [w.kind for w in ok.warnings]  # the known heads anchor it

    copy = tmp_path / "rolled"
    shutil.copytree(archive, copy)
    lines = (copy / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
    (copy / ENTRIES_FILE).write_bytes(b"".join(lines[:early["tree_size"]]))
    drop_heads_from(copy, early["tree_size"] + 1)
    for rel in built.segments:
        if not any(rel.encode() in line for line in lines[:early["tree_size"]]):
            (copy / rel).unlink(missing_ok=True)  # the files sealed after it go too
    assert verify_archive(copy, built.public_pem).failures == []  # finding 2: pinned key alone says OK
    rolled = verify_archive(copy, built.public_pem, known_heads=known(newest))
    assert [(f.kind, f.item) for f in rolled.failures] == [("rolled_back", "known head kept")]

    rewritten = tmp_path / "rewritten"
    shutil.copytree(archive, rewritten)
    forge_entry(rewritten, early["tree_size"] + 1, "user:someone-else")
    drop_heads_from(rewritten, early["tree_size"] + 2)
    resigned = Ledger(rewritten, built.key_path)  # what a server without checkpoint or witness does
    resigned.open()
    resigned.close()  # signs a tree head over the forged history
    assert verify_archive(rewritten, built.public_pem).failures == []  # finding 1: re-signed, it verifies
    caught = verify_archive(rewritten, built.public_pem, known_heads=known(newest))
    assert [f.kind for f in caught.failures] == ["inconsistent"]

    resigned_dir = tmp_path / "resigned"
    shutil.copytree(archive, resigned_dir)
    _resign_with(resigned_dir, Ed25519PrivateKey.generate())
    unpinned = verify_archive(resigned_dir, known_heads=known(newest))
    assert "bad_signature" in [f.kind for f in unpinned.failures if f.item == "known head kept"]


def test_known_heads_load_from_files_packages_directories(tmp_path: Path) -> None:
    built = build_archive(tmp_path, random.Random(12), recordings=1, segments=2)
    sth_file = built.archive / STH_FILE
    assert all(h.source.startswith(str(sth_file)) for h in load_known_heads(str(sth_file)))
    assert len(load_known_heads(str(built.archive))) == len(sth_file.read_bytes().splitlines())
    one = tmp_path / "one.json"
    one.write_text(sth_file.read_text().splitlines()[-1])
    assert [h.source for h in load_known_heads(str(one))] == [str(one)]
    store = WitnessStore(tmp_path / "w", load_public_key(built.public_pem))
    store.submit(json.loads(one.read_text()), None, [])
    assert (tmp_path / "w" / HEADS_FILE).is_file() and len(load_known_heads(str(tmp_path / "w"))) == 1
