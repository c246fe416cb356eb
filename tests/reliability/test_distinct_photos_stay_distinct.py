"""Class 2: two photos of one name stay two photos; the same photo twice is flagged by check and eval."""

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.data.schema import read_records, resolve_image

BBU = "bbu基带处理单元/华为"


def photo(path: Path, colour: tuple[int, int, int], size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


def coco(file_names: list[str], size=(64, 48)) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": f, "width": size[0], "height": size[1]} for i, f in enumerate(file_names)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2 + i, 2, 20, 20], "iscrowd": 0}
                        for i in range(len(file_names))],
        "categories": [{"id": 1, "name": BBU}],
    }


def import_coco(tmp_path: Path, file_names: list[str], images_dir: Path, out: Path, *flags: str) -> list:
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco(file_names)), encoding="utf-8")
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(images_dir), str(out), "--val-ratio", "0", *flags])
    assert r.exit_code == 0, r.output
    return read_records(out / "train.jsonl")


def assert_each_record_shows_its_own_photo(records, out: Path, sources: dict[int, Path]) -> None:
    for r in records:
        stored = resolve_image(out / "train.jsonl", r.image)
        assert stored.read_bytes() == sources[r.objects[0].bbox_2d[0] - 2].read_bytes(), r.image


def test_same_file_name_in_two_site_folders_gives_two_photos(tmp_path):
    src = tmp_path / "src"
    a, b = photo(src / "siteA" / "IMG_0001.png", (255, 0, 0)), photo(src / "siteB" / "IMG_0001.png", (0, 0, 255))
    out = tmp_path / "ds"
    records = import_coco(tmp_path, ["siteA/IMG_0001.png", "siteB/IMG_0001.png"], src, out)
    assert len({r.image for r in records}) == 2
    assert_each_record_shows_its_own_photo(records, out, {0: a, 1: b})
    assert check_dataset(out / "train.jsonl") == []


def test_same_file_name_outside_the_images_folder_gets_a_content_hash(tmp_path):
    a, b = photo(tmp_path / "x" / "IMG_0001.png", (255, 0, 0)), photo(tmp_path / "y" / "IMG_0001.png", (0, 0, 255))
    out = tmp_path / "ds"
    records = import_coco(tmp_path, [str(a), "../y/IMG_0001.png"], tmp_path / "x", out, "--allow-outside")
    assert len({r.image for r in records}) == 2
    assert_each_record_shows_its_own_photo(records, out, {0: a, 1: b})


def test_a_photo_of_the_same_name_already_in_the_output_is_neither_overwritten_nor_reused(tmp_path):
    out = tmp_path / "ds"
    earlier = photo(out / "images" / "IMG_0001.png", (0, 255, 0))  # put there by someone else
    before = earlier.read_bytes()
    src = photo(tmp_path / "src" / "IMG_0001.png", (255, 0, 0))
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco(["IMG_0001.png"])), encoding="utf-8")
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(tmp_path / "src"), str(out), "--val-ratio", "0"])
    assert r.exit_code == 2 and "was not written by `bbuvl data import-coco`" in r.output, r.output
    assert earlier.read_bytes() == before and not (out / "train.jsonl").exists()
    # An earlier import's own photo of that name is replaced by the re-run's, never shown for the new record
    photo(tmp_path / "first" / "IMG_0001.png", (0, 0, 255))
    import_coco(tmp_path, ["IMG_0001.png"], tmp_path / "first", tmp_path / "again")
    records = import_coco(tmp_path, ["IMG_0001.png"], tmp_path / "src", tmp_path / "again")
    assert_each_record_shows_its_own_photo(records, tmp_path / "again", {0: src})


def record(image: str, x: float = 2) -> dict:
    return {"images": [image], "width": 64, "height": 48, "objects": [{"bbox_2d": [x, 2, x + 20, 22], "desc": BBU}]}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_check_flags_one_photo_twice_in_a_file_by_path_and_by_content(tmp_path):
    photo(tmp_path / "images" / "a.png", (255, 0, 0))
    photo(tmp_path / "images" / "copy_of_a.png", (255, 0, 0))
    photo(tmp_path / "images" / "b.png", (0, 0, 255))
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png"), record("images/b.png"),
                                                   record("images/a.png", 5), record("images/copy_of_a.png")])
    problems = [p for p in check_dataset(train) if "same photo" in p.message]
    assert [(p.line, p.severity) for p in problems] == [(3, "error"), (4, "error")]
    assert "the same file at line 1" in problems[0].message
    assert "the same content as images/a.png at line 1" in problems[1].message


def test_check_flags_a_photo_in_both_train_and_val(tmp_path):
    photo(tmp_path / "images" / "a.png", (255, 0, 0))
    photo(tmp_path / "images" / "a_again.png", (255, 0, 0))
    photo(tmp_path / "images" / "b.png", (0, 0, 255))
    write_jsonl(tmp_path / "train.jsonl", [record("images/a.png"), record("images/b.png")])
    write_jsonl(tmp_path / "val.jsonl", [record("images/b.png"), record("images/a_again.png")])
    write_jsonl(tmp_path / "teachers.jsonl", [record("images/a.png")])
    problems = [p for p in check_dataset(tmp_path) if "training and validation" in p.message]
    assert [(Path(p.file).name, p.line) for p in problems] == [("val.jsonl", 1), ("val.jsonl", 2)]
    r = CliRunner().invoke(app, ["data", "check", str(tmp_path)])
    assert r.exit_code != 0 and "training and validation" in r.output


def test_eval_refuses_a_ground_truth_with_a_photo_twice(tmp_path):
    photo(tmp_path / "images" / "a.png", (255, 0, 0))
    photo(tmp_path / "images" / "b.png", (0, 0, 255))
    gt = write_jsonl(tmp_path / "val.jsonl", [record("images/a.png"), record("images/b.png"), record("images/a.png", 30)])
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"image": str(tmp_path / "images" / n), "width": 64, "height": 48,
         "objects": [{"bbox_2d": [2, 2, 22, 22], "label": BBU, "score": 0.9}], "raw": None, "error": None}
        for n in ("a.png", "b.png")])
    out = tmp_path / "metrics.json"
    r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    # Before: a note, exit 0, and the repeat's objects scored as missed (which line was the repeat: the file's order)
    assert r.exit_code == 2 and not out.exists(), r.output
    assert "val.jsonl:3: image images/a.png: the same photo as line 1" in " ".join(r.output.split())
