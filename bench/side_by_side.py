"""The pieces of ``bench.relay``'s side-by-side run that are plain computation: which cores the
server and the load generators get, which ``[media]`` settings the forward server can be given,
the medians and ratios over rounds, the issue's targets, and the printed table.

Nothing here starts a process or reads a clock, so the tests can check it directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from dispatch_server.config import ENV_PREFIX, MediaConfig

SERVERS = ("forward", "janus", "mediarelay")
REFERENCES = ("janus", "mediarelay")  # what the forward server's figures are divided by

# Issue #16's targets (in the benchmark, not in timed tests).
TARGET_CPU_PER_UNIT_PCT = 1.0  # % of one core per unit, video + audio, 2 viewers, recording on
TARGET_UNITS = 24
TARGET_ON_TIME = 0.99
TARGET_LATE_P95_S = 0.5
TARGET_ADDED_LATENCY_P95_S = 0.020
TARGET_WORKER_DRIFT = 0.10  # with 2 workers, each worker's CPU per unit within 10% of one worker's


# --- cores ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pinning:
    """Server on one core, load generators on the others; both on everything when there is one."""

    server: frozenset[int]
    load: frozenset[int]
    note: str = ""  # said in the output when the machine cannot separate them

    @classmethod
    def plan(cls, cores: set[int] | frozenset[int] | None = None) -> Pinning:
        usable = sorted(os.sched_getaffinity(0) if cores is None else cores)
        if not usable:
            raise ValueError("no usable core")
        if len(usable) < 2:
            return cls(frozenset(usable), frozenset(usable),
                       f"only {len(usable)} usable core ({usable}): server and load generators share it, "
                       "so the figures mix their CPU and are not comparable with a 2-core run")
        return cls(frozenset(usable[:1]), frozenset(usable[1:]))

    def describe(self) -> str:
        text = f"server on core(s) {sorted(self.server)}, load generators on {sorted(self.load)}"
        return f"{text} ({self.note})" if self.note else text


# --- the forward server's [media] settings ------------------------------------------------------

def media_settings() -> set[str]:
    """The ``[media]`` keys this checkout's server accepts."""
    return {f.name for f in dataclasses.fields(MediaConfig)}


@dataclass(frozen=True)
class ForwardSetup:
    """What the forward server is asked to run, and what it actually can."""

    env: dict[str, str]  # DISPATCH_MEDIA__* passed to the forward server
    engine: str  # what it runs, as far as its configuration says
    workers: int  # media worker processes the multi-worker server runs (0: not measured)
    notes: tuple[str, ...]

    @classmethod
    def make(cls, engine: str | None, workers: int | None, known: set[str] | None = None) -> ForwardSetup:
        known = media_settings() if known is None else known
        env: dict[str, str] = {}
        notes: list[str] = []
        if "engine" in known:
            ran = engine or "(the server's default)"
            if engine:
                env[f"{ENV_PREFIX}MEDIA__ENGINE"] = engine
        else:
            ran = "frames"
            if engine and engine != "frames":
                notes.append(f"--engine {engine}: not available (this server has no [media] engine setting; "
                             "it ran its only engine, frames)")
        run_workers = 0
        if workers:
            if "workers" in known:
                run_workers = workers
            else:
                notes.append(f"--workers {workers}: not available (this server has no [media] workers setting, "
                             "issue #16 item 3)")
        return cls(env, ran, run_workers, tuple(notes))

    def worker_env(self) -> dict[str, str]:
        return {**self.env, f"{ENV_PREFIX}MEDIA__WORKERS": str(self.workers)}

    def multi_worker_line(self) -> str:
        if self.workers:
            return f"multi-worker figure: measured with {self.workers} workers (see 'forward-workers')"
        if "workers" not in media_settings():
            return "multi-worker figure: not available (the server has no [media] workers setting: issue #16 item 3 " \
                   "is not built)"
        return "multi-worker figure: not measured (pass --workers 2)"


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=description)
    parser.add_argument("--quick", action="store_true",
                        help="one round, 1 and 4 units (MediaRelay 1), short windows: a smoke run of a few minutes")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the side-by-side (default 3; quick 1)")
    parser.add_argument("--engine", choices=("packets", "frames"), default=None,
                        help="DISPATCH_MEDIA__ENGINE for the forward server (when it has that setting)")
    parser.add_argument("--workers", type=int, default=None,
                        help="also measure the forward server with DISPATCH_MEDIA__WORKERS=N (if it has that setting)")
    parser.add_argument("--recording", action="store_true", help="the forward server records every unit")
    parser.add_argument("--janus-records", action="store_true",
                        help="Janus records every unit too (VideoRoom record: .mjr files of raw RTP)")
    parser.add_argument("--without", action="append", default=[], choices=SERVERS[1:],
                        help="leave a reference server out (repeatable)")
    parser.add_argument("--ramp", action="store_true",
                        help="afterwards, the unit ramp on the forward server (the largest unit count it carries)")
    parser.add_argument("--max-units", type=int, default=60, help="largest ramp step (default 60)")
    parser.add_argument("--out", default="bench/results/relay.json", help="JSON results (default %(default)s)")
    args = parser.parse_args(argv)
    if not 4 <= args.max_units <= 200:
        parser.error("--max-units must be within 4..200")
    if args.rounds is not None and not 1 <= args.rounds <= 9:
        parser.error("--rounds must be within 1..9")
    if args.workers is not None and not 1 <= args.workers <= 64:
        parser.error("--workers must be within 1..64")
    return args


# --- medians, ratios, targets -------------------------------------------------------------------

def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def summarize(rounds: list[dict[str, Any]], floor_p95_s: float | None) -> dict[str, Any]:
    """Per unit count, per server: medians over the rounds; then the forward server's ratios."""
    by: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for entry in rounds:
        for step in entry["steps"]:
            by.setdefault(step.get("target_units", step["units"]), {}).setdefault(entry["server"], []).append(step)
    out: dict[str, Any] = {}
    for n in sorted(by):
        row: dict[str, Any] = {}
        for server, steps in by[n].items():
            added = [s["latency_all_p95_s"] - floor_p95_s for s in steps
                     if s.get("latency_all_p95_s") is not None and floor_p95_s is not None]
            row[server] = {
                "rounds": len(steps),
                "cpu_per_unit_pct": _median([s["per_unit_cpu_pct"] for s in steps]),
                "cpu_per_unit_pct_rounds": [s["per_unit_cpu_pct"] for s in steps],
                "server_cpu_pct": _median([s["server_cpu_pct"] for s in steps]),
                "rss_mb": _median([s["server_rss_mb"] for s in steps]),
                "rss_per_unit_mb": _median([s["rss_per_unit_mb"] for s in steps]),
                "on_time_min": _median([s["delivered_min"] for s in steps]),
                "on_time_min_worst_round": min((s["delivered_min"] for s in steps if s["delivered_min"] is not None),
                                               default=None),
                "on_time_median": _median([s["delivered_median"] for s in steps]),
                "audio_received_min": _median([s["audio_received_min"] for s in steps]),
                "audio_received_median": _median([s["audio_received_median"] for s in steps]),
                "latency_p95_s": _median([s["latency_all_p95_s"] for s in steps]),
                "added_latency_p95_s": _median(added),
                "publisher_fps_min": _median([s["publisher_fps_min"] for s in steps]),
                "loadgen_cpu_pct": _median([sum(s["loadgen_cpu_pct"]) for s in steps]),
                "others_cpu_pct": _median([s["others_cpu_pct"] for s in steps]),
                "steal_pct": _median([s["machine_steal_pct"] for s in steps]),
            }
            worst = [max(w["per_unit_cpu_pct"] for w in s["workers"] if w["per_unit_cpu_pct"] is not None)
                     for s in steps if any(w["per_unit_cpu_pct"] is not None for w in s.get("workers", []))]
            if worst:  # media workers: the busiest worker's CPU per unit (medians over the rounds)
                row[server]["worker_cpu_per_unit_pct"] = _median(worst)
                row[server]["worker_cpu_per_unit_pct_rounds"] = worst
        forward = row.get("forward", {}).get("cpu_per_unit_pct")
        for ref in REFERENCES:
            theirs = row.get(ref, {}).get("cpu_per_unit_pct")
            if forward and theirs:
                row[f"forward_over_{ref}"] = round(forward / theirs, 2)
        out[f"units_{n}"] = row
    return out


def with_worker_shares(units: Sequence[int], workers: int) -> tuple[int, ...]:
    """``units`` and each one's share per worker: the single process is measured at those too, so
    that a worker carrying 12 of 24 units is compared with one process carrying 12."""
    return tuple(sorted(set(units) | {n // workers for n in units if workers and n // workers > 0}))


LOADGEN_SATURATED = 0.9  # of the load generators' cores: above this they, not the server, set the pace


def verdicts(summary: dict[str, Any], late: dict[str, Any], setup: ForwardSetup,
             recording: bool, load_cores: int = 1, janus_records: bool = False) -> dict[str, Any]:
    """The issue's targets against this run's forward server; ``pass`` None when not measured.

    Steps where the load generators used more than :data:`LOADGEN_SATURATED` of their cores are
    flagged: their frames on time and latency measure the load generators as much as the server
    (the reference servers show the same figures there). The added latency is judged at the
    largest step where the load generators kept up."""
    def at(n: int, server: str, key: str) -> Any:
        return summary.get(f"units_{n}", {}).get(server, {}).get(key)

    def saturated(n: int) -> bool:
        load = at(n, "forward", "loadgen_cpu_pct")
        return load is not None and load >= LOADGEN_SATURATED * 100 * load_cores

    counts = sorted(int(k.split("_")[1]) for k in summary if summary[k].get("forward"))
    largest = max(counts, default=0)
    kept_up = max((n for n in counts if not saturated(n)), default=0)
    cpu = at(largest, "forward", "cpu_per_unit_pct")
    janus = at(largest, "janus", "cpu_per_unit_pct")
    on_time = at(TARGET_UNITS, "forward", "on_time_min")
    p95 = late.get("forward", {}).get("p95_s")
    added = at(kept_up, "forward", "added_latency_p95_s")
    condition = "recording on" if recording else "recording off (the target is with recording on)"
    janus_condition = ("Janus recording too: like with like, not the issue's condition (Janus not recording)"
                       if janus_records else "Janus not recording")
    out: dict[str, Any] = {
        "cpu_per_unit": {"target": f"<= {TARGET_CPU_PER_UNIT_PCT:g}% of one core ({condition})",
                         "measured": cpu, "at_units": largest,
                         "pass": None if cpu is None else cpu <= TARGET_CPU_PER_UNIT_PCT},
        "cpu_per_unit_vs_janus": {"target": f"<= Janus in the same run (stretch; {janus_condition})",
                                  "measured": cpu, "janus": janus,
                                  "pass": None if cpu is None or janus is None else cpu <= janus},
        "units_24_on_time": {"target": f"{TARGET_UNITS} units, every viewer >= {TARGET_ON_TIME:.0%} on time",
                             "measured": on_time, "janus": at(TARGET_UNITS, "janus", "on_time_min"),
                             "pass": None if on_time is None else on_time >= TARGET_ON_TIME},
        "late_viewer_p95": {"target": f"< {TARGET_LATE_P95_S:g} s", "measured": p95,
                            "pass": None if "p95_s" not in late.get("forward", {}) else
                            p95 is not None and p95 < TARGET_LATE_P95_S},
        "added_latency_p95": {"target": f"< {TARGET_ADDED_LATENCY_P95_S * 1000:g} ms", "measured": added,
                              "at_units": kept_up, "at_largest": at(largest, "forward", "added_latency_p95_s"),
                              "pass": None if added is None else added < TARGET_ADDED_LATENCY_P95_S},
        "two_workers": {"target": f"each worker's CPU per unit within {TARGET_WORKER_DRIFT:.0%} of one worker's",
                        "measured": None, "pass": None, "note": setup.multi_worker_line()},
    }
    if saturated(TARGET_UNITS):
        out["units_24_on_time"]["note"] = (
            f"the load generators used {at(TARGET_UNITS, 'forward', 'loadgen_cpu_pct')}% of their "
            f"{load_cores} core(s) at {TARGET_UNITS} units: the figure measures them as much as the server "
            "(see Janus's figure beside it)")
    if kept_up != largest:
        out["added_latency_p95"]["note"] = (f"judged at {kept_up} units, the largest step where the load "
                                            f"generators kept up; at {largest} units they were saturated")
    if setup.workers:
        multi = at(largest, "forward-workers", "worker_cpu_per_unit_pct")
        tree = at(largest, "forward-workers", "cpu_per_unit_pct")
        share = largest // setup.workers
        same_load = at(share, "forward", "cpu_per_unit_pct")
        if multi is not None and cpu:
            # The busiest worker's CPU per unit against one process carrying as many units as it
            # does (capacity grows with cores: N workers carry N times the units at the same cost
            # per unit); beside it, against the single process carrying all of them, which also
            # counts that a process's cost per unit falls with its units; and the whole tree's.
            same_total = multi / cpu - 1
            drift = multi / same_load - 1 if same_load else same_total
            out["two_workers"].update(
                measured=round(drift, 3), worker_cpu_per_unit_pct=multi, at_units=largest,
                compared_with=f"one process with {share} units" if same_load else f"one process with {largest} units",
                single_cpu_per_unit_pct=same_load if same_load else cpu, single_all_units_cpu_per_unit_pct=cpu,
                drift_against_all_units=round(same_total, 3), tree_cpu_per_unit_pct=tree,
                note=(f"busiest worker {multi}%/unit at {largest} units against "
                      + (f"one process with {share} units, {same_load}%/unit; against one process with all "
                         f"{largest}, {cpu}%/unit: {same_total:+.1%}" if same_load else
                         f"one process with {largest} units, {cpu}%/unit")),
                **{"pass": drift <= TARGET_WORKER_DRIFT})
    return out


def fmt(value: Any, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value * scale:.{digits}f}{unit}"


def table(summary: dict[str, Any], servers: list[str]) -> list[str]:
    """Lines of the printed result: one per unit count and server."""
    lines = [f"{'units':>5} {'server':16s} {'cpu/unit':>9} {'rss@N':>8} {'rss/unit':>9} {'on time min':>11} "
             f"{'median':>7} {'audio min':>9} {'lat p95':>8} {'added':>7} {'pub fps':>7}"]
    for key in sorted(summary, key=lambda k: int(k.split("_")[1])):
        n = int(key.split("_")[1])
        for server in servers:
            s = summary[key].get(server)
            if s is None:
                continue
            lines.append(
                f"{n:5d} {server:16s} {fmt(s['cpu_per_unit_pct'], '%'):>9} {fmt(s['rss_mb'], ' MB', digits=0):>8} "
                f"{fmt(s['rss_per_unit_mb'], ' MB'):>9} {fmt(s['on_time_min'], '%', 100, 1):>11} "
                f"{fmt(s['on_time_median'], '%', 100, 1):>7} {fmt(s['audio_received_min'], '%', 100, 1):>9} "
                f"{fmt(s['latency_p95_s'], ' ms', 1000, 0):>8} {fmt(s['added_latency_p95_s'], ' ms', 1000, 0):>7} "
                f"{fmt(s['publisher_fps_min'], '', 1, 1):>7}")
        ratios = [f"forward/{ref} {summary[key][f'forward_over_{ref}']}x" for ref in REFERENCES
                  if f"forward_over_{ref}" in summary[key]]
        if ratios:
            lines.append(f"{'':5s} ratios of CPU per unit: " + ", ".join(ratios))
    return lines
