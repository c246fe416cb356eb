"""How many processes or threads a data command starts: at most one per CPU core it may run on.

Every `--workers` (data convert, check, synth) is bounded here. What these commands write never depends on the
count, so a number above the cores is clamped with a one-line note rather than refused: a script written on a big
server still runs on a laptop. Past the cores, a worker only adds memory (each holds a decoded photo) and start-up
time; `--workers 100000` forked that many processes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from queue import Empty, SimpleQueue
from types import FrameType, TracebackType
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

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


@contextmanager
def worker_deaths(doing: str, advice: str) -> Iterator[None]:
    """ChildProcessError (an OSError: a command prints it as one line) for a pool one of whose processes was killed
    while `doing` (the system's out-of-memory killer), saying what to do: it was a traceback of the pool's internals."""
    try:
        yield
    except BrokenProcessPool:
        raise ChildProcessError(f"a process {doing} ended abruptly, killed (most often by the system when memory runs "
                                f"out); {advice}") from None


def completed(futures: list[Future[T]]) -> Iterator[Future[T]]:
    """Each of `futures` as it completes, as `concurrent.futures.as_completed` gives them, but safe to stop by a signal.

    `as_completed` and `wait` lock every pending future in a Python loop; SIGTERM or SIGHUP raised in the middle of
    that loop (entry.py raises where the main thread is) left some of those locks held, so the pool's thread blocked
    setting a result on one and the pool's shutdown waited on it for ever: a `data synth --workers 2` whose terminal
    closed hung instead of ending with 129. Here each future hands itself to a queue as it completes, and the wait
    is one `SimpleQueue.get`, which a signal interrupts holding nothing; a stop signal that comes while a future's
    lock is taken is held until it is let go (`_deferring`). It also costs one step a result, where `wait` walked every pending future."""
    arrived: SimpleQueue[Future[T]] = SimpleQueue()
    _deferring(lambda: [future.add_done_callback(arrived.put) for future in futures])
    for _ in futures:
        finished: Future[T] | None = None
        while finished is None:
            # Woken every so often: a signal the OS hands to another of the process's threads (the pool's own) runs
            # its handler only once the main thread runs Python again, and a wait for a long task would hold it back.
            with suppress(Empty):
                finished = arrived.get(timeout=_WAKE_S)
        yield finished


_WAKE_S = 0.1


def results_in_order(futures: list[Future[T]]) -> Iterator[T]:
    """Each of `futures`' results, in their order, as it comes; the first of them to fail is raised as soon as it does,
    not once those before it are done: a photo that could not be written while the first worker was still on its
    first photos went on rendering tens of others (`pool.map` raises in order), which the command then dropped."""
    arriving = completed(futures)
    for future in futures:
        while not _deferring(future.done):
            finished = next(arriving)
            if _deferring(finished.exception) is not None:
                _deferring(finished.result)  # raised with its own traceback
        yield _deferring(future.result)


class _Held:
    """The main thread's calls that take a future's lock under way (`_deferring`), and the stop signal that came
    meanwhile."""

    depth = 0
    signum: int | None = None


def hold_signal(signum: int) -> bool:
    """For a stop signal's handler (entry.py): True, the signal kept and raised again once the main thread holds no
    future's lock, while it may hold one; False when the handler may stop the command where it stands."""
    if _Held.depth == 0 or threading.current_thread() is not threading.main_thread():
        return False
    _Held.signum = _Held.signum or signum
    return True


def _deferring(call: Callable[[], T]) -> T:
    """`call()`, a stop signal coming meanwhile held until it returns (`hold_signal`): a `with lock:` in Python code is
    no safe place for a signal's exception, which can leave the lock taken."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    _Held.depth += 1
    try:
        return call()
    finally:
        _Held.depth -= 1
        if _Held.depth == 0 and _Held.signum is not None:
            signum, _Held.signum = _Held.signum, None
            signal.raise_signal(signum)


_stop: multiprocessing.synchronize.Event | None = None  # in a pool's worker: its pool's stop event (`stopping`)


def stopping() -> bool:
    """In a pool's worker: whether the command has stopped the pool (an error, a failed write, Ctrl-C), so a task of
    many photos ends before its next one; False outside a pool."""
    return _stop is not None and _stop.is_set()


class _Pool(ProcessPoolExecutor):
    """A process pool whose `with` block, left by an exception, drops the work not yet begun and tells the work begun
    to stop (`stopping`)."""

    def __init__(self, workers: int):
        context = _pool_context()
        self.stop = context.Event()
        super().__init__(max_workers=workers, mp_context=context, initializer=_start_worker,
                         initargs=(os.getpid(), self.stop))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        # A stop (Ctrl-C, SIGTERM, SIGHUP) or an error while photos are still queued: the pool's own exit waited for
        # every one of them. A Ctrl-C to `data convert` alone (its workers leave Ctrl-C to it) went on converting the
        # rest before it stopped, 13 s of a 19 s run; now it waits only for the photos its workers are on, and a
        # worker that asks `stopping` ends its task at its next photo rather than its last.
        if exc_type is not None:
            self.stop.set()
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes, forked where the OS can, each of which ends when this process does and leaves
    Ctrl-C to it; leaving its `with` block by an exception drops the work not yet begun and sets `stopping`."""
    return _Pool(workers)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork where the OS has it: workers inherit the parent's imports; a fresh interpreter (spawn,
    # forkserver) re-imports torch and transformers through coords, measured at 2-5 s per worker.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _start_worker(parent: int, stop: multiprocessing.synchronize.Event) -> None:
    """A new worker of `parent`'s pool: Ctrl-C left to `parent`, ended once `parent` is gone, and told of the pool's
    `stop` event (`stopping`)."""
    global _stop
    _stop = stop
    # A terminal's Ctrl-C reaches every process of the group. Raised in a worker, a second one found it waiting for its
    # next photo and multiprocessing printed 20-40 lines of traceback before the command's one line (4 of 6 runs);
    # the command stops the pool itself. A handler rather than SIG_IGN: a Ctrl-C already on its way when it changed
    # would be printed as 'Signal 2 ignored due to race condition'.
    signal.signal(signal.SIGINT, _left_to_the_parent)
    _end_with_parent(parent)


def _left_to_the_parent(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C in a worker: nothing; the command it works for stops, and stops it."""


def _end_with_parent(parent: int) -> None:
    """Start a thread that ends this worker once `parent` is gone. A forked worker holds the command's output locks
    (docs/outputs.md): after a `kill -9` of the command, its workers slept on a full pipe for ever, and every re-run
    was refused as 'another data convert (pid N) is writing it', N a process that no longer existed."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
