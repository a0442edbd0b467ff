"""Statistics benchmark: ``GET /api/stats`` over a year of history, for every period kind and grouping.

    python -m bench.stats [--actions 10000] [--instructions 1000000] [--recordings 100000]
                          [--repeat 7] [--out bench/results/stats.json] [--data DIR]

Generates a year of history straight into the stores (one transaction per table, ``executemany``):
actions (ended, cancelled, planned; teams of 1-3 of 200 units, 60 officers, 20 judges) in the
server's database, their instructions (every state, delivery and acknowledgement times), alerts
(SOS among them), footage requests with links; and in the evidence catalog the recordings of the
actions' units with ten sealed segments each and a gap in one recording of five (``--data DIR``
keeps the history in DIR and uses it again next time). Then starts a real ``dispatch-server
serve`` on that data, waits for it to sum up the past days in the background (the log line
"statistics: N day summaries computed", timed), and times ``GET /api/stats`` through HTTP, ``--repeat``
times for each period kind (a day, a week, a month, a custom quarter and a custom year, all in
the middle of the history) and each grouping, with ``GET /api/me`` of the same session as the
baseline of the same run. Medians and p95 per (period, grouping) go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from bench.harness import PASSWORD, pct, start_server, stop, write_result
from dispatch_server.actions import Action
from dispatch_server.auth import Authenticator
from dispatch_server.stores.accounts import Accounts
from dispatch_server.stores.database import SqliteDatabase
from recordings.catalog import Catalog

ZONE = ZoneInfo("Asia/Shanghai")
YEAR_START = datetime(2025, 12, 1, tzinfo=ZONE).timestamp()
YEAR_S = 365 * 86400.0
TYPES = ("seizure", "search", "eviction", "service", "other")
INS_TYPES = ("text", "goto", "record_start", "record_stop", "snapshot", "callback", "end_action")
INS_STATES = (("done", 70), ("acknowledged", 8), ("refused", 5), ("expired", 10), ("cancelled", 2), ("delivered", 5))
KINDS = ("sos", "unit_offline", "stopped_publishing", "ack_overdue", "geofence_exit")
PERIODS = (("day", "date=2026-06-15"), ("week", "date=2026-06-15"), ("month", "date=2026-06-15"),
           ("custom-quarter", "from=2026-04-01&to=2026-06-30"), ("custom-year", "from=2025-12-01&to=2026-11-30"))
GROUPS = ("type", "judge", "officer", "unit", "team")


def generate(data: Path, n_actions: int, n_instructions: int, n_recordings: int, rng: random.Random) -> dict[str, Any]:
    """The history, written straight into the stores; returns how many rows of each."""
    db = SqliteDatabase(data)
    accounts = Accounts(db)
    accounts.add_user("bench-sup", "supervisor", Authenticator(accounts, 3600).hash_password(PASSWORD), time.time())
    db.close()
    units = [f"u{i:03d}" for i in range(200)]
    officers = [f"法警{i:02d}" for i in range(60)]
    judges = [f"法官{i:02d}" for i in range(20)]
    actions: list[Action] = []
    for n in range(n_actions):
        start = YEAR_START + rng.random() * (YEAR_S - 86400)
        state = rng.choices(("ended", "cancelled", "planned"), (90, 5, 5))[0]
        length = rng.uniform(1800, 4 * 3600)
        actions.append(Action(
            id=f"act-{n:08x}", case_number=f"（2026）冀0916执{n}号", title=f"行动 {n}", type=rng.choice(TYPES),
            address="", area=None, planned_at=start - 3600, units=tuple(rng.sample(units, rng.randint(1, 3))),
            officers=tuple(rng.sample(officers, 2)), judge=rng.choice(judges), state=state,
            created_by="bench", created_at=start - 86400,
            started_at=start if state == "ended" else None, ended_at=start + length if state == "ended" else None,
            cancelled_at=start - 600 if state == "cancelled" else None))
    ran = [a for a in actions if a.state == "ended"]
    t0 = time.monotonic()
    conn = sqlite3.connect(data / "dispatch.sqlite3", isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO actions(id, doc, state, updated_at) VALUES (?,?,?,?)",
                     [(a.id, a.doc(), a.state, a.created_at) for a in actions])
    states, weights = zip(*INS_STATES, strict=True)

    def instructions() -> Any:
        for n in range(n_instructions):
            a = ran[n % len(ran)]
            assert a.started_at is not None and a.ended_at is not None
            unit = a.units[n % len(a.units)]
            created = rng.uniform(a.started_at, a.ended_at)
            state = rng.choices(states, weights)[0]
            delivered = None if state in ("expired", "cancelled") else created + rng.expovariate(1 / 0.4)
            acked = delivered + rng.expovariate(1 / 8.0) if state in ("done", "acknowledged") and delivered else None
            # (one never acknowledged had its overdue alert long ago: the server does not raise it again)
            yield (f"in-{n:08x}", unit, n, rng.choice(INS_TYPES), "{}", "normal", state, a.id, a.case_number, "bench",
                   created, created + 3600, 60.0, delivered, acked, None, None, None, None, None,
                   int(state == "delivered"))

    conn.executemany(
        "INSERT INTO instructions(id, unit_id, seq, type, payload, priority, state, action_id, case_number, "
        "created_by, created_at, expires_at, ack_deadline_s, delivered_at, acknowledged_at, done_at, refused_at, "
        "expired_at, reason, result, overdue_alerted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        instructions())
    alerts = []
    for n in range(len(ran) * 3):
        a = ran[n % len(ran)]
        assert a.started_at is not None and a.ended_at is not None
        created = rng.uniform(a.started_at, a.ended_at)
        acked = rng.random() < 0.95
        escalated = not acked or rng.random() < 0.1  # one left open was escalated long ago
        doc = {"id": f"al-{n:08x}", "kind": rng.choice(KINDS), "unit_id": a.units[0], "action_id": a.id,
               "case_number": a.case_number, "state": "acknowledged" if acked else "open",
               "escalated": escalated, "escalated_at": created + 60 if escalated else None, "created_at": created,
               "acknowledged_at": created + rng.expovariate(1 / 20.0) if acked else None}
        alerts.append((doc["id"], json.dumps(doc, ensure_ascii=False), doc["state"], created))
    conn.executemany("INSERT INTO alerts(id, doc, state, created_at) VALUES (?,?,?,?)", alerts)
    requests, links = [], []
    for n in range(len(ran) // 5):
        a = ran[n * 5]
        assert a.ended_at is not None
        created = a.ended_at + 86400
        what = rng.choice(("approve", "refuse"))
        history = [{"at": created, "what": "requested"}, {"at": created + 7200, "what": what}]
        if what == "approve":
            history.append({"at": created + 9000, "what": "exported"})
            links.append((f"ln-{n:08x}", f"h{n}", f"fr-{n:08x}", created + 9000, created + 30 * 86400,
                          None if rng.random() < 0.9 else created + 86400, rng.randint(0, 3)))
        request: dict[str, Any] = {"id": f"fr-{n:08x}", "case_number": a.case_number, "action_id": a.id,
                                   "state": "ready", "created_at": created, "history": history}
        requests.append((request["id"], a.case_number, "ready", json.dumps(request, ensure_ascii=False), created,
                         created))
    conn.executemany("INSERT INTO footage_requests(id, case_number, state, doc, created_at, updated_at) "
                     "VALUES (?,?,?,?,?,?)", requests)
    conn.executemany("INSERT INTO party_links(id, token_hash, request_id, created_at, expires_at, revoked_at, uses) "
                     "VALUES (?,?,?,?,?,?,?)", links)
    conn.execute("COMMIT")
    conn.close()

    Catalog(data / "catalog.sqlite3").close()  # its schema and version, so the server keeps what follows
    cat = sqlite3.connect(data / "catalog.sqlite3", isolation_level=None)
    cat.execute("PRAGMA synchronous=OFF")
    cat.execute("BEGIN")
    recs, segs, gaps = [], [], []
    for n in range(n_recordings):
        a = ran[n % len(ran)]
        assert a.started_at is not None and a.ended_at is not None
        unit = a.units[(n // len(ran)) % len(a.units)]
        opened = a.started_at + rng.uniform(-60, 120)
        closed = a.ended_at - rng.uniform(0, 120)
        rid = f"rec-{n:08x}"
        recs.append((rid, unit, a.id, a.case_number, "[]", "standard", "node", "vp8", "opus", opened, closed, "closed"))
        step = (closed - opened) / 10
        for s in range(10):
            segs.append((rid, s, f"recordings/{rid}/{s}.mkv", "0" * 64, 2_000_000, opened + s * step,
                         opened + (s + 1) * step - (30 if s == 4 and n % 5 == 0 else 0), s * step, step))
        if n % 5 == 0:
            gaps.append((n, rid, opened + 5 * step - 30, opened + 5 * step, rng.choice(("link_lost", "unit_stopped")),
                         30.0))
    cat.executemany("INSERT INTO recordings(id, unit_id, action_id, case_number, officers, category, node, "
                    "video_codec, audio_codec, opened_at, closed_at, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", recs)
    cat.executemany("INSERT INTO segments(recording_id, seq, path, sha256, bytes, start, end, offset_s, duration_s) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", segs)
    cat.executemany("INSERT INTO gaps(ledger_index, recording_id, start, end, cause, seconds) VALUES (?,?,?,?,?,?)",
                    gaps)
    cat.execute("COMMIT")
    cat.close()
    return {"actions": len(actions), "instructions": n_instructions, "alerts": len(alerts), "requests": len(requests),
            "links": len(links), "recordings": len(recs), "segments": len(segs), "gaps": len(gaps),
            "generate_s": round(time.monotonic() - t0, 1)}


async def measure(url: str, repeat: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/login", json={"username": "bench-sup", "password": PASSWORD}) as r:
            token = (await r.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def timed(path: str) -> float:
            t = time.perf_counter()
            async with http.get(url + path, headers=headers) as r:
                body = await r.read()
                assert r.status == 200, body[:300]
            return time.perf_counter() - t

        await timed("/api/stats?period=day&date=2026-06-15")  # warm the page cache once
        baseline = [await timed("/api/me") for _ in range(repeat * 5)]
        cells = {}
        for name, query in PERIODS:
            kind = name.split("-")[0]
            for group in GROUPS:
                times = [await timed(f"/api/stats?period={kind}&{query}&group={group}") for _ in range(repeat)]
                cells[f"{name}/{group}"] = {"median_s": round(statistics.median(times), 3),
                                            "p95_s": round(pct(times, 95), 3), "max_s": round(max(times), 3)}
                print(name, group, cells[f"{name}/{group}"], flush=True)
        return {"baseline_me": {"median_s": round(statistics.median(baseline), 4),
                                "p95_s": round(pct(baseline, 95), 4)}, "stats": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--instructions", type=int, default=1_000_000)
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default="bench/results/stats.json")
    parser.add_argument("--data", type=Path, help="keep the generated history here and use it again")
    parser.add_argument("--write-cost", action="store_true",
                        help="only measure what the change triggers cost writing instructions (no server)")
    args = parser.parse_args()
    if args.write_cost:
        write_result(args.out.replace(".json", "-write-cost.json"), write_cost())
        return
    work = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    data = args.data or work / "data"
    sizes_file = data / "bench-sizes.json"
    if args.data is not None and sizes_file.exists():
        sizes = json.loads(sizes_file.read_text())
    else:
        sizes = generate(data, args.actions, args.instructions, args.recordings, random.Random(17))
        sizes_file.write_text(json.dumps(sizes))
    print("history", sizes, flush=True)
    cfg = work / "config.toml"
    cfg.write_text(f'[storage]\ndata_dir = "{data}"\n[server]\nport = 0\n[metrics]\nport = -1\n')
    log_path = work / "server.log"
    log = log_path.open("w")
    t0 = time.monotonic()
    server, url = start_server(cfg, timeout=120, log=log)
    try:
        warm_up = wait_for_warm_up(log_path, t0)
        print("warm-up", warm_up, flush=True)
        figures = asyncio.run(measure(url, args.repeat))
    finally:
        stop(server)
        log.close()
    write_result(args.out, {"sizes": sizes, "repeat": args.repeat, "work": str(work), "warm_up": warm_up,
                            **figures})


def write_cost(rounds: int = 5, batches: int = 15, n: int = 1000) -> dict[str, Any]:
    """Inserting ``n`` instructions in one transaction, then marking them delivered in another, on
    the server's schema with and without the triggers that mark changed hours for the day summaries
    (``dispatch_server/stores/stats_days.py``, schema version 2); the two alternate, ``rounds`` times."""
    from dispatch_server.stores import migrations

    def database(triggers: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(Path(tempfile.mkdtemp(prefix="bench-stats-write-")) / "d.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for step in (1, 2) if triggers else (1,):  # schema version 2 brought the triggers
            migrations.STEPS[step][1](conn)
        return conn

    def batch(conn: sqlite3.Connection, first: int) -> tuple[float, float]:
        now = time.time()
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO instructions(id, unit_id, seq, type, payload, priority, state, created_by, created_at, "
            "expires_at, ack_deadline_s) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(f"i{first + i}", f"u{i}", first + i, "text", "{}", "normal", "queued", "op", now, now + 60, 60)
             for i in range(n)])
        conn.execute("COMMIT")
        inserted = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("UPDATE instructions SET state='delivered', delivered_at=? WHERE id=?",
                         [(now + 0.1, f"i{first + i}") for i in range(n)])
        conn.execute("COMMIT")
        return inserted, time.perf_counter() - t

    times: dict[str, dict[str, list[float]]] = {k: {"insert": [], "update": []} for k in ("without", "with")}
    conns = {"without": database(False), "with": database(True)}
    for r in range(rounds):
        for kind in (("without", "with") if r % 2 == 0 else ("with", "without")):
            for b in range(batches):
                ins, upd = batch(conns[kind], (r * batches + b) * n)
                times[kind]["insert"].append(ins)
                times[kind]["update"].append(upd)
    out: dict[str, Any] = {"instructions_per_batch": n}
    for kind, found in times.items():
        out[kind] = {k: round(statistics.median(v) * 1000, 2) for k, v in found.items()}
    out["ratio"] = {k: round(out["with"][k] / out["without"][k], 2) for k in ("insert", "update")}
    print("write cost (ms per batch)", out, flush=True)
    return out


def wait_for_warm_up(log: Path, t0: float, timeout: float = 600.0) -> dict[str, Any]:
    """The server's background summing up of past days: how many, how long (its own log line)."""
    pattern = re.compile(r"statistics: (\d+) day summaries computed in ([\d.]+) s")
    while time.monotonic() - t0 < timeout:
        found = pattern.search(log.read_text(errors="replace"))
        if found:
            return {"days": int(found.group(1)), "server_s": float(found.group(2)),
                    "since_start_s": round(time.monotonic() - t0, 1)}
        time.sleep(0.5)
    raise SystemExit(f"the server did not report summing up past days within {timeout} s (see {log})")


if __name__ == "__main__":
    main()
