"""Applied-instruction log: one JSON line per instruction, deduplicated across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from field_client.applied_log import AppliedLog


async def test_instruction_is_recorded_once_with_its_shape(tmp_path: Path) -> None:
    path = tmp_path / "applied.jsonl"
    log = await AppliedLog.open(path, clock=lambda: 1_700_000_000.25)
    assert await log.record("ins-1", "goto") is True
    assert await log.record("ins-1", "goto") is False
    assert await log.record(2, "recall") is True
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"id": "ins-1", "type": "goto", "applied_at": "2023-11-14T22:13:20.250000Z"},
        {"id": 2, "type": "recall", "applied_at": "2023-11-14T22:13:20.250000Z"},
    ]


async def test_ids_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "applied.jsonl"
    first = await AppliedLog.open(path)
    await first.record("ins-1", "goto")
    await first.record(7, "recall")

    second = await AppliedLog.open(path)
    assert "ins-1" in second and 7 in second
    assert "7" not in second  # ids keep their JSON type
    assert await second.record("ins-1", "goto") is False
    assert await second.record("ins-2", "goto") is True
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


async def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "applied.jsonl"
    path.write_text('{"id": "a", "type": "t", "applied_at": "x"}\n{"id": "b", "ty', encoding="utf-8")
    log = await AppliedLog.open(path)
    assert "a" in log and "b" not in log and len(log) == 1
