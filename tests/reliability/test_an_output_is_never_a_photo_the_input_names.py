"""An output file that is a photo an input JSONL names is refused, with --overwrite too: predict, eval (its --out and
its report's files), export-coco; reached by the photo's own name, a link, or a hard link."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.named_photos import refuse_named_photos
from bbuvl.outputs import OutputConflict


@pytest.fixture()
def dataset(small_dataset, tmp_path) -> Path:
    """A copy of the small dataset's val.jsonl and photos, and predictions of every photo (one box each)."""
    out = tmp_path / "d"
    shutil.copytree(small_dataset, out)
    lines = [json.loads(line) for line in (out / "val.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    with (out / "pred.jsonl").open("w", encoding="utf-8") as fh:
        for line in lines:
            objects = [dict(o, label=o["desc"], score=0.9) for o in line["objects"]][:1]
            fh.write(json.dumps({"image": line["images"][0], "width": line["width"], "height": line["height"],
                                 "objects": [{k: o[k] for k in ("bbox_2d", "label", "score")} for o in objects]},
                                ensure_ascii=False) + "\n")
    return out


def photos(folder: Path) -> dict[str, bytes]:
    """Every photo of the dataset copy, by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted((folder / "images").rglob("*")) if p.is_file()}


def first_photo(folder: Path, jsonl: str = "val.jsonl") -> Path:
    """The photo the first line of `jsonl` names."""
    line = json.loads((folder / jsonl).read_text(encoding="utf-8").splitlines()[0])
    return folder / line["images"][0]


def refused(args: list[str], photo: Path) -> str:
    """Run the command, expect a clean refusal naming the photo, and return what it said."""
    r = CliRunner().invoke(app, args)
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "names on line" in said and "--overwrite too" in said, r.output
    assert photo.name in said, said
    return said


def test_export_coco_and_eval_refuse_to_write_over_a_photo_the_dataset_names(dataset):
    before, photo = photos(dataset), first_photo(dataset)
    refused(["data", "export-coco", str(dataset / "val.jsonl"), str(photo), "--overwrite"], photo)
    refused(["eval", "--pred", str(dataset / "pred.jsonl"), "--gt", str(dataset / "val.jsonl"), "--out", str(photo),
             "--overwrite"], photo)
    assert photos(dataset) == before


def test_a_report_file_named_like_a_ground_truth_photo_is_refused(dataset):
    report = dataset / "rep"
    report.mkdir()
    photo = first_photo(dataset)
    Image.open(photo).save(report / "pr_curve.png")  # a photo the report's curve would replace
    for jsonl in ("val.jsonl", "pred.jsonl"):
        path = dataset / jsonl
        text = path.read_text(encoding="utf-8").replace(json.dumps(photo.relative_to(dataset).as_posix()),
                                                        json.dumps("rep/pr_curve.png"), 1)
        path.write_text(text, encoding="utf-8")
    before = (report / "pr_curve.png").read_bytes()
    refused(["eval", "--pred", str(dataset / "pred.jsonl"), "--gt", str(dataset / "val.jsonl"),
             "--out", str(dataset / "m.json"), "--report", str(report), "--overwrite"], report / "pr_curve.png")
    assert (report / "pr_curve.png").read_bytes() == before


def test_predict_refuses_an_out_that_is_a_photo_of_its_input_or_a_link_to_one(dataset, trained_checkpoint):
    before, photo = photos(dataset), first_photo(dataset)
    (dataset / "link.jsonl").symlink_to(photo)
    for out in (photo, dataset / "link.jsonl"):
        refused(["predict", "-c", str(trained_checkpoint), "-i", str(dataset / "val.jsonl"), "-o", str(out),
                 "--overwrite", "--device", "cpu"], photo)
    assert photos(dataset) == before


def test_a_hard_link_to_a_named_photo_is_that_photo_and_new_or_unrelated_outputs_read_nothing(dataset, tmp_path):
    photo = first_photo(dataset)
    os.link(photo, tmp_path / "same.json")
    with pytest.raises(OutputConflict, match="names on line 1"):
        refuse_named_photos({"--gt": dataset / "val.jsonl"}, [tmp_path / "same.json"])
    # Outputs not there yet, or there but no photo: nothing refused; an input that is no JSONL is the command's to name.
    (tmp_path / "other.json").write_text("{}", encoding="utf-8")
    (tmp_path / "broken.jsonl").write_bytes(b"\xff\xd8\xff\xe0 a photo named .jsonl")
    refuse_named_photos({"--gt": dataset / "val.jsonl", "--pred": tmp_path / "broken.jsonl", "--hierarchy": None},
                        [tmp_path / "new.json", tmp_path / "other.json"])
