"""One photo under two names (a vendor export that copied a photo: `IMG_1.jpg` and `IMG_1 (1).jpg`) is imported once, by
`data convert` and `data import-coco` alike, under its first name: its boxes once, never on both sides of a split, and
`data check` passes what was written. errors.jsonl names the copy and the photo it was folded into (`same_as`), and
says whether the two annotation sets agree, naming the boxes that differ; the first's are kept, and a difference is
said on the terminal too. Both copies were imported before, and `data check` refused the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image, ImageDraw
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.schema import read_records

LABEL = "线缆"


def run(*args: object) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def photo(path: Path, shade: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A real JPEG of its own: a grey of `shade` with a red block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (shade, shade, shade))
    ImageDraw.Draw(image).rectangle([5, 5, 30, 30], fill=(220, 20, 20))
    image.save(path, "JPEG", quality=95)
    return path


def with_exif(src: Path, dst: Path, orientation: int) -> Path:
    """`src`'s JPEG bytes with an EXIF block of `orientation` and a date put before them, as a viewer that turns or
    re-dates a photo without decoding it writes: the same compressed pixels."""
    exif = Image.Exif()
    exif[0x0112], exif[0x0132] = orientation, "2026:11:29 10:00:00"
    block = b"Exif\x00\x00" + exif.tobytes()
    data = src.read_bytes()
    dst.write_bytes(data[:2] + b"\xff\xe1" + (len(block) + 2).to_bytes(2, "big") + block + data[2:])
    return dst


def vendor(path: Path, *boxes: tuple[float, float, float, float]) -> None:
    """One photo's FeatureCollection, a LABEL box each."""
    features = [{"type": "Feature", "properties": {"contentZh": {"标签": LABEL}},
                 "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]}}
                for x1, y1, x2, y2 in boxes]
    path.write_text(json.dumps({"markResult": {"type": "FeatureCollection", "features": features}}, ensure_ascii=False),
                    encoding="utf-8")


def coco(path: Path, names: list[str], boxes: list[list[list[float]]]) -> Path:
    """A COCO file of one category, LABEL: image `i` is `names[i]`, 64x48, with `boxes[i]` ([x, y, w, h] each)."""
    listed = [(i, box) for i, image_boxes in enumerate(boxes, 1) for box in image_boxes]
    annotations = [{"id": k, "image_id": i, "category_id": 1, "bbox": box} for k, (i, box) in enumerate(listed, 1)]
    path.write_text(json.dumps({"images": [{"id": i, "file_name": n, "width": 64, "height": 48}
                                           for i, n in enumerate(names, 1)],
                                "annotations": annotations, "categories": [{"id": 1, "name": LABEL}]},
                               ensure_ascii=False), encoding="utf-8")
    return path


def errors_of(out: Path) -> list[dict]:
    """errors.jsonl of a dataset folder."""
    return [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def records_of(out: Path) -> list:
    """Every record a dataset folder's train and val hold."""
    return [r for name in ("train.jsonl", "val.jsonl") if (out / name).is_file() for r in read_records(out / name)]


def test_import_coco_takes_one_photo_copied_under_a_second_name_once_and_its_check_passes(tmp_path: Path):
    src = tmp_path / "export"
    for i in range(4):
        photo(src / f"IMG_{i}.jpg", 40 * i + 20)
    shutil.copyfile(src / "IMG_1.jpg", src / "IMG_1 (1).jpg")
    names = [f"IMG_{i}.jpg" for i in range(4)] + ["IMG_1 (1).jpg"]
    boxes = [[[5, 5, 26, 26]] for _ in range(5)]
    out = tmp_path / "out"
    code, said = run("import-coco", coco(tmp_path / "c.json", names, boxes), src, out, "--val-ratio", "0.5")
    assert code == 0, said
    assert "1 entry named a photo imported already (the same file, or its bytes or compressed pixels under another " \
           "name) and was folded into it, with the same boxes" in said, said
    kept = records_of(out)
    assert sorted(r.image for r in kept) == [f"images/IMG_{i}.jpg" for i in range(4)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"IMG_{i}.jpg" for i in range(4)]
    (error,) = errors_of(out)
    assert error["image_id"] == "5" and error["file"].endswith("IMG_1 (1).jpg") and error["same_as"].endswith("IMG_1.jpg")
    assert error["reason"].startswith(f"the same bytes as {src / 'IMG_1.jpg'} (image id 2), imported as images/IMG_1.jpg")
    assert error["reason"].endswith("its boxes are the same as those kept (1 box)")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["same_photo"] == {"folded": 1, "other_boxes": 0}
    code, said = run("check", out)
    assert code == 0, said


def test_import_coco_of_two_copies_with_other_boxes_keeps_the_first_and_names_the_boxes_that_differ(tmp_path: Path):
    src = tmp_path / "export"
    photo(src / "IMG_1.jpg", 30)
    photo(src / "IMG_2.jpg", 90)
    shutil.copyfile(src / "IMG_1.jpg", src / "IMG_1 (1).jpg")
    boxes = [[[5, 5, 26, 26]], [[1, 1, 10, 10]], [[5, 5, 26, 26], [40, 20, 10, 10]]]  # the copy has a box more
    out = tmp_path / "out"
    code, said = run("import-coco", coco(tmp_path / "c.json", ["IMG_1.jpg", "IMG_2.jpg", "IMG_1 (1).jpg"], boxes), src,
                     out, "--val-ratio", "0")
    assert code == 0, said
    assert f"1 of them with other boxes than the entry kept: check those in {out / 'errors.jsonl'}" in said, said
    (first, _) = sorted(records_of(out), key=lambda r: r.image)
    assert first.image == "images/IMG_1.jpg" and [o.bbox_2d for o in first.objects] == [[5, 5, 31, 31]]
    (error,) = errors_of(out)
    assert error["same_as"].endswith("IMG_1.jpg") and error["image_id"] == "3"
    assert (f"its boxes differ and those of image id 1 were kept: 1 of its 2 boxes is not among the kept ones ('{LABEL}' "
            "[40, 20, 50, 30]). Which is right cannot be told here") in error["reason"], error["reason"]
    code, said = run("check", out)
    assert code == 0, said


def test_import_coco_of_one_file_listed_under_two_ids_with_other_boxes_says_they_differ(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg", 30)
    photo(tmp_path / "images" / "b.jpg", 120)
    out = tmp_path / "out"
    code, said = run("import-coco", coco(tmp_path / "c.json", ["a.jpg", "b.jpg", "./a.jpg"],
                                         [[[5, 5, 26, 26]], [[1, 1, 9, 9]], [[6, 30, 10, 10]]]),
                     tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, said
    (error,) = errors_of(out)
    assert error["reason"].startswith("the same photo as image id 1, imported as images/a.jpg"), error["reason"]
    assert (f"1 of its 1 box is not among the kept ones ('{LABEL}' [6, 30, 16, 40]); 1 of the 1 kept is not among its "
            f"('{LABEL}' [5, 5, 31, 31])") in error["reason"], error["reason"]


def test_convert_takes_one_photo_exported_under_two_names_once_and_says_when_their_boxes_differ(tmp_path: Path):
    src = tmp_path / "export"
    for i in range(4):
        photo(src / f"IMG_{i}.jpg", 40 * i + 20)
        vendor(src / f"IMG_{i}.json", (5, 5, 31, 31))
    shutil.copyfile(src / "IMG_1.jpg", src / "IMG_1 (1).jpg")
    vendor(src / "IMG_1 (1).json", (5, 5, 31, 31))  # annotated alike
    shutil.copyfile(src / "IMG_2.jpg", src / "IMG_2 (1).jpg")
    vendor(src / "IMG_2 (1).json", (5, 5, 31, 31), (40, 20, 50, 30))  # annotated again, a box more
    out = tmp_path / "out"
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0.5")
    assert code == 0, said
    assert "photos folded (converted already, under another name) │ 2" in said, said
    assert "with other boxes than the one kept │ 1" in said and "objects of folded photos │ 3" in said, said
    assert f"1 photo(s) exported under two names carry other boxes under each: the first name's were kept; see " \
           f"'same_as' in {out / 'errors.jsonl'}" in said, said
    assert sorted(r.id for r in records_of(out)) == [f"IMG_{i}" for i in range(4)]
    errors = {e["file"]: e for e in errors_of(out)}
    assert errors["IMG_1 (1).json"]["same_as"] == "IMG_1.json"
    assert errors["IMG_1 (1).json"]["reason"].endswith("its boxes are the same as those kept (1 box)")
    assert (f"its boxes differ and those of IMG_2.json were kept: 1 of its 2 boxes is not among the kept ones ('{LABEL}' "
            "[40, 20, 50, 30])") in errors["IMG_2 (1).json"]["reason"], errors
    code, said = run("check", out)
    assert code == 0, said


def test_a_copy_whose_exif_a_tool_rewrote_is_the_same_photo_to_import_coco_and_convert(tmp_path: Path):
    src = tmp_path / "export"
    for i in range(3):
        photo(src / f"IMG_{i}.jpg", 50 * i + 20)
        vendor(src / f"IMG_{i}.json", (5, 5, 31, 31))
    with_exif(src / "IMG_1.jpg", src / "IMG_1 (1).jpg", 1)  # re-dated: shown as the original
    vendor(src / "IMG_1 (1).json", (5, 5, 31, 31))
    with_exif(src / "IMG_2.jpg", src / "IMG_2 (1).jpg", 6)  # turned by its tag: shown 48x64, its boxes drawn so
    vendor(src / "IMG_2 (1).json", (17, 5, 43, 31))
    out = tmp_path / "converted"
    code, said = run("convert", src, out, "--workers", "2", "--val-ratio", "0.5")
    assert code == 0, said
    assert sorted(r.id for r in records_of(out)) == ["IMG_0", "IMG_1", "IMG_2"]
    errors = {e["file"]: e["reason"] for e in errors_of(out)}
    assert errors["IMG_1 (1).json"].startswith("its photo is the one of IMG_1.json (the same image data, only its EXIF "
                                               "differs), kept as images/IMG_1.jpg")
    assert errors["IMG_1 (1).json"].endswith("its boxes are the same as those kept (1 box)")
    assert errors["IMG_2 (1).json"].endswith("viewers show it turned otherwise (EXIF orientation 6, the one kept 1), so "
                                             "its boxes are in another frame and were not compared: those of IMG_2.json "
                                             "were kept")
    code, said = run("check", out)
    assert code == 0, said

    names = [f"IMG_{i}.jpg" for i in range(3)] + ["IMG_1 (1).jpg", "IMG_2 (1).jpg"]
    imported = tmp_path / "imported"
    code, said = run("import-coco", coco(tmp_path / "c.json", names, [[[5, 5, 26, 26]]] * 4 + [[[17, 5, 26, 26]]]), src,
                     imported, "--val-ratio", "0.5")
    assert code == 0, said
    assert sorted(r.image for r in records_of(imported)) == [f"images/IMG_{i}.jpg" for i in range(3)]
    same_data, turned = errors_of(imported)
    assert same_data["reason"].startswith(f"the same image data as {src / 'IMG_1.jpg'} (image id 2), only its metadata "
                                          "differs, imported as images/IMG_1.jpg")
    assert same_data["reason"].endswith("its boxes are the same as those kept (1 box)")
    assert "(EXIF orientation 6, the one kept 1), so its boxes are in another frame and were not compared" in \
        turned["reason"]


def test_check_and_tile_find_a_copy_whose_exif_a_tool_rewrote_in_a_dataset_made_by_hand(tmp_path: Path):
    # Compared by their bytes, the copy in val and its original in train passed `data check` as two photos.
    ds = tmp_path / "ds"
    photo(ds / "images" / "a.jpg", 30)
    photo(ds / "images" / "b.jpg", 90)
    with_exif(ds / "images" / "a.jpg", ds / "images" / "a_copy.jpg", 1)
    line = {"width": 64, "height": 48, "objects": [{"bbox_2d": [5, 5, 31, 31], "desc": LABEL}]}
    for name, photos in (("train.jsonl", ["a.jpg", "b.jpg"]), ("val.jsonl", ["a_copy.jpg"])):
        (ds / name).write_text("".join(json.dumps({"images": [f"images/{p}"], **line}, ensure_ascii=False) + "\n"
                                       for p in photos), encoding="utf-8")
    code, said = run("check", ds)
    assert code == 1 and (f"{ds / 'val.jsonl'}:1: image images/a_copy.jpg: the same content as images/a.jpg in "
                          f"{ds / 'train.jsonl'} line 1") in said, said
    code, said = run("tile", ds, tmp_path / "tiles")
    assert code == 2 and (f"{ds / 'val.jsonl'}:1: image images/a_copy.jpg: the same compressed pixels as images/a.jpg, "
                          f"only its EXIF differs, {ds / 'train.jsonl'} line 1") in said, said
    assert not (tmp_path / "tiles").exists()
