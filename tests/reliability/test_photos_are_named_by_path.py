"""Class 4: a photo is its path inside its dataset, as the user named it; never its file name, never a link's target."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.infer.batch import PredictJob, photo_names, run_predictions
from tests.reliability.faults import fake_lines

BBU = "bbu基带处理单元/华为"


def photo(path: Path, colour: tuple[int, int, int], size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


def dataset(path: Path, images: list[str], size=(64, 48)) -> Path:
    rows = [{"images": [image], "width": size[0], "height": size[1],
             "objects": [{"bbox_2d": [2, 2, 30, 30], "desc": BBU}]} for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def predict(checkpoint: Path, source: Path, out: Path) -> list[dict]:
    r = CliRunner().invoke(app, ["predict", "-c", str(checkpoint), "-i", str(source), "-o", str(out), "--mode", "head",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def evaluate(pred: Path, gt: Path, out: Path):
    return CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])


def test_links_in_a_predict_folder_keep_their_own_names(tmp_path):
    photos = tmp_path / "photos"
    target = photo(photos / "site" / "a.png", (255, 0, 0))
    photo(photos / "other" / "a.png", (0, 0, 255))
    os.symlink(target, photos / "link1.png")
    os.symlink(Path("site") / "a.png", photos / "link2.png")
    assert photo_names(photos) == ["link1.png", "link2.png", "other/a.png", "site/a.png"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_writes_one_line_per_name_given_and_eval_pairs_each(trained_checkpoint, tmp_path):
    photos = tmp_path / "photos"
    target = photo(photos / "site" / "a.png", (255, 0, 0))
    photo(photos / "other" / "a.png", (0, 0, 255))
    os.symlink(target, photos / "link1.png")
    os.symlink(target, photos / "link2.png")
    lines = predict(trained_checkpoint, photos, tmp_path / "pred.jsonl")
    assert [line["image"] for line in lines] == ["link1.png", "link2.png", "other/a.png", "site/a.png"]
    assert all(line["error"] is None and (line["width"], line["height"]) == (64, 48) for line in lines)

    # The ground truth beside the folder names them photos/...: the same files, so every line pairs.
    gt = dataset(tmp_path / "val.jsonl", ["photos/site/a.png", "photos/other/a.png", "photos/link2.png"])
    r = evaluate(tmp_path / "pred.jsonl", gt, tmp_path / "m.json")
    assert r.exit_code == 0, r.output
    output = " ".join(r.output.split())
    assert "have no prediction line" not in output and "1 prediction line(s) name photos that are not in the ground truth" in output
    assert "line 1: link1.png" in output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_refuses_a_copy_of_the_photos_at_another_size(trained_checkpoint, tmp_path):
    data = tmp_path / "data"
    photo(data / "images" / "a.png", (255, 0, 0))
    gt = dataset(data / "val.jsonl", ["images/a.png"])
    copy = tmp_path / "copy"
    photo(copy / "images" / "a.png", (255, 0, 0), size=(32, 24))
    predict(trained_checkpoint, copy, tmp_path / "pred.jsonl")
    r = evaluate(tmp_path / "pred.jsonl", gt, tmp_path / "m.json")
    output = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output and not (tmp_path / "m.json").exists()
    assert "pred.jsonl:1: photo images/a.png was predicted at 32x24, but ground-truth photo images/a.png" in output
    assert "val.jsonl, record 1) is 64x48" in output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_never_pairs_by_file_name_alone(trained_checkpoint, tmp_path):
    data = tmp_path / "data"
    photo(data / "images" / "a.png", (255, 0, 0))
    gt = dataset(data / "val.jsonl", ["images/a.png"])
    photo(tmp_path / "small" / "a.png", (255, 0, 0), size=(32, 24))
    predict(trained_checkpoint, tmp_path / "small", tmp_path / "pred.jsonl")
    r = evaluate(tmp_path / "pred.jsonl", gt, tmp_path / "m.json")
    assert r.exit_code == 2 and "no prediction line names a photo of" in " ".join(r.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predicting_the_ground_truth_jsonl_pairs_every_record(trained_checkpoint, tmp_path):
    data = tmp_path / "data"
    photo(data / "images" / "siteA" / "IMG_1.png", (255, 0, 0))
    photo(data / "images" / "siteB" / "IMG_1.png", (0, 0, 255))
    gt = dataset(data / "val.jsonl", ["images/siteA/IMG_1.png", "images/siteB/IMG_1.png"])
    lines = predict(trained_checkpoint, gt, tmp_path / "pred.jsonl")
    assert [line["image"] for line in lines] == ["images/siteA/IMG_1.png", "images/siteB/IMG_1.png"]
    r = evaluate(tmp_path / "pred.jsonl", gt, tmp_path / "m.json")
    # Every photo paired: no note but the photo verdict's (these photos hold no fault, so its ROC AUC is undefined).
    # (The checkpoint names parts these photos lack, which have no AP: a note of its own, about the model.)
    notes = [line for line in r.output.splitlines()
             if line.startswith("note:") and "ROC AUC" not in line and "only predicted" not in line]
    assert r.exit_code == 0 and not notes, r.output


@pytest.mark.parametrize("world", [1, 2])
def test_resuming_an_output_that_named_photos_by_absolute_path_repeats_none(tmp_path, world, monkeypatch):
    root = tmp_path / "photos"
    names = [f"img{i}.jpg" for i in range(4)]
    out = tmp_path / "pred.jsonl"
    # An earlier version wrote absolute paths; the same input now names them relative to the folder.
    old = PredictJob([str(root / n) for n in names[:2]], out, "head", 1, source=str(root), checkpoint="/ckpt")
    run_predictions(old, fake_lines)
    monkeypatch.setenv("WORLD_SIZE", str(world))
    calls: list[str] = []
    new = PredictJob(names, out, "head", 1, source=str(root), checkpoint="/ckpt", root=root)
    for rank in reversed(range(world)):  # rank 0 last: it merges the parts there are
        monkeypatch.setenv("RANK", str(rank))
        run_predictions(new, lambda chunk: calls.extend(chunk) or fake_lines(chunk))
    assert sorted(calls) == [str(root / n) for n in names[2:]]
    images = [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(images) == 4 and images[2:] == names[2:]


def test_import_coco_names_a_linked_photo_by_its_link(tmp_path):
    src = tmp_path / "src"
    target = photo(src / "raw" / "IMG_9.png", (255, 0, 0))
    os.symlink(target, src / "site_a.png")
    coco = {"images": [{"id": 1, "file_name": "site_a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20], "iscrowd": 0}],
            "categories": [{"id": 1, "name": BBU}]}
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "ds"
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(src), str(out), "--val-ratio", "0"])
    assert r.exit_code == 0, r.output
    row = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["images"] == ["images/site_a.png"] and (out / "images" / "site_a.png").read_bytes() == target.read_bytes()
