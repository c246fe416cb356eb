"""bench/inspection.py renders unseen close-ups and wide photos at a fault rate and prints every inspector's number."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench" / "inspection.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bench_prints_detection_fault_and_verdict_numbers_beside_the_constants(trained_checkpoint, tmp_path):
    out = tmp_path / "rows.jsonl"
    args = ["--checkpoint", str(trained_checkpoint), "--seeds", "9001", "--closeups", "3", "--wide", "2",
            "--size", "224x168", "--wide-scale", "2", "--fault-rate", "0.5", "--workdir", str(tmp_path / "work"),
            "--json", str(out), "--choose-on", "9003"]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["framing"], r["size"], r["photos"]) for r in rows] == [("closeup", [224, 168], 3), ("wide", [448, 336], 2)]
    for r in rows:
        assert re.search(rf"{r['framing']}\s+seed 9001: {r['photos']} photos, {r['faulty_photos']} with a fault, "
                         rf"{r['faults']} faults; AP50 per label \S+ \(constant \d\.\d{{3}}\)", stdout), stdout
        assert 0 <= r["verdict_accuracy"] <= 1 and r["chosen_on"] == 9003
        assert 0 <= r["faults_unboxed"] <= r["faults"]
        if r["faults"]:
            assert r["fault_recall_ceiling"] == pytest.approx(1 - r["faults_unboxed"] / r["faults"])
            assert r["fault_recall"] is None or r["fault_recall"] <= r["fault_recall_ceiling"] + 1e-9
        assert r["always_pass_accuracy"] == pytest.approx(1 - r["faulty_photos"] / r["photos"])
        assert r["always_fail_accuracy"] == pytest.approx(r["faulty_photos"] / r["photos"])
    assert re.search(r"faults: recall \S+ at precision .+? \(fail >= \d\.\d{2}; always pass: 0\.000, always fail: "
                     r"1\.000 at \S+\), best recall at precision >= 0\.5: \S+, AP \S+; verdict accuracy \d\.\d{3} "
                     r"\(always pass \d\.\d{3}, always fail \d\.\d{3}\)", stdout), stdout
    # Chosen, or refused as `bbuvl eval --choose-thresholds` refuses (the tiny checkpoint may predict no fault on the
    # three choosing photos): never a guess written as a choice
    assert re.search(r"verdict thresholds chosen on close-ups of seed 9003: review \d\.\d{3}, fail \d\.\d{3}|"
                     r"verdict thresholds cannot be chosen on these close-ups \(.+\); the checkpoint's judge", stdout), stdout
    assert re.search(r"faulty parts no box of their kind found: \d+ of \d+ \(recall at best \S+\); state right for "
                     r".+? of the boxed ones", stdout), stdout


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_wide_tiles_predicts_the_wide_photos_with_that_plan(trained_checkpoint, tmp_path):
    from bbuvl.data.schema import read_records
    from bbuvl.infer.predictor import Predictor

    work, out = tmp_path / "work", tmp_path / "rows.jsonl"
    args = ["--checkpoint", str(trained_checkpoint), "--seeds", "9001", "--closeups", "0", "--wide", "2",
            "--size", "224x168", "--wide-scale", "2", "--wide-tiles", "2x2", "--workdir", str(work), "--json", str(out)]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    assert [r["tiles"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())] == ["2x2"]
    val = work / "wide_9001" / "val.jsonl"
    paths = [str(val.parent / r.images[0]) for r in read_records(val)]
    lines = (val.parent / "pred_head.jsonl").read_text(encoding="utf-8").splitlines()
    direct = Predictor.load(trained_checkpoint).predict_lines(paths, "head", tiles="2x2")
    assert [json.loads(line)["objects"] for line in lines] == [line["objects"] for line in direct]


def test_a_malformed_wide_tiles_is_refused_before_anything_is_rendered(trained_checkpoint, tmp_path):
    args = ["--checkpoint", str(trained_checkpoint), "--seeds", "9001", "--closeups", "1", "--wide", "1",
            "--wide-tiles", "3y3", "--workdir", str(tmp_path / "work")]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 2 and "--wide-tiles" in stderr and "COLSxROWS" in stderr, stdout + stderr
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
