"""How many threads a learning guard trains with (tests/test_learnability.py, tests/test_small_parts_learnability.py),
and running one function on several threads at once (the thread-safety tests)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any


def guard_threads() -> int:
    """Two threads (one core's worth each on a 2-core machine), fewer when OMP_NUM_THREADS, the test workers sharing
    the machine, or its load say so.

    On a machine already busy (one-minute load average at or above its core count, this suite included), one
    thread: two torch threads that must wait for each other's core run several times slower than one (a guard
    on 2 cores under a load of 6 overran the 10-minute test timeout at two threads), and the bars hold at both.
    """
    wanted = int(os.environ.get("OMP_NUM_THREADS") or 2)
    # Under pytest-xdist (`make test`) the other workers keep their cores busy: the guard gets its share of them.
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
    return max(1, min(1 if busy else 2, wanted, cores))


def run_together(target: Callable[..., None], args: list[tuple], handles: Iterable[Any] = ()) -> None:
    """Run `target` once per tuple in `args`, each on its own thread, wait for all, then remove the torch hooks
    `handles` the test attached, however the threads ended."""
    try:
        threads = [threading.Thread(target=target, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for handle in handles:
            handle.remove()
