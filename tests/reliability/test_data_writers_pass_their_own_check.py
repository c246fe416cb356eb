"""What `data convert` and `data import-coco` write passes `data check`, which training applies too: one object
annotated twice (one box with two labels, one label on nearly the same box) was written as the platform or the COCO
file had it, so the dataset a command made was refused by the next. The later copy goes to errors.jsonl instead."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def feature(label: str, box: tuple[float, float, float, float]) -> dict:
    """One FeatureCollection feature as the annotation platform writes it."""
    x1, y1, x2, y2 = box
    return {"type": "Feature", "properties": {"contentZh": {"标签": label}},
            "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]}}


def errors(folder: Path) -> list[dict]:
    """The lines of a dataset folder's errors.jsonl."""
    return [json.loads(line) for line in (folder / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def test_convert_keeps_one_of_an_object_annotated_twice_and_its_dataset_passes_check(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    features = [feature("线缆", (4, 5, 30, 40)), feature("标签贴纸", (4, 5, 30, 40)),  # one box, two labels
                feature("线缆", (40, 5, 60, 40)), feature("线缆", (40.2, 5, 60.2, 40)),  # one label, IoU 0.98
                feature("挡风板/未安装", (4, 42, 60, 47))]
    for i, stem in enumerate(("a", "b")):
        Image.new("RGB", (64, 48), (90 * i, 120, 30)).save(src / f"{stem}.jpg", "JPEG")
        text = json.dumps({"markResult": {"type": "FeatureCollection", "features": features}}, ensure_ascii=False)
        (src / f"{stem}.json").write_text(text, encoding="utf-8")
    code, out = run("convert", src, tmp_path / "ds", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    found = sorted((e["file"], e["object"], e["reason"].split(" (objects")[0]) for e in errors(tmp_path / "ds"))
    assert found == [(f"{s}.json", o, why) for s in "ab" for o, why in (
        (1, "duplicate box [4, 5, 30, 40] with labels '线缆' and '标签贴纸'"),
        (3, "same label '线缆' on nearly the same box (IoU 0.98)"))], found
    records = [json.loads(line) for line in (tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [len(r["objects"]) for r in records] == [3, 3]
    code, out = run("check", tmp_path / "ds")
    assert code == 0 and "has no errors" in out, out


def test_import_coco_keeps_one_of_an_object_annotated_twice_and_its_dataset_passes_check(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(images / "a.jpg", "JPEG")
    boxes = [(1, [4, 5, 26, 35]), (2, [4, 5, 26, 35]), (1, [40, 5, 20, 35]), (1, [40.2, 5, 20, 35])]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "线缆"}, {"id": 2, "name": "标签贴纸"}],
            "annotations": [{"id": k + 1, "image_id": 1, "category_id": c, "bbox": b} for k, (c, b) in enumerate(boxes)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", images, tmp_path / "ds", "--val-ratio", "0")
    assert code == 0, out
    assert sorted(e["entry"] for e in errors(tmp_path / "ds")) == ["annotations[1]", "annotations[3]"]
    code, out = run("check", tmp_path / "ds")
    assert code == 0 and "has no errors" in out, out


def test_a_dataset_converted_in_english_passes_check_and_its_faults_are_faults(tmp_path):
    # `data convert --lang en` writes each label as its hierarchy gloss; `data check` called every one an unknown
    # category, and the faults of such a dataset were no faults to training's weights and eval's verdicts.
    from bbuvl.data.faults import Faults

    src = tmp_path / "export"
    src.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(src / "a.jpg", "JPEG")
    features = [feature("螺丝连接点/BBU安装螺丝/连接错误", (4, 5, 30, 40)), feature("线缆", (40, 5, 60, 40))]
    (src / "a.json").write_text(json.dumps({"markResult": {"type": "FeatureCollection", "features": features}},
                                           ensure_ascii=False), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "ds", "--workers", "1", "--val-ratio", "0", "--lang", "en")
    assert code == 0, out
    (record,) = [json.loads(line) for line in (tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = [o["desc"] for o in record["objects"]]
    assert labels == ["screw or connection point/BBU mounting screw/wrong", "cable"], labels
    code, out = run("check", tmp_path / "ds")
    assert code == 0 and "has no errors" in out, out
    faults = Faults.load()
    assert faults.is_fault(labels[0]) and not faults.is_fault(labels[1])
    record["objects"][1]["desc"] = "线缆"  # one dataset in two languages: two names for one part
    (tmp_path / "ds" / "train.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n" + json.dumps(
        {**record, "objects": [{**record["objects"][0], "desc": "cable"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    code, out = run("check", tmp_path / "ds", "--no-decode")
    assert (f"{tmp_path / 'ds' / 'train.jsonl'}:2: label 'cable' is '线缆' (written at {tmp_path / 'ds' / 'train.jsonl'} "
            "line 1) in English: the model would learn two names for one part") in out, out
    record["objects"][1]["desc"] = "cabel"  # a typo is still an error
    (tmp_path / "ds" / "train.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    code, out = run("check", tmp_path / "ds")
    assert code == 1 and "objects[1]: unknown category 'cabel'" in out, out


def test_a_photo_no_model_frame_holds_is_an_error_of_check_and_no_writer_writes_one(tmp_path):
    # Sides further apart than 200:1, which Qwen's image processor refuses: `data stats` and training refused such a
    # photo, while `data check` passed it, `convert` and `import-coco` wrote it and `synth --size` drew it.
    src = tmp_path / "export"
    src.mkdir()
    for stem, size in (("wide", (20100, 100)), ("fine", (200, 100))):
        Image.new("RGB", size, (90, 120, 30)).save(src / f"{stem}.jpg", "JPEG")
        (src / f"{stem}.json").write_text(json.dumps({"markResult": {"features": [feature("线缆", (1, 1, 50, 50))]}},
                                                     ensure_ascii=False), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "ds", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    (error,) = errors(tmp_path / "ds")
    assert error["file"] == "wide.json" and "20100x100, 201.0 times as wide as it is tall: the model frame takes at " \
                                              "most 200:1" in error["reason"], error
    assert len((tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 1

    coco = {"images": [{"id": i, "file_name": f"{s}.jpg", "width": w, "height": 100}
                       for i, (s, w) in enumerate((("wide", 20100), ("fine", 200)), 1)],
            "categories": [{"id": 1, "name": "线缆"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 49, 49]} for i in (1, 2)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", src, tmp_path / "imported", "--val-ratio", "0")
    assert code == 0 and "1 entries skipped" in out, out
    assert "201.0 times as wide" in errors(tmp_path / "imported")[0]["reason"]

    line = {"images": ["export/wide.jpg"], "width": 20100, "height": 100,
            "objects": [{"bbox_2d": [1, 1, 50, 50], "desc": "线缆"}]}
    (tmp_path / "wide.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    code, out = run("check", tmp_path / "wide.jsonl")
    assert code == 1 and f"{tmp_path / 'wide.jsonl'}:1: image export/wide.jpg: 20100x100, 201.0 times as wide" in out, out

    code, out = run("synth", tmp_path / "synth", "--size", "20000x96", "--n-train", "1", "--n-val", "0")
    assert code == 2 and "--size 20000x96: 20000x96, 208.3 times as wide as it is tall" in out, out
    assert not (tmp_path / "synth").exists()


def test_tile_refuses_a_grid_whose_tiles_no_model_frame_holds_naming_the_line(tmp_path):
    # A thin photo (190:1) cut across its thin side gave 19000x54 tiles, written for check and training to refuse.
    Image.new("RGB", (19000, 100), (90, 120, 30)).save(tmp_path / "a.jpg", "JPEG")
    line = {"images": ["a.jpg"], "width": 19000, "height": 100, "objects": [{"bbox_2d": [1, 1, 50, 50], "desc": "线缆"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    code, out = run("tile", tmp_path / "train.jsonl", tmp_path / "tiles", "--grid", "1x2")
    assert code == 2, out
    assert (f"{tmp_path / 'train.jsonl'}:1: image a.jpg: a tile of it would be 19000x54, 351.9 times as wide as it is "
            "tall") in out, out
    assert not (tmp_path / "tiles").exists()
    code, out = run("tile", tmp_path / "train.jsonl", tmp_path / "tiles", "--grid", "4x1")
    assert code == 0, out
    code, out = run("check", tmp_path / "tiles", "--no-decode")
    assert code == 0 and "has no errors" in out, out


def test_import_coco_reads_a_category_named_by_its_english_gloss_as_check_does(tmp_path):
    # It warned "label 'cable' is not in the hierarchy" of a label `data check` accepts.
    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "a.jpg", "JPEG")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "cable"}, {"id": 2, "name": "cabel"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 20, 30]},
                            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 5, 20, 30]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path, tmp_path.parent / f"{tmp_path.name}-ds")
    assert code == 0, out
    assert "label 'cabel' (1 objects) is not in the hierarchy" in out and "label 'cable' (1 objects) is not" not in out, out
    assert "label 'cable' (1 objects) is the hierarchy's English for '线缆'" in out, out  # and written as that
