"""`bbuvl data stats|teachers|split|import-coco|export-coco` on real files, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import data_tools
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.layout import ERRORS, LABELS, SUMMARY, TEACHERS, TRAIN, VAL
from bbuvl.data.schema import read_dataset, read_records, resolve_image
from tests.data.test_hostile_inputs import photo, record, run, vendor_text

LABELS_CYCLE = ["bbu基带处理单元/华为", "螺丝连接点/BBU安装螺丝/连接正确", "挡风板/已安装", "标签贴纸"]


def make_app() -> typer.Typer:
    """Only this module's commands: cli/data.py also imports commands written elsewhere."""
    app = typer.Typer()
    for name in ("stats", "teachers", "split", "import-coco", "export-coco"):
        app.command(name)(getattr(data_tools, name.replace("-", "_")))
    return app


def invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(make_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """12 photos in src/images, described by src/all.jsonl; photo i has i % 5 objects."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    lines = []
    for i in range(12):
        size = (160, 120) if i % 2 else (120, 160)
        Image.new("RGB", size, (20 * i, 100, 50)).save(src / "images" / f"{i:02d}.jpg")
        objs = [{"bbox_2d": [5 + 20 * j, 4 + 21 * j, 25.5 + 20 * j, 30.25 + 21 * j], "desc": LABELS_CYCLE[(i + j) % 4]}
                for j in range(i % 5)]
        lines.append(json.dumps({"images": [f"images/{i:02d}.jpg"], "width": size[0], "height": size[1], "objects": objs},
                                ensure_ascii=False))
    (src / "all.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src / "all.jsonl"


def assert_images_resolve(jsonl: Path) -> None:
    for sample in read_dataset(jsonl):
        for r in [sample.student, *sample.teachers]:
            assert not Path(r.image).is_absolute(), r.image
            assert resolve_image(jsonl, r.image).is_file(), r.image


def test_stats_prints_tables_and_writes_json(dataset: Path, tmp_path: Path):
    out = invoke("stats", dataset, "--max-pixels", str(28 * 28 * 16), "--json", tmp_path / "s.json")
    assert "Labels" in out and "Vision tokens" in out
    s = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert s["images"] == 12 and s["objects"] == sum(i % 5 for i in range(12))
    assert s["vision_tokens"]["max_pixels"] == 28 * 28 * 16
    assert s["vision_tokens"]["max"] == CoordinateContract(max_pixels=28 * 28 * 16).vision_tokens((160, 120))


def test_stats_takes_pixel_bounds_from_a_config(dataset: Path, tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  family: qwen2_5_vl\n  min_pixels: 3136\n  max_pixels: 12544\n", encoding="utf-8")
    invoke("stats", dataset, "--config", cfg, "--json", tmp_path / "s.json")
    vt = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["vision_tokens"]
    assert (vt["min_pixels"], vt["max_pixels"]) == (3136, 12544)


def test_teachers_cover_every_label_and_paths_resolve_from_the_new_folder(dataset: Path, tmp_path: Path):
    out_file = tmp_path / "elsewhere" / "deeper" / "teachers.jsonl"
    out = invoke("teachers", dataset, out_file, "--k", "3", "--seed", "1")
    assert "labels covered: 4 of 4" in out
    teachers = read_records(out_file)
    assert len(teachers) == 3
    assert_images_resolve(out_file)


def test_split_writes_train_and_val_with_resolving_paths(dataset: Path, tmp_path: Path):
    out_dir = tmp_path / "split"
    invoke("split", dataset, out_dir, "--val-ratio", "0.25", "--seed", "3")
    train, val = read_records(out_dir / TRAIN), read_records(out_dir / VAL)
    assert (len(train), len(val)) == (9, 3)
    assert {r.image for r in train}.isdisjoint({r.image for r in val})
    assert_images_resolve(out_dir / TRAIN)
    assert_images_resolve(out_dir / VAL)


def test_export_then_import_coco_rebuilds_the_dataset(dataset: Path, tmp_path: Path):
    coco_file = tmp_path / "coco" / "instances.json"
    invoke("export-coco", dataset, coco_file)
    coco = json.loads(coco_file.read_text(encoding="utf-8"))
    assert coco["images"][0]["file_name"] == "../src/images/00.jpg"
    assert [c["name"] for c in coco["categories"]] == sorted(LABELS_CYCLE)

    out = tmp_path / "imported"
    invoke("import-coco", coco_file, coco_file.parent, out, "--val-ratio", "0.25", "--teachers", "2", "--allow-outside")
    for name in (TRAIN, VAL, TEACHERS, LABELS, SUMMARY, ERRORS):
        assert (out / name).is_file(), name
    assert (out / ERRORS).read_text(encoding="utf-8") == ""
    imported = read_records(out / TRAIN) + read_records(out / VAL)
    assert len(read_records(out / TEACHERS)) == 2
    assert_images_resolve(out / TRAIN)
    original = {Path(r.image).name: r.sorted() for r in read_records(dataset)}
    assert len(imported) == len(original)
    for r in imported:
        assert r.image.startswith("images/")
        o = original[Path(r.image).name]
        assert r.size == o.size
        assert [(x.bbox_2d, x.desc) for x in r.objects] == [(x.bbox_2d, x.desc) for x in o.objects]


def test_import_coco_records_skipped_entries_and_warns_on_foreign_labels(tmp_path: Path):
    images = tmp_path / "coco_images"
    (images / "sub").mkdir(parents=True)
    for shade, name in enumerate(("a.jpg", "sub/b.jpg")):
        Image.new("RGB", (100, 80), (shade * 90, 0, 0)).save(images / name)  # two photos: import folds one photo's bytes
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                   {"id": 2, "file_name": "sub/b.jpg", "width": 100, "height": 80},
                   {"id": 3, "file_name": "gone.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "标签贴纸"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 1},
            {"id": 4, "image_id": 9, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 0},
        ],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")
    out = invoke("import-coco", ann, images, tmp_path / "ds", "--val-ratio", "0", "--link")
    assert "label 'person' (1 objects) is not in the hierarchy" in out
    errors = [json.loads(line) for line in (tmp_path / "ds" / ERRORS).read_text(encoding="utf-8").splitlines()]
    assert sorted(str(e.get("annotation_id") or e["image_id"]) for e in errors) == ["3", "3", "4"]
    assert any(e["reason"] == "image file not found" and e["file"].endswith("gone.jpg") for e in errors)
    records = read_records(tmp_path / "ds" / TRAIN)
    assert sorted(r.image for r in records) == ["images/a.jpg", "images/sub/b.jpg"]
    assert {o.desc for r in records for o in r.objects} == {"person", "标签贴纸"}
    assert (tmp_path / "ds" / "images" / "sub" / "b.jpg").is_file()


def test_stats_of_a_photo_no_frame_can_hold_names_the_photo(dataset: Path):
    lines = dataset.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace('"width": 160', '"width": 100000')  # 100000x120: beyond smart_resize's aspect ratio
    dataset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(make_app(), ["stats", str(dataset)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"error: {dataset}:4: image images/03.jpg: image size 100000x120: aspect ratio" in said, \
        result.output


def test_import_coco_of_one_photo_listed_twice_keeps_its_first_entry_once(tmp_path: Path):
    images = tmp_path / "coco_images"
    images.mkdir()
    Image.new("RGB", (100, 80)).save(images / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "./a.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "标签贴纸"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 30, 40]}]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")
    invoke("import-coco", ann, images, tmp_path / "ds", "--val-ratio", "0")
    (record,) = read_records(tmp_path / "ds" / TRAIN)
    assert record.id == "1" and len(record.objects) == 1  # one photo, its boxes once: it cannot land in train and val
    (error,) = [json.loads(line) for line in (tmp_path / "ds" / ERRORS).read_text(encoding="utf-8").splitlines()]
    assert error["image_id"] == "2" and error["reason"].startswith("the same photo as image id 1")


def test_import_coco_whose_every_entry_is_refused_names_the_first_problem_and_writes_nothing(tmp_path: Path):
    images = tmp_path / "coco_images"
    images.mkdir()
    Image.new("RGB", (100, 80)).save(images / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": "100", "height": 80}],
            "categories": [{"id": 1, "name": "标签贴纸"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]}]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")
    result = CliRunner().invoke(make_app(), ["import-coco", str(ann), str(images), str(tmp_path / "ds")])
    assert result.exit_code != 0
    assert (f"{ann}: no photo could be imported (2 problems); the first, image id 1: image entry without a usable "
            'id/file_name/width/height (width "100" is not a whole number). Nothing was written') in " ".join(
                result.output.split())
    assert not (tmp_path / "ds" / TRAIN).exists() and not (tmp_path / "ds" / ERRORS).exists()


def test_a_long_output_path_is_printed_whole_on_one_line_never_folded_where_output_is_piped(tmp_path: Path):
    # Piped or in a log, rich folded the line at 80 columns: a path longer than that came out cut in two.
    deep = tmp_path.joinpath(*["a_long_folder_name_for_a_site"] * 4)
    for i in range(2):
        photo(deep / "export" / f"{i}.jpg", colour=(90 * i, 40, 40))
        (deep / "export" / f"{i}.json").write_text(vendor_text(), encoding="utf-8")
    jsonl = deep / "export" / "d.jsonl"
    jsonl.write_text(record("0.jpg") + "\n" + record("1.jpg") + "\n", encoding="utf-8")
    runs = {("split", jsonl, deep / "parts"): f"-> {deep / 'parts'}",
            ("teachers", jsonl, deep / "t.jsonl", "--k", "1"): f"wrote {deep / 't.jsonl'}",
            ("export-coco", jsonl, deep / "coco.json"): f"-> {deep / 'coco.json'}",
            ("tile", jsonl, deep / "tiles"): f"-> {deep / 'tiles'}",
            ("convert", deep / "export", deep / "conv", "--workers", "1"): f"ok: dataset written to {deep / 'conv'}"}
    for args, line in runs.items():
        code, out = run(*args)
        assert code == 0 and line in out.splitlines()[-1], out


def test_import_coco_writes_a_category_named_in_english_as_its_hierarchy_label_and_says_so(tmp_path: Path):
    images = tmp_path / "coco_images"
    images.mkdir()
    for shade, name in enumerate(("a.jpg", "b.jpg")):
        Image.new("RGB", (100, 80), (shade * 90, 0, 0)).save(images / name)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "BBU base-band unit/Huawei"}, {"id": 2, "name": "标签贴纸"},
                           {"id": 3, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 10, 10]},
                            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [40, 30, 20, 20]}]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")

    said = " ".join(invoke("import-coco", ann, images, tmp_path / "ds", "--val-ratio", "0", "--teachers", "0").split())

    assert "label 'BBU base-band unit/Huawei' (1 objects) is the hierarchy's English for 'bbu基带处理单元/华为'" in said
    assert "label 'person' (1 objects) is not in the hierarchy" in said  # unknown in both languages: kept, warned
    labels = {o.desc for r in read_records(tmp_path / "ds" / TRAIN) for o in r.objects}
    assert labels == {"bbu基带处理单元/华为", "标签贴纸", "person"}
    summary = json.loads((tmp_path / "ds" / SUMMARY).read_text(encoding="utf-8"))
    assert summary["labels_from_english"] == {"BBU base-band unit/Huawei": "bbu基带处理单元/华为"}


def test_import_coco_names_the_image_entry_of_a_photo_it_could_not_use(tmp_path: Path):
    images = tmp_path / "coco_images"
    images.mkdir()
    Image.new("RGB", (100, 80)).save(images / "a.jpg")
    (images / "notes.jpg").write_text("not a photo", encoding="utf-8")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "gone.jpg", "width": 100, "height": 80},
                       {"id": 3, "file_name": "notes.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "标签贴纸"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 2, 30, 40]} for i in (1, 2, 3)]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")

    said = " ".join(invoke("import-coco", ann, images, tmp_path / "ds", "--val-ratio", "0", "--teachers", "0").split())

    assert f"{ann}: images[1] ({images / 'gone.jpg'}): image file not found" in said
    assert f"{ann}: images[2] ({images / 'notes.jpg'}):" in said
    errors = [json.loads(line) for line in (tmp_path / "ds" / ERRORS).read_text(encoding="utf-8").splitlines()]
    assert sorted(e["entry"] for e in errors) == ["images[1]", "images[2]"]
