"""`--workers` of `bbuvl data convert|check|synth`: never more processes or threads than the cores this process may use.
A larger number is clamped with a one-line note (the output does not depend on it), run through the real CLI. A pool's
workers leave Ctrl-C to the command, which stops them without running what was still queued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bbuvl.data.workers import worker_limit
from tests.data.test_hostile_inputs import photo, run, vendor_text

ASKED = "100000"  # started that many processes (convert, synth) or threads (check)


def note(limit: int) -> str:
    """The note a clamped `--workers 100000` prints."""
    return f"note: --workers {ASKED} is more than the {limit} CPU core(s) this process may use; using {limit}"


def test_convert_and_check_clamp_workers_to_the_cores_and_say_so(tmp_path: Path):
    src = tmp_path / "export"
    for i in range(3):
        photo(src / f"p{i}.jpg", colour=(70 * i, 40, 90))
        (src / f"p{i}.json").write_text(vendor_text(), encoding="utf-8")
    out = tmp_path / "out"
    code, text = run("convert", src, out, "--workers", ASKED, "--val-ratio", "0")
    assert code == 0, text
    assert note(worker_limit()) in " ".join(text.split()), text
    assert [json.loads(line)["id"] for line in (out / "train.jsonl").open()] == ["p0", "p1", "p2"]
    code, text = run("check", out, "--workers", ASKED)
    assert code == 0 and note(worker_limit()) in " ".join(text.split()), text
    code, text = run("check", out, "--workers", str(worker_limit()))
    assert code == 0 and "note:" not in text, text  # the cores themselves are no note


def test_synth_clamps_workers_and_writes_what_one_process_writes(tmp_path: Path):
    common = ["--scene", "shapes", "--size", "96x96", "--n-train", "3", "--n-val", "1", "--teachers", "1"]
    code, text = run("synth", tmp_path / "many", *common, "--workers", ASKED)
    assert code == 0 and note(worker_limit()) in " ".join(text.split()), text
    code, text = run("synth", tmp_path / "one", *common)
    assert code == 0 and "note:" not in text, text
    for name in ("train.jsonl", "val.jsonl", "teachers.jsonl"):
        assert (tmp_path / "many" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_workers_below_the_least_are_still_refused_by_name(tmp_path: Path):
    code, text = run("synth", tmp_path / "s", "--workers", "0")
    assert code == 2 and "must be a whole number >= 1, got 0" in text, text
    code, text = run("check", tmp_path / "none.jsonl", "--workers", "-1")
    assert code == 2 and "must be a whole number >= 0, got -1" in text, text


def _killed(_: int) -> None:
    """A worker that dies as the system's out-of-memory killer ends one."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_is_one_error_saying_what_to_do():
    # convert and synth ended in a traceback of the pool's internals (BrokenProcessPool).
    import pytest

    from bbuvl.data.workers import process_pool, worker_deaths

    with pytest.raises(ChildProcessError, match="a process converting photos ended abruptly, killed .*; use fewer"):
        with worker_deaths("converting photos", "use fewer"), process_pool(1) as pool:
            list(pool.map(_killed, [1]))


# A command's pool, stopped by Ctrl-C to the whole process group (a terminal's), pressed twice: the parent stops and
# cleans up while its pool still stands, as data synth's does.
CTRL_C_TWICE = """
import os, signal, sys, time
from concurrent.futures import wait
from bbuvl.data.workers import process_pool

def busy():
    os.write(1, b"busy\\n")  # one write: print's two (text, then end) from two workers came out interleaved
    time.sleep(1.5)

try:
    with process_pool(2) as pool:
        tasks = [pool.submit(busy) for _ in range(2)]
        try:
            wait(tasks)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            time.sleep(1)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_ctrl_c_twice_to_a_pools_process_group_prints_no_worker_traceback():
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_TWICE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        assert [child.stdout.readline() for _ in range(2)] == ["busy\n"] * 2, child.communicate()
        os.killpg(child.pid, signal.SIGINT)
        time.sleep(0.3)  # the workers have stopped what they did (before: by a KeyboardInterrupt) and wait for more
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    # before: "Process ForkProcess-1: Traceback ... KeyboardInterrupt", 20-40 lines, from each worker
    assert child.returncode == 130 and err == "", err


def _note_and_wait(folder: Path) -> None:
    """A photo's worth of work: leaves its mark in `folder`."""
    (folder / f"{time.monotonic_ns()}").touch()
    time.sleep(0.05)


def test_leaving_a_pool_by_an_exception_drops_the_work_not_yet_begun(tmp_path: Path):
    # A stop (Ctrl-C or SIGTERM to the command alone) or an error in the command: its pool's exit waited for every
    # queued photo, 13 s of a 19 s data convert
    from bbuvl.data.workers import process_pool

    with pytest.raises(KeyboardInterrupt), process_pool(1) as pool:
        for _ in range(40):
            pool.submit(_note_and_wait, tmp_path)
        raise KeyboardInterrupt
    assert len(list(tmp_path.iterdir())) < 10  # what the worker had begun or been handed


class _Stop(BaseException):
    """What entry.py raises in the main thread on SIGTERM or SIGHUP."""


def _held_locks(futures) -> int:  # noqa: ANN001 - a list of futures
    """How many of `futures`' locks another thread finds held."""
    import threading

    held = []

    def look() -> None:
        for f in futures:
            if f._condition.acquire(timeout=0):
                f._condition.release()
            else:
                held.append(f)

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return len(held)


def _stopped_by_a_signal_while_waiting(wait_on, delay: float) -> int:  # noqa: ANN001 - a callable given the futures
    """Wait on 50,000 futures that never finish, stop the wait by SIGHUP's exception after `delay` seconds, as a
    command whose terminal closes is stopped; how many of their locks are then left held."""
    import os
    import signal
    import threading
    from concurrent.futures import Future

    futures = [Future() for _ in range(50_000)]

    def stop(signum, frame):  # noqa: ANN001, ANN202 - a signal handler, as entry.py's
        from bbuvl.data.workers import hold_signal

        if not hold_signal(signum):
            raise _Stop

    previous = signal.signal(signal.SIGHUP, stop)
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGHUP))
    try:
        timer.start()
        with pytest.raises(_Stop):
            wait_on(futures)
    finally:
        timer.cancel()
        signal.signal(signal.SIGHUP, previous)
    return _held_locks(futures)


def test_a_signal_stopping_the_wait_for_workers_results_leaves_no_lock_held():
    # `concurrent.futures.wait` and `as_completed` lock every pending future in a Python loop; the exception SIGHUP
    # raises there left locks held, the pool's thread blocked on one and the command hung (a `data synth --workers 2`
    # whose terminal closed). `completed` waits on a queue, which a signal interrupts holding nothing, and a signal
    # that comes while it takes a future's lock is held until it lets it go (`hold_signal`, as entry.py's handlers ask).
    import signal

    from bbuvl.data.workers import completed, results_in_order

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP on this OS")
    # `concurrent.futures.wait` in the old loop's place left 4,515 and 31,386 of the 50,000 locks held at 6 and 10 ms.
    delays = (0.001, 0.003, 0.006, 0.01, 0.02, 0.03)  # the signal lands while the futures are locked, or after
    for wait_on in (lambda fs: list(completed(fs)), lambda fs: list(results_in_order(fs))):
        assert [_stopped_by_a_signal_while_waiting(wait_on, delay) for delay in delays] == [0] * len(delays)


def test_completed_gives_each_future_once_as_it_finishes_and_results_in_order_keeps_their_order():
    from concurrent.futures import ThreadPoolExecutor

    from bbuvl.data.workers import completed, results_in_order

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(lambda i: i * i, i) for i in range(200)]
        assert sorted(f.result() for f in completed(futures)) == [i * i for i in range(200)]
        futures = [pool.submit(lambda i: i * i, i) for i in range(200)]
        assert list(results_in_order(futures)) == [i * i for i in range(200)]
        failing = [pool.submit(lambda: 1), pool.submit(lambda: 1 / 0)]
        with pytest.raises(ZeroDivisionError):
            list(results_in_order(failing))
