"""Planting faults for real: a small full filesystem, a slow predictor to kill, stand-in prediction lines, another
writer's lock."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def held_elsewhere(out: Path, command: str, pid: int = 4242) -> Iterator[Path]:
    """Hold the lock of output `out` as another writer would (its own open file: flock tells the two apart even in
    one process), with `pid` and `command` in it; yields the lock file."""
    from bbuvl.outputs import lock_path

    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.truncate(0)
        fh.write(f"{pid} {command}\n")
        fh.flush()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)


def disk_full_after(monkeypatch, syncs: int) -> None:  # noqa: ANN001 - pytest's monkeypatch
    """Make every `os.fsync` after the first `syncs` fail with ENOSPC, as a disk that fills up mid-run does."""
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) > syncs:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@contextmanager
def small_tmpfs(path: Path, kib: int) -> Iterator[Path]:
    """A tmpfs of `kib` KiB mounted at `path` (root only); the test is skipped where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def unremovable(file: Path) -> Iterator[Path]:
    """Make `file` one nobody may remove, root included: immutable (chattr +i) as root, else its folder without write
    permission; skipped where neither holds (a file system without the attribute)."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(file)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a file immutable here (chattr +i)")
        undo = ["chattr", "-i", str(file)]
    else:
        file.parent.chmod(0o500)
        undo = ["chmod", "700", str(file.parent)]
    try:
        yield file
    finally:
        subprocess.run(undo, check=False)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files this process writes stop at `limit` bytes, as under `ulimit -f`: a write past it fails with EFBIG (Python
    ignores SIGXFSZ). Needs no root, unlike `small_tmpfs`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"the hard file-size limit here ({hard} bytes) is below {limit}")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def fake_lines(paths: list[str], pad: int = 0) -> list[dict]:
    """Prediction lines shaped like the predictor's, one per path (`pad` characters of raw text each)."""
    return [{"image": p, "width": 10, "height": 10, "objects": [{"bbox_2d": [1, 1, 5, 5], "label": "x", "score": 0.9}],
             "raw": "r" * pad, "error": None} for p in paths]


# A predict run in its own process: inputs img0..img{N-1}, `delay` seconds per image, so it can be killed mid-run.
SLOW_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.reliability.faults import fake_lines
from bbuvl.infer.batch import PredictJob, run_predictions
paths = [f"/photos/img{{i}}.jpg" for i in range({n})]
def predict(chunk):
    time.sleep({delay})
    return fake_lines(chunk, pad={pad})
run_predictions(PredictJob(paths, Path({out!r}), "head", 1, source="/photos", checkpoint="/ckpt"), predict)
"""


def start_slow_run(out: Path, n: int, delay: float, pad: int = 0) -> subprocess.Popen:
    """Start a slow predict run writing `out` in a child process."""
    code = SLOW_RUN.format(tests=str(Path(__file__).parents[2]), n=n, delay=delay, pad=pad, out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 30.0) -> None:  # noqa: ANN001 - any zero-argument callable
    """Poll until `condition()` is true (or fail the test)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail("timed out waiting for the child process")
        time.sleep(0.02)
