"""Class 3: an importer reads nothing outside the folder it was given, and copies only files that are photos."""

import json
import os
import unicodedata
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.schema import read_records

BBU = "bbu基带处理单元/华为"


def photo(path: Path, fmt: str = "PNG", size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path, fmt)
    return path


def import_coco(tmp_path: Path, file_names: list, *flags: str) -> tuple[list, list[dict], str]:
    """Import a COCO file naming `file_names` from tmp_path/images; (records, errors.jsonl lines, CLI output)."""
    coco = {
        "images": [{"id": i + 1, "file_name": f, "width": 64, "height": 48} for i, f in enumerate(file_names)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 20, 20], "iscrowd": 0}
                        for i in range(len(file_names))],
        "categories": [{"id": 1, "name": BBU}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "ds"
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(tmp_path / "images"), str(out), "--val-ratio", "0",
                                 "--teachers", "0", *flags])
    assert r.exit_code == 0, r.output
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    return read_records(out / "train.jsonl"), errors, " ".join(r.output.split())


def copied(tmp_path: Path) -> list[str]:
    return sorted(p.relative_to(tmp_path / "ds" / "images").as_posix() for p in (tmp_path / "ds" / "images").rglob("*")
                  if p.is_file())


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A photo outside the images folder (any file a user did not mean to share)."""
    photo(tmp_path / "images" / "inside.png")
    return photo(tmp_path / "private" / "secret.png")


@pytest.mark.parametrize("how", ["dotdot", "absolute", "dotdot_backslash", "link_inside"])
def test_import_coco_copies_no_file_outside_images_dir(tmp_path, secret, how):
    if how == "link_inside":
        (tmp_path / "images" / "innocent.png").symlink_to(secret)
    name = {"dotdot": "../private/secret.png", "absolute": str(secret),
            "dotdot_backslash": "..\\private\\secret.png", "link_inside": "innocent.png"}[how]
    records, errors, output = import_coco(tmp_path, ["inside.png", name])
    assert [r.image for r in records] == ["images/inside.png"]
    assert copied(tmp_path) == ["inside.png"]
    assert len(errors) == 1 and "outside the images folder" in errors[0]["reason"]
    assert "--allow-outside" in errors[0]["reason"]
    assert "1 photos outside" in output and "--allow-outside" in output


def test_allow_outside_copies_a_photo_outside_images_dir(tmp_path, secret):
    Image.new("RGB", (64, 48), (30, 200, 30)).save(secret, "PNG")  # a photo of its own: import folds one photo's bytes
    records, errors, _ = import_coco(tmp_path, ["inside.png", "../private/secret.png"], "--allow-outside")
    assert errors == [] and len(records) == 2
    assert copied(tmp_path) == ["inside.png", "secret.png"]


def test_a_link_between_two_files_inside_images_dir_is_imported(tmp_path):
    target = photo(tmp_path / "images" / "a" / "real.png")
    (tmp_path / "images" / "alias.png").symlink_to(target)
    records, errors, _ = import_coco(tmp_path, ["alias.png"])
    assert errors == [] and len(records) == 1


@pytest.mark.parametrize("kind, reason", [
    ("text", "not an image"), ("gif", "GIF is not a supported photo format"), ("truncated", "cannot decode image"),
])
def test_import_coco_copies_only_files_that_decode_as_photos(tmp_path, kind, reason):
    good = photo(tmp_path / "images" / "good.jpg", "JPEG")  # the 64x48 the COCO file gives it
    bad = tmp_path / "images" / "bad.jpg"
    if kind == "gif":
        photo(bad, "GIF")
    else:
        bad.write_bytes(b"name,value\n1,2\n" if kind == "text" else good.read_bytes()[:300])
    records, errors, _ = import_coco(tmp_path, ["good.jpg", "bad.jpg"])
    assert [r.image for r in records] == ["images/good.jpg"] and copied(tmp_path) == ["good.jpg"]
    assert len(errors) == 1 and errors[0]["file"].endswith("images/bad.jpg") and reason in errors[0]["reason"]


@pytest.mark.parametrize("name, reason", [
    ("", "names no file"), ("   ", "names no file"), (None, "names no file"), ("sub", "a folder, not an image file"),
    ("gone.png", "image file not found"),
])
def test_import_coco_skips_names_that_name_no_photo(tmp_path, name, reason):
    photo(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "sub").mkdir()
    records, errors, _ = import_coco(tmp_path, ["good.png", name])
    assert [r.image for r in records] == ["images/good.png"] and copied(tmp_path) == ["good.png"]
    assert reason in errors[0]["reason"] and errors[0]["image_id"] in (2, "2")


def test_a_windows_file_name_with_backslashes_finds_its_photo(tmp_path):
    photo(tmp_path / "images" / "siteA" / "IMG_1.png")
    records, errors, _ = import_coco(tmp_path, ["siteA\\IMG_1.png"])
    assert errors == [] and [r.image for r in records] == ["images/siteA/IMG_1.png"]


def test_a_name_composed_differently_from_the_disk_finds_its_photo(tmp_path):
    nfd = unicodedata.normalize("NFD", "Café_机房")
    photo(tmp_path / "images" / nfd / f"{nfd}.png")
    nfc = unicodedata.normalize("NFC", "Café_机房")
    assert nfc != nfd
    records, errors, _ = import_coco(tmp_path, [f"{nfc}/{nfc}.png"])
    assert errors == [] and [r.image for r in records] == [f"images/{nfc}/{nfc}.png"]  # written composed
    assert check_dataset(tmp_path / "ds" / "train.jsonl") == []


def test_a_dataset_record_finds_a_photo_whose_name_is_composed_differently(tmp_path):
    photo(tmp_path / "images" / unicodedata.normalize("NFD", "é.png"))
    record = {"images": [f"images/{unicodedata.normalize('NFC', 'é.png')}"], "width": 64, "height": 48, "objects": []}
    (tmp_path / "train.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert check_dataset(tmp_path / "train.jsonl") == []


def test_vendor_convert_never_reads_a_link_out_of_its_folder(tmp_path):
    src = tmp_path / "export"
    photo(src / "a.jpg", "JPEG")
    secret = photo(tmp_path / "private" / "b.jpg", "JPEG")
    os.symlink(secret, src / "b.jpg")
    feature = {"type": "Feature", "properties": {"contentZh": {"标签": BBU}},
               "geometry": {"type": "ExtentPolygon", "coordinates": [[[2, 2], [30, 2], [30, 30], [2, 30], [2, 2]]]}}
    for stem in ("a", "b"):
        (src / f"{stem}.json").write_text(json.dumps({"markResult": {"features": [feature]}}, ensure_ascii=False),
                                          encoding="utf-8")
    out = tmp_path / "ds"
    summary = convert_dataset(src, out, ConvertOptions(val_ratio=0, teachers=0))
    assert summary["photos"]["converted"] == 1
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.jpg"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(errors) == 1 and "outside the source folder" in errors[0]["reason"]
