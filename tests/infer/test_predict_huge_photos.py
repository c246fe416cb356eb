"""A huge photo under a memory limit: predict ended in a raw MemoryError traceback that named no photo and wrote no line
for any. Tiles and zoom copied the whole photo to shrink it for the whole-photo pass and cut every region's crop before
the first pass; now the whole photo is resized straight from it and each crop is cut as its forward pass reads it, and a
photo this process has no memory for is its own error line, naming it and its size, while the run goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.infer.tiles import TilePlan, predict_tiled

pytestmark = pytest.mark.usefixtures("one_thread")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads and resets the peak in /proc/self")


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


# `bbuvl predict ARGS` in a fresh process that may map only EXTRA bytes more once torch and bbuvl are imported (a
# process of the test run holds memory freed by earlier tests, which a photo's pixels would take under any cap)
CAPPED_PREDICT = """
import resource, sys
import torch, transformers
import bbuvl.cli, bbuvl.infer.predictor
from bbuvl.entry import main

size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmData:"))
resource.setrlimit(resource.RLIMIT_DATA, (size + int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_DATA)[1]))
sys.argv = ["bbuvl", *sys.argv[2:]]
main()
"""


@linux_only
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_with_no_memory_to_decode_it_is_its_error_line_and_the_run_goes_on(trained_checkpoint, small_dataset,
                                                                                 tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset / "images", data / "images")
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    # 12000x9000: 432 MB decoded (Pillow holds RGB in 4 bytes a pixel), past the 384 MB the process may still map
    Image.new("RGB", (12000, 9000), (90, 120, 150)).save(data / "images" / "huge.jpg", quality=50)
    records.insert(1, {"images": ["images/huge.jpg"], "width": 12000, "height": 9000, "objects": []})
    gt = data / "val.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    run = subprocess.run([sys.executable, "-c", CAPPED_PREDICT, str(384 << 20), "predict", "-c", str(trained_checkpoint),
                          "-i", str(gt), "-o", str(out), "--mode", "head", "--device", "cpu"],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"})
    text = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0 and "Traceback" not in text, text
    assert "1 with errors" in text, text
    assert "image images/huge.jpg: out of memory decoding this 12000x9000 photo (108 megapixels)" in text, text
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["image"] for line in lines] == [r["images"][0] for r in records]  # every photo, in order
    assert lines[1]["error"].startswith(f"{data / 'images' / 'huge.jpg'}: out of memory decoding this 12000x9000")
    assert [line["error"] for line in lines[:1] + lines[2:]] == [None] * (len(lines) - 1)  # those after it too


@linux_only
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiles_of_a_huge_photo_hold_neither_a_copy_of_it_nor_every_crop_at_once():
    photo = Image.new("RGB", (4000, 3000), (90, 120, 150))  # 48 MB held as Pillow's 4 bytes a pixel
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    plan = TilePlan(grid=(16, 16), whole=True)  # 257 regions, each crop 448x336 or so: 0.6 MB
    shapes: list[tuple[int, int]] = []

    def predict(crops, tiles):  # reads its crops 8 at a time, as the predictor's forward passes do
        answers = []
        for start in range(0, len(crops), 8):
            batch = crops[start:start + 8]
            shapes.extend(c.size for c in batch)
            answers += [([], None) for _ in batch]
        return answers

    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
    before = _status("VmRSS")
    result = predict_tiled(predict, photo, plan, contract)
    grown = _status("VmHWM") - before
    assert len(result.regions) == len(shapes) == 257
    # Measured alone: 155 MB more at the peak when the 257 crops were cut ahead (the whole photo's a 48 MB copy first),
    # 11 MB cut a pass at a time
    assert grown < 24e6, f"{grown / 1e6:.0f} MB more at the peak"
