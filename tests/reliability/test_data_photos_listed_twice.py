"""A photo on two lines of a dataset, in one file or in its train and val, is refused by every `bbuvl data` command
that reads the dataset, naming both lines, as `split`, `teachers` and `export-coco` refuse it: `tile` kept one copy and
dropped the other line without a word (its tiles' bytes were written already), `stats` counted its boxes twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app

LABEL = "线缆"


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def dataset(folder: Path, train: list[str], val: list[str]) -> Path:
    """A dataset folder: a photo of its own colour per name in `images/`, and train/val lines naming them."""
    for i, name in enumerate(sorted(set(train + val))):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 90, 20)).save(folder / "images" / name, "JPEG", quality=95)
    for file, names in (("train.jsonl", train), ("val.jsonl", val)):
        lines = [json.dumps({"images": [f"images/{n}"], "width": 64, "height": 48,
                             "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]}, ensure_ascii=False) for n in names]
        (folder / file).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def test_tile_and_stats_refuse_a_photo_on_two_lines_of_one_file_naming_both(tmp_path: Path):
    ds = dataset(tmp_path / "ds", ["a.jpg", "b.jpg", "a.jpg"], ["c.jpg"])
    for command in (("tile", ds, tmp_path / "tiles"), ("stats", ds)):
        code, out = run(*command)
        assert code == 2, out
        assert f"{ds / 'train.jsonl'}:3: image images/a.jpg: the same photo as line 1" in out, out
    assert not (tmp_path / "tiles").exists()


def test_tile_and_stats_refuse_a_photo_in_both_train_and_val_naming_both_files(tmp_path: Path):
    ds = dataset(tmp_path / "ds", ["a.jpg", "b.jpg"], ["c.jpg", "b.jpg"])
    for command in (("tile", ds, tmp_path / "tiles"), ("stats", ds)):
        code, out = run(*command)
        assert code == 2, out
        assert f"{ds / 'val.jsonl'}:2: image images/b.jpg: the same photo as {ds / 'train.jsonl'} line 2" in out, out
    assert not (tmp_path / "tiles").exists()


def test_tile_refuses_one_photos_bytes_under_two_names_in_train_and_val(tmp_path: Path):
    ds = dataset(tmp_path / "ds", ["a.jpg", "b.jpg"], ["c.jpg"])
    shutil.copyfile(ds / "images" / "a.jpg", ds / "images" / "c.jpg")  # a copy renamed by hand
    code, out = run("tile", ds, tmp_path / "tiles")
    assert code == 2, out
    assert f"{ds / 'val.jsonl'}:1: image images/c.jpg: the same bytes as images/a.jpg, {ds / 'train.jsonl'} line 1" in out
    assert not (tmp_path / "tiles").exists()


def test_distinct_photos_in_train_and_val_are_all_tiled_and_counted(tmp_path: Path):
    ds = dataset(tmp_path / "ds", ["a.jpg", "b.jpg"], ["c.jpg"])
    code, out = run("tile", ds, tmp_path / "tiles", "--grid", "1x1")
    assert code == 0 and "2 train and 1 val tiles" in out, out
    code, out = run("stats", ds)
    assert code == 0 and "3 images, 3 objects" in out, out
