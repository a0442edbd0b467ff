"""The two media engines side by side in one run: ``[media] engine = "frames"`` against ``"packets"``.

    python -m bench.packet_engine [--quick] [--record] [--out bench/results/packet_engine.json]

``python -m bench.relay --engine packets|frames`` measures one engine against Janus and
``MediaRelay``; this measures the two engines against each other. Reuses the machinery of
:mod:`bench.relay` (the same load generators: pre-encoded VP8
640x480@30, no audio, 2 viewers per unit; the same CPU windows from ``/proc/<pid>/stat``), with
two ``dispatch_server`` processes that differ only in ``[media] engine``, each with its own data
directory. Rounds alternate their order. Per unit = (server CPU with N units - idle) / N, in % of
one core; medians over rounds and the frames/packets ratio are reported, with the server's RSS at
each step (``VmRSS``). ``--record`` turns the archive on (every unit recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.relay import (
    PASSWORD,
    PERSON,
    PYTHON,
    Bench,
    LoadgenChild,
    Plan,
    ServerChild,
    _cpu_unit,
    _signals_raise,
    add_units,
    machine_info,
    measure,
)
from tests.support.server import REPO, add_unit, add_user, login, write_config

ENGINES = ("frames", "packets")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class EngineBench(Bench):
    record: bool = False
    configs: dict[str, Path] = field(default_factory=dict)
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def server_argv(self) -> dict[str, list[str]]:
        return {e: [PYTHON, "-m", "dispatch_server", "--config", str(self.configs[e]), "serve"] for e in ENGINES}

    def write_configs(self) -> None:
        for engine in ENGINES:
            extra = f'[archive]\nenabled = {"true" if self.record else "false"}\n[media]\nengine = "{engine}"\n'
            self.configs[engine] = write_config(self.work / f"{engine}.toml", self.work / f"data-{engine}", extra)
        self.config = self.configs["packets"]

    def setup(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        self.loadgens = [LoadgenChild(f"loadgen{k}", self.logs / f"loadgen{k}.log").start()
                         for k in range(self.plan.loadgens)]
        units = [_cpu_unit(r, k) for r in range(self.plan.rounds) for k in range(max(self.plan.cpu_units))]
        for engine in ENGINES:
            add_user(self.configs[engine], PERSON, "operator", PASSWORD)
            self.tokens[engine] = {u: add_unit(self.configs[engine], u) for u in units}
        for name, args in self.server_argv().items():
            self.servers[name] = ServerChild(name, args, self.logs / f"{name}-server.log").start()
        for lg in self.loadgens:
            lg.wait_ready()
        self.say(", ".join(f"{k} {v.url}" for k, v in self.servers.items()))

    def _add(self, server: ServerChild, units: list[str], loadgens: list[LoadgenChild],
             kind: str = "whip") -> dict[str, Any]:
        person = asyncio.run(login(server.url, PERSON, PASSWORD))
        return add_units(loadgens, server.url, person, self.tokens[server.name], units, kind)

    def rounds(self) -> list[dict[str, Any]]:
        lg = self.loadgens[:1]
        out = []
        for r in range(self.plan.rounds):
            order = list(ENGINES) if r % 2 == 0 else list(reversed(ENGINES))
            for engine in order:
                server = self.servers[engine]
                lg[0].request({"cmd": "clear"}, timeout=60)
                time.sleep(1.0)
                idle = measure(server, lg, self.plan.idle_s)
                entry: dict[str, Any] = {"round": r + 1, "engine": engine, "idle_cpu_pct": idle.server_cpu_pct,
                                         "idle_rss_mb": rss_mb(server.pid), "steps": []}
                units: list[str] = []
                for n in self.plan.cpu_units:
                    more = [_cpu_unit(r, k) for k in range(len(units), n)]
                    added = self._add(server, more, lg)
                    units += more
                    if added["failed"]:
                        raise RuntimeError(f"{engine}: could not connect {added['failed']}: {added['errors']}")
                    time.sleep(self.plan.warmup_s)
                    win = measure(server, lg, self.plan.window_s)
                    per_unit = (win.server_cpu_pct - idle.server_cpu_pct) / n
                    rss = rss_mb(server.pid)
                    entry["steps"].append({**asdict(win), "per_unit_cpu_pct": round(per_unit, 2), "rss_mb": rss})
                    self.say(f"round {r + 1} {engine:8s} {n} unit(s): server {win.server_cpu_pct:5.1f}% "
                             f"(idle {idle.server_cpu_pct:.1f}%) -> {per_unit:5.2f}%/unit; RSS {rss:.0f} MB; "
                             f"viewers {win.viewer_fps_median:.1f} fps, on time min {win.delivered_min}")
                    self._servers_alive()
                out.append(entry)
        lg[0].request({"cmd": "clear"}, timeout=60)
        return out


def summarize(rounds: list[dict[str, Any]], units: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in units:
        per: dict[str, dict[str, list[float]]] = {}
        for entry in rounds:
            for step in entry["steps"]:
                if step["units"] == n:
                    d = per.setdefault(entry["engine"], {"cpu": [], "rss": [], "fps": [], "on_time": []})
                    d["cpu"].append(step["per_unit_cpu_pct"])
                    d["rss"].append(step["rss_mb"])
                    d["fps"].append(step["viewer_fps_median"])
                    d["on_time"].append(step["delivered_min"] if step["delivered_min"] is not None else float("nan"))
        summary: dict[str, Any] = {e: {"per_unit_pct_median": round(statistics.median(d["cpu"]), 2),
                                       "per_unit_pct_rounds": d["cpu"],
                                       "rss_mb_median": statistics.median(d["rss"]),
                                       "viewer_fps_median": statistics.median(d["fps"]),
                                       "on_time_min": d["on_time"]}
                                   for e, d in per.items()}
        if "frames" in per and "packets" in per and statistics.median(per["packets"]["cpu"]) > 0:
            summary["frames_over_packets"] = round(statistics.median(per["frames"]["cpu"])
                                                   / statistics.median(per["packets"]["cpu"]), 2)
        out[f"units_{n}"] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.packet_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round at 1 and 8 units (~2 min)")
    parser.add_argument("--record", action="store_true", help="archive on: every unit is recorded")
    parser.add_argument("--out", default="bench/results/packet_engine.json")
    args = parser.parse_args(argv)
    plan = Plan(rounds=1 if args.quick else 3, cpu_units=(1, 8), warmup_s=4.0 if args.quick else 6.0,
                window_s=6.0 if args.quick else 10.0, idle_s=3.0, ramp=(), ramp_warmup_s=0, ramp_window_s=0,
                late_trials=0)
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    command = "python -m bench.packet_engine " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {"command": command.strip(),
                              "machine": machine_info(), "plan": asdict(plan), "record": args.record}
    status = 0
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp, _signals_raise():
        bench = EngineBench(plan, Path(tmp), out.parent / f"{out.stem}-logs", 8, record=args.record)
        try:
            bench.setup()
            rounds = bench.rounds()
            result["rounds"] = rounds
            result["summary"] = summarize(rounds, plan.cpu_units)
        except (Exception, KeyboardInterrupt) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            bench.say(f"benchmark failed: {result['error']}")
            status = 1
        finally:
            bench.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(result.get("summary", result.get("error")), indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
