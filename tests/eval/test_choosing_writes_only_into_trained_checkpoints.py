"""`bbuvl eval --choose-thresholds` writes its pair into the checkpoint that made the predictions only when `bbuvl
train` wrote it: a plain model folder (a base model predicted zero-shot with --labels, an export) is a folder bbuvl did
not write, and it was given a verdict_thresholds.json it never had, changing an export's recorded content."""

from __future__ import annotations

import json
import shutil

from bbuvl.infer.output import Manifest, claim_output
from tests.eval.test_judging import BAD, BOX, OK, run


def files_of(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_choose_thresholds_writes_nothing_into_a_plain_model_folder(tiny_model_dir, tmp_path):
    plain = tmp_path / "base model"
    shutil.copytree(tiny_model_dir, plain)
    # 4 photos, 2 faulty, scored so that a pair can be chosen (tests/eval/test_judging.py's `files`)
    photos = [("a.jpg", BAD, BAD, 0.9), ("b.jpg", BAD, BAD, 0.4), ("c.jpg", OK, BAD, 0.6), ("d.jpg", OK, OK, 0.8)]
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps({"images": [n], "width": 100, "height": 100, "objects": [{"bbox_2d": BOX, "desc": t}]},
                                     ensure_ascii=False) + "\n" for n, t, _, _ in photos), encoding="utf-8")
    claim_output(pred, Manifest(input=str(gt), checkpoint=str(plain), mode="generate"))
    pred.write_text("".join(json.dumps({"image": n, "width": 100, "height": 100, "raw": None, "error": None,
                                        "objects": [{"bbox_2d": BOX, "label": p, "score": s}]}, ensure_ascii=False) + "\n"
                            for n, _, p, s in photos), encoding="utf-8")
    before = files_of(plain)
    said = " ".join(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False).split())
    assert (f"--choose-thresholds writes verdict_thresholds.json into the checkpoint that made these predictions, and "
            f"{plain} is a plain model folder") in said, said
    assert "--verdict-review and --verdict-fail" in said and "Traceback" not in said
    assert files_of(plain) == before and not (tmp_path / "m.json").exists()
    run(gt, pred, tmp_path / "m.json")  # scoring them writes nothing there, and is allowed
    assert files_of(plain) == before
