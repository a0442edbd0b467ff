"""The profiling tool's own arithmetic: py-spy's collapsed stacks summarised without waiting
threads, and CPU split between the event loop's thread and the others."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.profile_engine import collapsed_summary, thread_cpu


def test_waiting_threads_are_left_out_and_shares_add_up(tmp_path: Path) -> None:
    raw = tmp_path / "x.raw"
    raw.write_text(
        "main (a.py:1);on_packet (p.py:2);sendto (libc) 30\n"
        "main (a.py:1);on_packet (p.py:2) 10\n"
        "worker (t.py:1);Condition.wait (threading.py:3);pthread_cond_timedwait (libc) 500\n"
        "main (a.py:1);epoll_pwait (libc) 400\n",
        encoding="utf-8",
    )
    text = collapsed_summary(raw)
    assert text.startswith("40 samples")
    assert " 75.00%  sendto (libc)" in text and " 25.00%  on_packet (p.py:2)" in text
    assert "100.00%  main (a.py:1)" in text  # inclusive
    assert "Condition.wait" not in text and "epoll_pwait" not in text


def test_the_loop_thread_is_told_apart_from_the_others() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    before = thread_cpu(os.getpid())
    worker = threading.Thread(target=spin)
    worker.start()
    try:  # read while it runs (a thread that ended has no /proc entry), until it has used 0.05 s
        deadline = time.monotonic() + 60  # a loaded machine may give it little CPU
        while True:
            after = thread_cpu(os.getpid())
            if after["other threads"] - before["other threads"] > 0.05 or time.monotonic() > deadline:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join()
    assert set(after) == {"loop", "other threads"}
    assert after["other threads"] - before["other threads"] > 0.05  # the spinning thread's CPU
