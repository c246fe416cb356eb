"""A predictions file moved or copied with its photos to another folder, then given to `fewshot classify` and
`fewshot label`: its photo names are relative to the input its manifest records, which is gone. Every box was
'image file not found', named under a folder that never held it (the recorded folder's parent: a path that no longer
exists reads as a JSONL input); it is refused naming the recorded input and what to do, before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app

CLASSES = ("标签贴纸", "线缆")


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl fewshot ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def project(root: Path, absolute: bool = False) -> Path:
    """`root/photos/` (two photos), `root/support/<class>/`, and `root/preds.jsonl` as predict writes it for the
    photos folder: names relative to it (or absolute), and its manifest recording the folder's absolute path."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i, name in enumerate(("a [1].jpg", "b.jpg")):
        Image.new("RGB", (64, 48), (60 + 90 * i, 40, 200 - 90 * i)).save(photos / name, quality=95)
    for i, label in enumerate(CLASSES):
        (root / "support" / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), (60 + 90 * i, 40, 200 - 90 * i)).save(root / "support" / label / "s.png")
    preds = root / "preds.jsonl"
    box = {"bbox_2d": [4, 4, 40, 40], "label": CLASSES[0], "score": 0.9}
    preds.write_text("".join(json.dumps({"image": str(photos / n) if absolute else n, "width": 64, "height": 48,
                                         "objects": [box], "raw": "", "error": None}, ensure_ascii=False) + "\n"
                             for n in ("a [1].jpg", "b.jpg")), encoding="utf-8")
    preds.with_name("preds.jsonl.predict.json").write_text(json.dumps(
        {"input": str(photos), "checkpoint": str(root / "ckpt"), "mode": "generate", "tool": "bbuvl predict"}),
        encoding="utf-8")
    return preds


def commands(root: Path, cache: Path) -> list[tuple[list[str | Path], Path]]:
    """`fewshot classify` and `fewshot label` on `root`'s predictions, each with the output it writes."""
    common = ["--support", root / "support", "--backbone", "pixels:8", "--threshold", "-1", "--cache", cache]
    return [(["classify", "--query", root / "preds.jsonl", "--out", root / "answers.csv", *common], root / "answers.csv"),
            (["label", "--predictions", root / "preds.jsonl", "--out", root / "labelled.jsonl", *common],
             root / "labelled.jsonl")]


def test_predictions_moved_away_from_their_input_are_refused_naming_the_recorded_input(tmp_path: Path):
    old, new = tmp_path / "site 站点", tmp_path / "moved"
    project(old)
    for args, out in commands(old, tmp_path / "cache"):  # where predict wrote them, both read the photos
        code, said = run(*args)
        assert code == 0 and out.is_file(), said
        out.unlink()
    shutil.move(old, new)
    for args, out in commands(new, tmp_path / "cache"):
        code, said = run(*args)
        assert code == 2, said
        assert f"{new / 'preds.jsonl'}: its photo names are relative to the input predict read, {old / 'photos'} " \
               "(recorded in preds.jsonl.predict.json), which is no longer there" in said, said
        assert "not found" not in said, said
        assert not out.exists()


def test_the_manifests_input_written_to_the_new_place_reads_the_moved_photos(tmp_path: Path):
    old, new = tmp_path / "site", tmp_path / "moved"
    project(old)
    shutil.move(old, new)
    manifest = new / "preds.jsonl.predict.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"input": str(new / "photos")}), encoding="utf-8")
    for args, out in commands(new, tmp_path / "cache"):
        code, said = run(*args)
        assert code == 0, said
    rows = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(r)["images"] for r in rows] == [["photos/a [1].jpg"], ["photos/b.jpg"]]


def test_absolute_photo_names_are_read_though_the_recorded_input_is_gone(tmp_path: Path):
    root = tmp_path / "site"
    project(root, absolute=True)
    manifest = root / "preds.jsonl.predict.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"input": str(tmp_path / "list.jsonl")}),
                        encoding="utf-8")  # predict's input was a JSONL of absolute paths, deleted since
    for args, out in commands(root, tmp_path / "cache"):
        code, said = run(*args)
        assert code == 0 and out.is_file(), said
