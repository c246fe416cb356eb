"""Child processes a test starts: ended and waited for when the test ends, however it ended, so none outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def reaped(child: subprocess.Popen, *, group: bool = False) -> Iterator[subprocess.Popen]:
    """`child` for the block; then, if it still runs, SIGKILL to it (to its whole process group where `group`: a
    child started with start_new_session, whose own workers would outlive it), and it is waited for."""
    try:
        yield child
    finally:
        if child.poll() is None:
            try:
                if group:
                    os.killpg(child.pid, signal.SIGKILL)
                else:
                    child.kill()
            except ProcessLookupError:  # it ended between the poll and the kill
                pass
        child.wait()
