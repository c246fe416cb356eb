"""A rendering process killed under `data synth --workers` (the system's out-of-memory killer) ends in one clean error."""

from __future__ import annotations

import os
import signal

import pytest

from bbuvl.data.workers import worker_limit
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import render_shapes

PARENT = os.getpid()


def _killed_in_a_worker(seed: int, size: tuple[int, int]):
    """The shapes scene, except that a worker process kills itself as the system kills one out of memory."""
    if os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return render_shapes(seed, size)


def test_a_worker_killed_while_rendering_is_one_error_saying_what_to_do(tmp_path):
    # It was a traceback of the pool's internals (BrokenProcessPool), not an error the command prints.
    if worker_limit() < 2:
        pytest.skip("needs 2 CPU cores for 2 rendering processes")
    with pytest.raises(ChildProcessError) as e:
        synthesize(tmp_path / "d", 4, 0, size=(96, 96), workers=2, render=_killed_in_a_worker)
    assert isinstance(e.value, OSError)  # the CLI's user_errors prints OSErrors as one line
    assert "a process rendering 96x96 photos ended abruptly" in str(e.value) and "fewer --workers or a smaller --size" in str(e.value)
