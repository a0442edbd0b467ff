"""bench/dataplane.py's in-process part runs and reports both paths (a small count)."""

from __future__ import annotations

import pytest

from bench import dataplane


def test_the_in_process_comparison_reports_both_paths(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(dataplane, "PACKETS", 300)
    assert dataplane.main(["--rounds", "1", "--micro-only"]) == 0
    out = capsys.readouterr().out
    assert "in process, datagram to two viewers: native" in out
    assert "in process, fan-out to two viewers: native" in out
    assert "in process, recorder's assembly, VP8: native" in out and "µs/frame" in out
    assert "in process, recorder's assembly, Opus: native" in out
    assert "native/python" in out and "server" not in out
