"""Pausing Python's cyclic garbage collector while an evaluation builds its many small objects.

Reading and scoring 5,000 photos creates millions of dicts, lists and floats that all live until the
evaluation returns. Each time the collector runs it walks every one of them and frees nothing (they hold no
cycles), which cost about 15% of `bbuvl eval`'s time in bench/eval_speed.py. Reference counting still frees
everything as usual while the collector is paused; only cycles wait until it resumes.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off, and turn it back on after (if it was on)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
