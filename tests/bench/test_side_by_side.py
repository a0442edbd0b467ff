"""bench.side_by_side and the process plumbing of bench.relay: cores, flags, medians and targets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import relay
from bench.side_by_side import (
    ForwardSetup,
    Pinning,
    media_settings,
    parse_args,
    summarize,
    table,
    verdicts,
    with_worker_shares,
)


def test_server_gets_the_first_usable_core_and_load_generators_the_rest() -> None:
    pinning = Pinning.plan({3, 1, 2})
    assert (pinning.server, pinning.load, pinning.note) == (frozenset({1}), frozenset({2, 3}), "")
    alone = Pinning.plan({5})
    assert alone.server == alone.load == frozenset({5})
    assert "only 1 usable core" in alone.note and "not comparable" in alone.describe()
    with pytest.raises(ValueError):
        Pinning.plan(set())


def test_a_child_runs_only_on_the_cores_it_was_given_and_is_measured_with_its_children() -> None:
    core = min(os.sched_getaffinity(0))
    script = ("import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)), flush=True); "
              "child = subprocess.Popen([sys.executable, '-c', 'import sys; print(1, flush=True); sys.stdin.read()'], "
              "stdin=subprocess.PIPE, stdout=subprocess.PIPE); child.stdout.readline(); "  # its interpreter is up
              "print(child.pid, flush=True); sys.stdin.read(); child.stdin.close(); "
              "child.wait()")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=relay._child_setup(frozenset({core})))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == f"[{core}]"
        grandchild = int(proc.stdout.readline())
        assert os.sched_getaffinity(grandchild) == {core}  # inherited
        assert relay.process_tree(proc.pid) == [proc.pid, grandchild]
        assert relay.tree_rss_mb(proc.pid) > relay.tree_rss_mb(grandchild) > 1.0
        assert relay.tree_cpu_s(proc.pid) >= relay.process_cpu_s(proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_arguments_and_their_limits(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["--quick", "--engine", "packets", "--workers", "2", "--without", "mediarelay"], "d")
    assert (args.quick, args.engine, args.workers, args.without, args.rounds) == (True, "packets", 2, ["mediarelay"],
                                                                                 None)
    assert parse_args([], "d").out == "bench/results/relay.json"
    bad_ones = (["--engine", "x"], ["--max-units", "3"], ["--rounds", "0"], ["--workers", "0"],
                ["--without", "forward"])
    for bad in bad_ones:
        with pytest.raises(SystemExit):
            parse_args(bad, "d")
    assert "usage" in capsys.readouterr().err


def test_engine_and_workers_are_passed_only_to_a_server_that_has_those_settings() -> None:
    old = ForwardSetup.make("packets", 2, known={"publisher_timeout_s"})
    assert (old.env, old.engine, old.workers) == ({}, "frames", 0)
    assert any("--engine packets: not available" in n for n in old.notes)
    assert any("--workers 2: not available" in n for n in old.notes)
    new = ForwardSetup.make("packets", 2, known={"engine", "workers"})
    assert new.env == {"DISPATCH_MEDIA__ENGINE": "packets"} and new.engine == "packets" and new.notes == ()
    assert new.worker_env() == {"DISPATCH_MEDIA__ENGINE": "packets", "DISPATCH_MEDIA__WORKERS": "2"}
    # This checkout's own server: the line says "not available" exactly when it lacks the setting.
    line = ForwardSetup.make(None, None).multi_worker_line()
    assert ("not available" in line) == ("workers" not in media_settings())


def _step(units: int, cpu: float, on_time: float, latency: float) -> dict[str, object]:
    return {"units": units, "target_units": units, "per_unit_cpu_pct": cpu, "server_cpu_pct": cpu * units,
            "server_rss_mb": 30.0 + units, "rss_per_unit_mb": 1.0, "delivered_min": on_time, "delivered_median": 1.0,
            "audio_received_min": 1.0, "audio_received_median": 1.0, "latency_all_p95_s": latency,
            "publisher_fps_min": 30.0, "loadgen_cpu_pct": [20.0, 10.0], "others_cpu_pct": 0.0,
            "machine_steal_pct": 0.0}


def test_medians_over_rounds_ratios_and_targets() -> None:
    rounds = [{"server": "forward", "steps": [_step(24, c, 0.995, 0.040)]} for c in (0.9, 1.2, 1.0)]
    rounds += [{"server": "janus", "steps": [_step(24, c, 1.0, 0.036)]} for c in (0.5, 0.4, 0.6)]
    summary = summarize(rounds, floor_p95_s=0.035)
    row = summary["units_24"]
    assert row["forward"]["cpu_per_unit_pct"] == 1.0 and row["janus"]["cpu_per_unit_pct"] == 0.5
    assert row["forward_over_janus"] == 2.0 and "forward_over_mediarelay" not in row
    assert row["forward"]["added_latency_p95_s"] == pytest.approx(0.005)
    assert row["forward"]["loadgen_cpu_pct"] == 30.0
    late = {"forward": {"p95_s": 0.6}}
    targets = verdicts(summary, late, ForwardSetup.make(None, None, known=set()), recording=False)
    assert targets["cpu_per_unit"]["pass"] is True and "recording off" in targets["cpu_per_unit"]["target"]
    assert targets["cpu_per_unit_vs_janus"]["pass"] is False
    assert "Janus not recording" in targets["cpu_per_unit_vs_janus"]["target"]
    recording = verdicts(summary, late, ForwardSetup.make(None, None, known=set()), recording=True,
                         janus_records=True)["cpu_per_unit_vs_janus"]["target"]
    assert "like with like, not the issue's condition" in recording
    assert targets["units_24_on_time"]["pass"] is True
    assert targets["late_viewer_p95"]["pass"] is False
    assert targets["added_latency_p95"]["pass"] is True
    assert targets["two_workers"]["pass"] is None
    assert ("not available" in targets["two_workers"]["note"]) == ("workers" not in media_settings())
    lines = table(summary, ["forward", "janus"])
    assert any("forward/janus 2.0x" in line for line in lines) and len(lines) == 4


def test_steps_where_the_load_generators_saturate_are_flagged_and_latency_judged_below_them() -> None:
    rounds = [{"server": "forward", "steps": [_step(8, 3.0, 1.0, 0.040), _step(24, 3.0, 0.0, 6.0)]}]
    rounds[0]["steps"][1]["loadgen_cpu_pct"] = [50.0, 49.0]  # type: ignore[index]
    targets = verdicts(summarize(rounds, floor_p95_s=0.035), {}, ForwardSetup.make(None, None, known=set()),
                       recording=True, load_cores=1)
    on_time = targets["units_24_on_time"]
    assert on_time["pass"] is False and "99.0% of their 1 core" in on_time["note"]
    latency = targets["added_latency_p95"]
    assert latency["at_units"] == 8 and latency["pass"] is True and latency["at_largest"] == pytest.approx(5.965)
    assert "judged at 8 units" in latency["note"]
    assert targets["late_viewer_p95"]["pass"] is None  # no late viewers measured
    assert targets["cpu_per_unit"]["target"].endswith("(recording on)")


def test_two_workers_are_judged_by_the_busiest_workers_cpu_per_unit() -> None:
    rounds = [{"server": "forward", "steps": [_step(8, 1.0, 1.0, 0.040)]}]
    multi = _step(8, 1.3, 1.0, 0.040)  # the whole tree, front included
    workers = [{"pid": 11, "units": 4, "per_unit_cpu_pct": 1.05}, {"pid": 12, "units": 4, "per_unit_cpu_pct": 1.08}]
    multi["workers"] = workers
    rounds.append({"server": "forward-workers", "steps": [multi]})
    summary = summarize(rounds, floor_p95_s=0.035)
    assert summary["units_8"]["forward-workers"]["worker_cpu_per_unit_pct"] == 1.08
    setup = ForwardSetup.make(None, 2, known={"workers"})
    two = verdicts(summary, {}, setup, recording=False)["two_workers"]
    assert two["pass"] is True and two["measured"] == pytest.approx(0.08) and two["tree_cpu_per_unit_pct"] == 1.3
    workers[1]["per_unit_cpu_pct"] = 1.2
    two = verdicts(summarize(rounds, floor_p95_s=0.035), {}, setup, recording=False)["two_workers"]
    assert two["pass"] is False and two["measured"] == pytest.approx(0.2)

    # With the single process also measured at a worker's share (4 of 8 units), the worker is
    # compared with it: the same units per process; the all-units figure stays beside it.
    rounds[0] = {"server": "forward", "steps": [_step(4, 1.15, 1.0, 0.040), _step(8, 1.0, 1.0, 0.040)]}
    two = verdicts(summarize(rounds, floor_p95_s=0.035), {}, setup, recording=False)["two_workers"]
    assert two["compared_with"] == "one process with 4 units" and two["single_cpu_per_unit_pct"] == 1.15
    assert two["pass"] is True and two["measured"] == pytest.approx(1.2 / 1.15 - 1, abs=1e-3)
    assert two["drift_against_all_units"] == pytest.approx(0.2) and "+20.0%" in two["note"]
    assert with_worker_shares((1, 8, 24), 2) == (1, 4, 8, 12, 24)
    workers[1]["per_unit_cpu_pct"] = 1.3
    two = verdicts(summarize(rounds, floor_p95_s=0.035), {}, setup, recording=False)["two_workers"]
    assert two["pass"] is False
