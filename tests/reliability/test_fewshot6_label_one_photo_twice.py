"""`fewshot label` on predictions of one photo under two names (a copy a phone export made, a link): the photo is
labelled once, under its first name, and the later line named, so the dataset passes `data check` as it says it does
(it failed it with 'the same photo twice')."""

from __future__ import annotations

import json
import os
import shutil

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app as data
from tests.fewshot.test_hostile_input import invoke, photos


def test_label_writes_one_photo_under_two_names_once_and_data_check_accepts_it(tmp_path):
    support = photos(tmp_path / "support", {"线缆": 2, "标签贴纸": 2})
    shots = tmp_path / "shots"
    shots.mkdir()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(shots / "IMG_1.jpg")
    shutil.copy(shots / "IMG_1.jpg", shots / "IMG_1 (1).jpg")
    os.symlink(shots / "IMG_1.jpg", shots / "link.jpg")
    Image.new("RGB", (40, 30), (40, 40, 200)).save(shots / "IMG_2.jpg")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"image": str(shots / name), "width": 40, "height": 30, "error": None,
                                         "objects": [{"bbox_2d": [2, 2, 30, 20], "label": "线缆", "score": 0.9}]}) + "\n"
                             for name in ("IMG_1.jpg", "IMG_1 (1).jpg", "IMG_2.jpg", "link.jpg")), encoding="utf-8")
    out = tmp_path / "labelled.jsonl"
    code, said = invoke("label", "--predictions", preds, "--support", support, "--backbone", "pixels:8", "--no-cache",
                        "--threshold", "-1", "--out", out)
    assert code == 0, said
    assert [json.loads(line)["images"] for line in out.read_text(encoding="utf-8").splitlines()] == [
        ["shots/IMG_1.jpg"], ["shots/IMG_2.jpg"]]
    assert f"{preds}:2: {shots / 'IMG_1 (1).jpg'} is the photo of line 1 ({shots / 'IMG_1.jpg'})" in said, said
    assert f"{preds}:4: {shots / 'link.jpg'} is the photo of line 1" in said, said
    assert "2 photos (2 left out)" in said, said
    result = CliRunner().invoke(data, ["check", str(out)])
    assert result.exit_code == 0, result.output
