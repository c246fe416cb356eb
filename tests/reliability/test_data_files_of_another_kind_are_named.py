"""A file of another kind where a dataset (or a COCO file) is read is named by what it is, with the command that reads
it: a COCO file given to `data stats` was "line 1: invalid JSON" (pretty-printed) or "missing key 'width'", a platform
export given as a dataset folder "no train.jsonl", and a dataset given to `import-coco` "line 2: Extra data"."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app

LABEL = "线缆"


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def dataset_line(image: str) -> str:
    """One line of a JSONL dataset."""
    return json.dumps({"images": [image], "width": 64, "height": 48,
                       "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]}, ensure_ascii=False)


def platform_export(folder: Path) -> Path:
    """A photo and its annotation as the platform exports them (images/ and annotations/)."""
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(folder / "images" / "a.jpg", "JPEG")
    feature = {"type": "Feature", "properties": {"contentZh": {"标签": LABEL}},
               "geometry": {"type": "ExtentPolygon", "coordinates": [[[4, 5], [30, 5], [30, 40], [4, 40]]]}}
    text = json.dumps({"markResult": {"type": "FeatureCollection", "features": [feature]}}, ensure_ascii=False, indent=2)
    (folder / "annotations" / "a.json").write_text(text, encoding="utf-8")
    return folder


def test_a_coco_file_a_platform_annotation_or_predictions_given_as_a_dataset_are_named_with_their_command(tmp_path):
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]}],
                                "categories": [{"id": 1, "name": LABEL}]}, indent=2), encoding="utf-8")
    for command in (("stats", coco), ("split", coco, tmp_path / "parts"), ("tile", coco, tmp_path / "tiles")):
        code, out = run(*command)
        assert code == 2, out
        assert f"{coco}: a COCO detection file, not a JSONL dataset (a photo per line): `bbuvl data import-coco {coco} " \
               "IMAGES_DIR OUT` turns it into a dataset" in out, out
    code, out = run("check", coco, "--no-decode")
    assert code == 1 and f"{coco}: a COCO detection file, not a JSONL dataset" in out and ":0:" not in out, out

    annotation = platform_export(tmp_path / "export") / "annotations" / "a.json"
    code, out = run("teachers", annotation, tmp_path / "teachers.jsonl")
    assert code == 2 and "one photo's annotation as the annotation platform exports it, not a JSONL dataset" in out, out
    assert "`bbuvl data convert SRC OUT`" in out

    predictions = tmp_path / "pred.jsonl"
    predictions.write_text(json.dumps({"image": "a.jpg", "width": 64, "height": 48, "objects": [], "raw": "",
                                       "parse_ok": True, "verdict": None, "error": None}) + "\n", encoding="utf-8")
    code, out = run("export-coco", predictions, tmp_path / "coco_out.json")
    assert code == 2 and "predictions (what `bbuvl predict` writes), not a JSONL dataset" in out, out
    assert "`bbuvl eval` scores them against a dataset" in out
    assert not (tmp_path / "parts").exists() and not (tmp_path / "tiles").exists()


def test_a_dataset_or_predictions_given_to_import_coco_are_named_not_extra_data_at_line_2(tmp_path):
    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "a.jpg", "JPEG")
    Image.new("RGB", (64, 48), (30, 120, 90)).save(tmp_path / "b.jpg", "JPEG")
    dataset = tmp_path / "train.jsonl"
    dataset.write_text(dataset_line("a.jpg") + "\n" + dataset_line("b.jpg") + "\n", encoding="utf-8")
    code, out = run("import-coco", dataset, tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    assert code == 2, out
    assert f"{dataset}: a JSONL dataset (a photo per line), not a COCO file: every bbuvl command reads it" in out, out
    assert not (tmp_path.parent / f"{tmp_path.name}-out").exists()


def test_a_folder_given_as_a_dataset_names_what_it_holds_instead_of_train_jsonl(tmp_path):
    export = platform_export(tmp_path / "export")
    code, out = run("stats", export)
    assert code == 2, out
    assert (f"{export}: no train.jsonl or val.jsonl in this folder; annotations/a.json is one photo's annotation as the "
            f"annotation platform exports it: `bbuvl data convert {export} OUT` turns a folder of them") in out, out
    code, out = run("tile", export, tmp_path / "tiles")
    assert code == 2 and f"`bbuvl data convert {export} OUT`" in out, out

    folder = tmp_path / "ds"
    folder.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(folder / "a.jpg", "JPEG")
    (folder / "train.json").write_text(dataset_line("a.jpg") + "\n", encoding="utf-8")
    code, out = run("check", folder, "--no-decode")
    assert code == 1, out
    assert (f"{folder / 'train.jsonl'}: missing: a dataset folder needs a train.jsonl; train.json is there: a dataset "
            "folder's file is JSON Lines (one photo per line) named train.jsonl") in out, out
