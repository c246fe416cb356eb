"""bench/written_boxes.py measures each written box against the nearest labelled box of its category, on real files."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench" / "written_boxes.py"
SCREW, BBU = "螺丝连接点/BBU安装螺丝/连接正确", "bbu基带处理单元/华为"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_nearest_labelled_box_gives_distance_ratio_and_hit_per_place_in_the_answer(tmp_path):
    Image.new("RGB", (448, 336)).save(tmp_path / "a.jpg")
    gt = _write(tmp_path / "gt.jsonl", [{"images": ["a.jpg"], "width": 448, "height": 336, "objects": [
        {"bbox_2d": [100, 100, 150, 150], "desc": SCREW},
        {"bbox_2d": [300, 100, 350, 150], "desc": SCREW},
        {"bbox_2d": [0, 80, 448, 200], "desc": BBU}]}])
    pred = _write(tmp_path / "pred.jsonl", [{"image": "a.jpg", "width": 448, "height": 336, "objects": [
        {"bbox_2d": [100, 100, 150, 150], "label": SCREW, "score": 0.9},  # on the first screw: 0 px, ratio 1, a hit
        {"bbox_2d": [240, 100, 290, 150], "label": SCREW, "score": 0.8},  # 60 px left of the second, outside it
        {"bbox_2d": [0, 0, 448, 336], "label": BBU, "score": 0.7}]}])  # another category: not measured
    code, out, err = run_bench_in_process(BENCH, ["--pred", str(pred), "--gt", str(gt)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == ("螺丝连接点: 2 labelled; 2 written; centre inside 0.50; centre to the nearest 15 / 30 / 45 px; "
                        "side ratio 1.00; IoU >= 0.5 0.50")
    assert lines[1].startswith("  1. in the answer: 1 written; centre inside 1.00;") and lines[1].endswith("IoU >= 0.5 1.00")
    assert lines[2].startswith("  2. in the answer: 1 written; centre inside 0.00;") and lines[2].endswith("IoU >= 0.5 0.00")


def test_a_missing_predictions_file_is_one_line_naming_it(tmp_path):
    gt = _write(tmp_path / "gt.jsonl", [])
    code, out, err = run_bench_in_process(BENCH, ["--pred", str(tmp_path / "none.jsonl"), "--gt", str(gt)])
    assert code == 1 and "none.jsonl" in err and "Traceback" not in err
