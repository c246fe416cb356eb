"""`bbuvl eval --choose-thresholds` on photos that cannot decide thresholds: it says why and writes nothing into the
checkpoint, rather than a guess (a fail threshold of 1, or one at `review`) that looks chosen."""

from __future__ import annotations

import json

import pytest

from bbuvl.eval.faults import CannotChoose, choose_thresholds
from bbuvl.infer.verdict import THRESHOLDS_FILE
from tests.eval.test_judging import BAD, OK, files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import BOX, run


def rewrite(path, rows, key) -> None:
    """Replace a JSONL file's lines with one per row, built by `key`."""
    path.write_text("".join(json.dumps(key(*row), ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def gt_line(name, truth):
    return {"images": [name], "width": 100, "height": 100, "objects": [{"bbox_2d": BOX, "desc": truth}]}


def pred_line(name, label, score):
    return {"image": name, "width": 100, "height": 100, "raw": None, "error": None,
            "objects": [{"bbox_2d": BOX, "label": label, "score": score}]}


def said(output: str) -> str:
    return " ".join(output.split())


def test_the_chooser_refuses_photos_without_a_clean_one_or_without_a_predicted_fault():
    # Before: every photo faulty gave fail = review (0.4) at "precision 1"; no fault predicted gave review 1, fail 1.
    with pytest.raises(CannotChoose, match="every one of the 3 photos holds a fault"):
        choose_thresholds([True, True, True], [0.9, 0.4, None], 0.8, 0.9)
    with pytest.raises(CannotChoose, match=r"no fault was predicted in any of the 2 photos \(1 faulty\)"):
        choose_thresholds([True, False], [None, None], 0.8, 0.9)


@pytest.mark.parametrize("photos, says", [
    ([("a.jpg", BAD, BAD, 0.9), ("b.jpg", BAD, BAD, 0.4), ("c.jpg", BAD, OK, 0.6)], "every one of the 3 photos holds a fault"),
    ([("a.jpg", BAD, OK, 0.9), ("b.jpg", OK, OK, 0.4)], "no fault was predicted in any of the 2 photos"),
    ([("a.jpg", OK, BAD, 0.9), ("b.jpg", OK, OK, 0.4)], "no photo of the validation set holds a fault"),
])
def test_eval_writes_no_thresholds_when_the_photos_cannot_decide_them(files, tmp_path, photos, says):
    gt, pred, ckpt = files
    rewrite(gt, photos, lambda n, t, _p, _s: gt_line(n, t))
    rewrite(pred, photos, lambda n, _t, p, s: pred_line(n, p, s))
    output = said(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False))
    assert f"error: {gt}: no verdict thresholds can be chosen on these photos, so none are written: {says}" in output
    assert not (ckpt / THRESHOLDS_FILE).exists()


def test_eval_refuses_to_choose_on_ground_truth_photos_the_predictions_never_saw(files, tmp_path):
    gt, pred, ckpt = files
    lines = pred.read_text(encoding="utf-8").splitlines()
    pred.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")  # c.jpg and d.jpg not predicted (yet)
    output = said(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False))
    # Before: chosen on 4 photos, two of them counted as photos where nothing was found, and written.
    assert f"error: {gt}: 2 of its 4 photos have no predictions line (the first: c.jpg)" in output
    assert not (ckpt / THRESHOLDS_FILE).exists()
    run(gt, pred, tmp_path / "m.json")  # evaluating them without choosing is still allowed


def test_one_framing_that_cannot_decide_is_a_note_and_the_other_is_chosen(files, tmp_path):
    gt, pred, ckpt = files
    cabinets = [("e.jpg", BAD, 0.7), ("f.jpg", BAD, 0.65)]  # tiled photos, every one faulty
    with gt.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(gt_line(n, t), ensure_ascii=False) + "\n" for n, t, _ in cabinets))
    with pred.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps({**pred_line(n, BAD, s), "tiled": True}, ensure_ascii=False) + "\n"
                         for n, _, s in cabinets))
    output = said(run(gt, pred, tmp_path / "m.json", "--choose-thresholds"))
    assert ("the 2 photos predicted through tiles or zoom: every one of the 2 photos holds a fault" in output
            and "their verdict thresholds are not chosen" in output)
    assert (ckpt / THRESHOLDS_FILE).exists() and not (ckpt / "verdict_thresholds_tiled.json").exists()


@pytest.mark.parametrize("given, says", [(["--verdict-review", "0.1"], "--verdict-review sets"),
                                         (["--verdict-review", "0.1", "--verdict-fail", "0.2"],
                                          "--verdict-review and --verdict-fail set")])
def test_thresholds_given_and_thresholds_to_choose_are_refused_together(files, tmp_path, given, says):
    gt, pred, ckpt = files
    output = said(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", *given, ok=False))
    # Before: the chosen pair replaced the given one without a word.
    assert f"error: {says} the thresholds to judge with, and --choose-thresholds chooses them" in output
    assert not (ckpt / THRESHOLDS_FILE).exists() and not (tmp_path / "m.json").exists()
