"""A validation photo is never a teacher in a training line (a sample's own teachers): its answer would be in a training
prompt, and validation would score a photo the model was shown solved. `data split` of samples drew a line for
validation while another, drawn for training, kept it as its teacher, and `data check` of the result said "no errors"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def record(name: str) -> dict:
    """A photo's record."""
    return {"images": [name], "width": 64, "height": 48, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}


def photos(folder: Path, names: list[str]) -> None:
    """A JPEG of its own colour for each name."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (64, 48), (30 * i, 90, 20)).save(folder / name, "JPEG", quality=95)


def test_split_refuses_samples_whose_teacher_it_would_draw_for_validation_and_plain_photos_still_split(tmp_path):
    names = [f"{i}.jpg" for i in range(6)]
    photos(tmp_path, names)
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"student": record(n), "teachers": [record(names[(i + 1) % 6])]}) + "\n"
                               for i, n in enumerate(names)), encoding="utf-8")
    code, out = run("split", samples, tmp_path / "parts", "--val-ratio", "0.5")
    assert code == 2, out
    assert f"{samples}:" in out and "which this split draws for validation: its answer would be in a training prompt" in out
    assert not (tmp_path / "parts").exists()
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(record(n)) + "\n" for n in names), encoding="utf-8")
    code, out = run("split", plain, tmp_path / "parts", "--val-ratio", "0.5")
    assert code == 0 and "3 train, 3 val photos" in out, out


def test_check_names_a_validation_photo_shown_as_a_teacher_in_train_by_path_or_by_content(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    shutil.copyfile(tmp_path / "c.jpg", tmp_path / "c_copy.jpg")  # the validation photo under another name
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"student": record("a.jpg"), "teachers": [record("c.jpg")]}) + "\n"
        + json.dumps({"student": record("b.jpg"), "teachers": [record("c_copy.jpg")]}) + "\n", encoding="utf-8")
    (tmp_path / "val.jsonl").write_text(json.dumps(record("c.jpg")) + "\n", encoding="utf-8")
    code, out = run("check", tmp_path)
    assert code == 1, out
    for line, image in ((1, "c.jpg"), (2, "c_copy.jpg")):
        assert (f"{tmp_path / 'train.jsonl'}:{line}: teachers[0]: image {image} is the photo of {tmp_path / 'val.jsonl'} "
                "line 1, a validation photo: its answer would be in a training prompt") in out, out
    (tmp_path / "val.jsonl").write_text(json.dumps({"student": record("c.jpg"), "teachers": [record("a.jpg")]}) + "\n",
                                        encoding="utf-8")  # a training photo teaching in validation leaks nothing
    (tmp_path / "train.jsonl").write_text(json.dumps(record("a.jpg")) + "\n" + json.dumps(record("b.jpg")) + "\n",
                                          encoding="utf-8")
    code, out = run("check", tmp_path)
    assert "validation photo" not in out and "0 error(s)" not in out and "has no errors" in out, out
