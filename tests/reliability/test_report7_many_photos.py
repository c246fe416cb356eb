"""A report of many photos: its pictures are held encoded, as the page embeds them, not as pixels until the page is
written (--worst 300 held 776 MB of pictures, --worst 2000 would have held gigabytes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.schema import read_records
from bbuvl.eval.fonts import FontChoice
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.report import write_report

NO_CJK = FontChoice(None, "no CJK font found on this machine: labels are drawn in English")


def photos_evaluation(root: Path, n: int, size: tuple[int, int] = (800, 600)):
    """An evaluation of `n` photos of `size`, each with one part its prediction misses (so each is among the worst)."""
    (root / "ds").mkdir(parents=True)
    rows, lines = [], []
    for i in range(n):
        name = f"照片 {i}.jpg"
        shade = Image.linear_gradient("L").resize(size)  # smooth, as a photo is: its JPEG is small
        Image.merge("RGB", (shade, shade.rotate(90 + i), Image.new("L", size, 8 * i))).save(root / "ds" / name)
        rows.append({"images": [name], "width": size[0], "height": size[1],
                     "objects": [{"bbox_2d": [10, 10, 200, 150], "desc": "线缆"}, {"bbox_2d": [300, 300, 500, 450], "desc": "线缆"}]})
        lines.append({"image": name, "width": size[0], "height": size[1], "raw": None, "error": None,
                      "objects": [{"bbox_2d": [10, 10, 200, 150], "label": "线缆", "score": 0.9}]})
    gt, pred = root / "ds" / "val.jsonl", root / "ds" / "pred.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pred.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred)


def peak_rss_since_reset() -> int:
    """This process's peak resident memory in bytes since `reset_peak_rss`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def current_rss() -> int:
    """This process's resident memory in bytes now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads and resets the peak in /proc/self (Linux)")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_holds_its_pictures_encoded_not_as_pixels(tmp_path):
    evaluation = photos_evaluation(tmp_path, 10)
    write_report(evaluation, tmp_path / "warm", NO_CJK, worst=0)  # fonts and matplotlib loaded once
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
    before = current_rss()
    index = write_report(evaluation, tmp_path / "report", NO_CJK, worst=10)
    grown = peak_rss_since_reset() - before
    page = index.read_text(encoding="utf-8")
    assert page.count("src='data:image/jpeg") == 10
    # Each picture is 1636x657 pixels, 3.2 MB as RGB, about 0.1 MB as the page's JPEG: 10 held as pixels grew the
    # peak by 57 MB, held encoded by 14 MB.
    assert grown < 32e6, f"{grown / 1e6:.0f} MB more at the peak"
