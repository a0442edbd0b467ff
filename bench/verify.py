"""Evidence verifier benchmark: ``dispatch-audit verify`` throughput over ~1 GiB of segment files.

    python -m bench.verify [--gib 1.0] [--segment-mib 4] [--runs 3] [--out FILE]

Builds an archive in a temporary directory with the real :class:`recordings.ledger.Ledger`:
``--gib`` of random "segments" of ``--segment-mib`` each (10 s of 3 Mbit/s video is ~4 MiB), one
``segment_sealed`` entry each, signed tree heads along the way. Then, in the same run:

* a cold-ish first pass: every segment is evicted from the page cache with
  ``posix_fadvise(DONTNEED)`` (only our files; the machine's cache is left alone), then verified;
* ``--runs`` warm passes of :func:`recordings.verify.verify_archive` (median reported);
* two baselines over the same files, warm: a single-thread Python loop (1 MiB reads into
  ``hashlib.sha256``) and the ``sha256sum`` binary.

MB/s are 10^6 bytes of segment data hashed per wall-clock second of the whole verification (ledger,
tree heads, inclusion proofs and files); CPU s per GB is the process's CPU time (all threads) per
10^9 bytes, which says more than MB/s when other work shares the machine. Target: ≥ 300 MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, write_result
from recordings.ledger import Ledger
from recordings.verify import default_workers, verify_archive

TARGET_MB_S = 300.0


def build(root: Path, total_bytes: int, segment_bytes: int) -> tuple[Path, bytes, list[Path]]:
    archive = root / "archive"
    ledger = Ledger(archive, root / "keys" / "ledger.pem", where="bench")
    ledger.open()
    files: list[Path] = []
    rid = "rec-bench"
    (archive / "recordings" / rid).mkdir(parents=True)
    block = os.urandom(segment_bytes)
    for seq in range(1, total_bytes // segment_bytes + 1):
        # Distinct content per file without paying for urandom on every byte.
        body = seq.to_bytes(8, "big") + block[8:]
        rel = f"recordings/{rid}/{seq:06d}.webm"
        path = archive / rel
        path.write_bytes(body)
        files.append(path)
        ledger.append("segment_sealed", actor="system", data={
            "recording_id": rid, "seq": seq, "path": rel, "sha256": hashlib.sha256(body).hexdigest(),
            "bytes": len(body), "start": "", "end": "", "frames": {"video": 300, "audio": 500}, "recovered": False})
        if seq % 30 == 0:
            ledger.sign_tree_head()
    ledger.close()
    return archive, ledger.public_key_pem(), files


def evict(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed_verify(archive: Path, key: bytes) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    report = verify_archive(archive, key)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if report.failures:
        raise RuntimeError(f"the benchmark archive does not verify: {report.failures[:3]}")
    return {"seconds": round(seconds, 3), "mb_s": round(report.bytes_hashed / seconds / 1e6, 1),
            "cpu_s_per_gb": round(cpu / (report.bytes_hashed / 1e9), 3),
            "bytes": report.bytes_hashed, "entries": report.entries}


def python_single_thread(files: list[Path]) -> tuple[float, float]:
    """MB/s and CPU s per GB of the plain loop: one thread, 1 MiB reads, hashlib.sha256."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
        h.hexdigest()
    return n / (time.perf_counter() - t0) / 1e6, (time.process_time() - c0) / (n / 1e9)


def sha256sum_binary(files: list[Path]) -> float | None:
    exe = shutil.which("sha256sum")
    if exe is None:
        return None
    n = sum(p.stat().st_size for p in files)
    t0 = time.perf_counter()
    subprocess.run([exe, *map(str, files)], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return n / (time.perf_counter() - t0) / 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        archive, key, files = build(work, int(args.gib * (1 << 30)), args.segment_mib << 20)
        evict(files)
        cold = timed_verify(archive, key)
        warm = [timed_verify(archive, key) for _ in range(args.runs)]
        py = [python_single_thread(files) for _ in range(args.runs)]
        binary = [b for b in (sha256sum_binary(files) for _ in range(args.runs)) if b is not None]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm_mb_s = statistics.median(w["mb_s"] for w in warm)
    py_mb_s = statistics.median(x[0] for x in py)
    return {
        "files": len(files), "segment_mib": args.segment_mib, "bytes": warm[0]["bytes"],
        "ledger_entries": warm[0]["entries"], "workers": default_workers(), "cpus": os.cpu_count(),
        "cold_first_pass": cold,
        "warm_runs": warm,
        "warm_median_mb_s": warm_mb_s,
        "warm_median_cpu_s_per_gb": statistics.median(w["cpu_s_per_gb"] for w in warm),
        "baseline_python_single_thread_mb_s": [round(x[0], 1) for x in py],
        "baseline_python_cpu_s_per_gb": round(statistics.median(x[1] for x in py), 3),
        "baseline_python_median_mb_s": round(py_mb_s, 1),
        "baseline_sha256sum_mb_s": [round(x, 1) for x in binary],
        "baseline_sha256sum_median_mb_s": round(statistics.median(binary), 1) if binary else None,
        "ratio_to_python_baseline": round(warm_mb_s / py_mb_s, 2),
        "ratio_to_sha256sum": round(warm_mb_s / statistics.median(binary), 2) if binary else None,
        "target_mb_s": TARGET_MB_S,
        "result": "PASS" if warm_mb_s >= TARGET_MB_S else "MISS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0, help="total size of the segment files")
    p.add_argument("--segment-mib", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "verify.json"))
    args = p.parse_args()
    write_result(args.out, run(args))


if __name__ == "__main__":
    main()
