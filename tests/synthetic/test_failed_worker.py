"""A photo that fails under `data synth --workers` (a full disk, a file-size limit) stops the other workers at once."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from bbuvl.data.workers import worker_limit
from bbuvl.synthetic.dataset import image_seed, synthesize
from bbuvl.synthetic.shapes import render_shapes

BAD = image_seed(0, "train", 16)  # the first photo of the second run of 16 a worker is handed
RENDERED: list[Path] = []  # the folder each render marks itself in, set before the workers fork


def _one_fails(seed: int, size: tuple[int, int]):
    """The shapes scene at a tenth of a second a photo, marking each photo rendered; one photo's write finds the disk
    full."""
    if seed == BAD:
        raise OSError(errno.ENOSPC, "No space left on device", "train_00016.jpg")
    (RENDERED[0] / str(seed)).touch()
    time.sleep(0.1)
    return render_shapes(seed, size)


def test_a_photo_that_fails_stops_the_other_workers_and_is_raised(tmp_path):
    # `ulimit -f 100; bbuvl data synth OUT --n-train 200 --workers 2`: train_00018.jpg could not be written while the
    # first worker was on its first photos, and 72 photos were rendered before the error was said (7 s, of 200)
    if worker_limit() < 2:
        pytest.skip("needs 2 CPU cores for 2 rendering processes")
    RENDERED[:] = [tmp_path / "rendered"]
    RENDERED[0].mkdir()
    with pytest.raises(OSError) as e:
        synthesize(tmp_path / "d", 200, 0, size=(96, 96), workers=2, render=_one_fails)
    assert e.value.errno == errno.ENOSPC and e.value.filename == "train_00016.jpg"
    rendered = len(os.listdir(RENDERED[0]))
    assert rendered <= 8, rendered  # the other worker's photo under way, not the 16 of its run and those after
    assert not (tmp_path / "d" / "train.jsonl").exists()
