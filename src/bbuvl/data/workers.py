"""How many processes or threads a data command starts: at most one per CPU core it may run on.

Every `--workers` (data convert, check, synth) is bounded here. What these commands write never depends on the
count, so a number above the cores is clamped with a one-line note rather than refused: a script written on a big
server still runs on a laptop. Past the cores, a worker only adds memory (each holds a decoded photo) and start-up
time; `--workers 100000` forked that many processes.
"""

from __future__ import annotations

import os
import sys

# ProcessPoolExecutor refuses more than 61 workers on Windows (the handles one wait can watch).
_WINDOWS_MOST = 61


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity where the OS keeps one (a container, `taskset`), which
    `os.cpu_count()` ignores, else every core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS and Windows keep no affinity
        return os.cpu_count() or 1


def worker_limit() -> int:
    """The most workers a data command starts: the usable cores (and at most 61 on Windows)."""
    cores = usable_cores()
    return min(cores, _WINDOWS_MOST) if sys.platform == "win32" else cores


def bound_workers(asked: int | None) -> int:
    """`asked` workers, at most `worker_limit()`; the limit itself when `asked` is None or 0 (automatic)."""
    limit = worker_limit()
    return min(asked, limit) if asked else limit


def workers_note(asked: int | None, option: str = "--workers") -> str | None:
    """The note a command prints when `asked` is above the limit and is clamped to it; None otherwise."""
    limit = worker_limit()
    if not asked or asked <= limit:
        return None
    return (f"note: {option} {asked} is more than the {limit} CPU core(s) this process may use; using {limit} "
            "(the output does not depend on it)")
