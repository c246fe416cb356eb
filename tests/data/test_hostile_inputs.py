"""Files an outside tool or a hand edit could hand `bbuvl data ...`, each made for real in tmp_path and run through the
CLI: what would be lost or mixed silently is an error naming the file (and the line), and the rest is kept."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.images import ImageError, image_size, load_image, oriented
from bbuvl.data.schema import read_records
from bbuvl.serve.images import decode_image
from tests.exif_photos import (UNPARSABLE_EXIF, jpeg_turned_with_a_make_tag_of_the_wrong_type,
                               photo_with_an_unparsable_exif_block)

LABEL = "线缆"


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def photo(path: Path, size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (90, 120, 30)) -> Path:
    """A real JPEG of one colour at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)
    return path


def vendor_text(label: object = LABEL, info: object = None, box: tuple[float, ...] = (4, 5, 30, 40)) -> str:
    """One photo's FeatureCollection as the annotation platform writes it."""
    x1, y1, x2, y2 = box
    data: dict = {"markResult": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]},
         "properties": {"contentZh": {"标签": label}}}]}}
    if info is not None:
        data["info"] = info
    return json.dumps(data, ensure_ascii=False)


def record(image: str, size: tuple[int, int] = (64, 48), box: list[float] | None = None) -> str:
    """One dataset line."""
    objects = [{"bbox_2d": box or [4, 5, 30, 40], "desc": LABEL}]
    return json.dumps({"images": [image], "width": size[0], "height": size[1], "objects": objects}, ensure_ascii=False)


def convert_cases(src: Path, out: Path, cases: dict[str, str], colour: int) -> dict[str, str]:
    """Convert one vendor file and photo per case (`stem: text`) from `src` into `out`; errors.jsonl by file."""
    for i, (stem, text) in enumerate(cases.items()):
        photo(src / f"{stem}.jpg", colour=(colour * i, 90, 20))  # a colour each: no two photos are one
        (src / f"{stem}.json").write_text(text, encoding="utf-8")
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    return errors_of(out)


def errors_of(out: Path) -> dict[str, str]:
    """errors.jsonl of a dataset folder as {file: its first reason}."""
    found: dict[str, str] = {}
    for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        found.setdefault(entry["file"], entry["reason"])
    return found


# --- a key written twice ----------------------------------------------------------------------------------------


def test_a_key_written_twice_is_an_error_naming_it_never_a_photo_without_its_boxes(tmp_path: Path):
    # JSON readers keep the last value: a second `"objects": []` (or `"markResult"`, `"annotations"`) emptied a
    # photo or a whole file without a word, and the result passed every check.
    photo(tmp_path / "images" / "a.jpg")
    photo(tmp_path / "images" / "b.jpg", colour=(10, 10, 200))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("images/a.jpg")[:-1] + ', "objects": []}\n' + record("images/b.jpg") + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    assert code == 1 and f"{jsonl}:1: invalid JSON: key \"objects\" appears twice" in out, out
    assert ":2:" not in out  # the line after it is read and is fine

    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text(vendor_text()[:-1] + ', "markResult": {"features": []}}', encoding="utf-8")
    photo(src / "q.jpg", colour=(200, 10, 10))
    (src / "q.json").write_text(vendor_text(), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "conv", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    assert "\"markResult\" appears twice" in errors_of(tmp_path / "conv")["p.json"]
    assert [json.loads(line)["id"] for line in (tmp_path / "conv" / "train.jsonl").open()] == ["q"]

    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]}],
            "categories": [{"id": 1, "name": LABEL}]}
    coco_file = tmp_path / "coco.json"
    coco_file.write_text(json.dumps(coco)[:-1] + ', "annotations": []}', encoding="utf-8")
    code, out = run("import-coco", coco_file, tmp_path / "images", tmp_path / "imported")
    assert code != 0 and f"{coco_file}" in out and "\"annotations\" appears twice" in out, out
    assert not (tmp_path / "imported" / "train.jsonl").exists()


def test_a_coco_file_saved_as_utf16_is_read_as_the_vendor_files_are(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]}],
            "categories": [{"id": 1, "name": LABEL}]}
    coco_file = tmp_path / "coco.json"
    coco_file.write_bytes(json.dumps(coco, ensure_ascii=False).encode("utf-16"))  # Windows "Unicode", with its BOM
    code, out = run("import-coco", coco_file, tmp_path / "images", tmp_path / "imported", "--val-ratio", "0")
    assert code == 0, out
    [line] = (tmp_path / "imported" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["objects"] == [{"bbox_2d": [4.0, 5.0, 30.0, 40.0], "desc": LABEL}]


# --- vendor values of the wrong kind ----------------------------------------------------------------------------


def test_vendor_values_of_the_wrong_kind_are_named_not_read_as_a_1x1_photo_or_a_label_like_a_list(tmp_path: Path):
    src = tmp_path / "export"
    cases = {
        "bool_size": vendor_text(info={"width": True, "height": True}),  # float(true) made it a 1x1 photo
        "huge_size": vendor_text(info={"width": 1e308, "height": 1e308}),  # printed as a 309-digit number
        "list_label": vendor_text(label=[LABEL]),  # str() made the label "['线缆']"
        "dict_label": vendor_text(label={"zh": LABEL}),
        "good": vendor_text(info={"width": 64, "height": 48}),
    }
    errors = convert_cases(src, tmp_path / "out", cases, 40)
    assert errors["bool_size.json"] == "bool_size.json: 'info' must give a numeric width and height, got true x true"
    assert errors["huge_size.json"] == "huge_size.json: 'info' size 1e+308x1e+308 is larger than any image file can be"
    assert errors["list_label.json"] == "contentZh['标签'] is ['线缆'], not the text of a label"
    assert errors["dict_label.json"] == "contentZh['标签'] is {'zh': '线缆'}, not the text of a label"
    assert "good.json" not in errors
    kept = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").open(encoding="utf-8")]
    assert [r["id"] for r in kept] == ["good"] and kept[0]["objects"][0]["desc"] == LABEL


# --- the photo of an annotation file ----------------------------------------------------------------------------


def test_a_photo_beside_its_json_in_a_format_not_read_is_named_not_called_missing(tmp_path: Path):
    src = tmp_path / "export"
    src.mkdir()
    (src / "p.json").write_text(vendor_text(), encoding="utf-8")
    (src / "p.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00")  # an iPhone's photo
    (src / "q.json").write_text(vendor_text(), encoding="utf-8")  # really without a photo
    code, out = run("convert", src, tmp_path / "out", "--workers", "1")
    assert code == 1, out  # nothing could be converted
    errors = errors_of(tmp_path / "out")
    assert errors["p.json"].endswith("; p.heic has none of those suffixes: convert it to JPEG or PNG"), errors
    assert errors["q.json"].startswith("no image named 'q'") and "has none of those" not in errors["q.json"]


def test_one_photo_exported_under_two_names_is_converted_once_never_into_train_and_val(tmp_path: Path):
    # Both copies were converted: the split could put one in train and the other in val, and `data check` of
    # what convert wrote failed on it.
    src = tmp_path / "export"
    for i in range(6):
        photo(src / f"p{i}.jpg", colour=(30 * i, 80, 140))
        (src / f"p{i}.json").write_text(vendor_text(), encoding="utf-8")
    (src / "z_again.jpg").write_bytes((src / "p0.jpg").read_bytes())
    (src / "z_again.json").write_text(vendor_text(box=(10, 10, 20, 20)), encoding="utf-8")
    Image.open(src / "p1.jpg").save(src / "y_png.png")  # the same pixels as p1, another format: stored alike
    (src / "y_png.json").write_text(vendor_text(), encoding="utf-8")
    out = tmp_path / "out"
    code, text = run("convert", src, out, "--workers", "2", "--val-ratio", "0.5")
    assert code == 0, text
    errors = errors_of(out)
    assert errors["z_again.json"].startswith("its photo is the one of p0.json (the same bytes once stored), kept as "
                                             "images/p0.jpg: one photo, converted once")
    assert "its boxes differ and those of p0.json were kept: 1 of its 1 box is not among the kept ones" in \
        errors["z_again.json"]
    assert errors["y_png.json"].startswith("its photo is the one of p1.json")
    assert errors["y_png.json"].endswith("its boxes are the same as those kept (1 box)")
    ids = sorted(json.loads(line)["id"] for name in ("train.jsonl", "val.jsonl") for line in (out / name).open())
    assert ids == [f"p{i}" for i in range(6)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"p{i}.jpg" for i in range(6)]
    code, text = run("check", out)
    assert code == 0, text


# --- data tile ----------------------------------------------------------------------------------------------------


def test_the_whole_photo_beside_its_tiles_keeps_every_box_of_its_record(tmp_path: Path):
    # The whole photo went through the tiles' visibility rule: a 1x1 photo lost its only box, and a box under 2 px
    # or one of two near-duplicates vanished from the whole photo too, which then taught "nothing here".
    Image.new("RGB", (1, 1), (0, 200, 0)).save(tmp_path / "dot.png")
    photo(tmp_path / "wide.jpg", size=(80, 60))
    thin = [10, 10, 11.5, 40]  # 1.5 px wide: a cable seen edge-on
    lines = [json.dumps({"images": ["dot.png"], "width": 1, "height": 1,
                         "objects": [{"bbox_2d": [0, 0, 1, 1], "desc": LABEL}]}, ensure_ascii=False),
             record("wide.jpg", (80, 60), thin)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = run("tile", tmp_path / "d.jsonl", tmp_path / "t", "--grid", "2x2")
    assert code == 0, out
    wholes = {r["source"]: r["objects"] for r in map(json.loads, (tmp_path / "t" / "train.jsonl").open(encoding="utf-8"))
              if r["id"].endswith(("@0,0,1x1", "@0,0,80x60"))}
    assert wholes == {"dot.png": [{"bbox_2d": [0.0, 0.0, 1.0, 1.0], "desc": LABEL}],
                      "wide.jpg": [{"bbox_2d": thin, "desc": LABEL}]}


def test_a_photo_that_cannot_be_tiled_is_named_by_its_dataset_file_and_line(tmp_path: Path):
    photo(tmp_path / "a.jpg")
    broken = photo(tmp_path / "b.jpg", colour=(200, 0, 0))
    broken.write_bytes(broken.read_bytes()[:300])  # cut short by a copy
    photo(tmp_path / "c.jpg", size=(32, 32), colour=(0, 0, 200))  # its record says 64x48
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("a.jpg") + "\n\n" + record("b.jpg") + "\n", encoding="utf-8")
    code, out = run("tile", jsonl, tmp_path / "t")
    assert code == 2 and f"{jsonl}:3: image b.jpg: cannot decode image" in " ".join(out.split()), out
    assert not (tmp_path / "t" / "train.jsonl").exists()
    jsonl.write_text(record("a.jpg") + "\n" + record("c.jpg") + "\n", encoding="utf-8")
    code, out = run("tile", jsonl, tmp_path / "t")
    assert code == 2 and f"{jsonl}:2: image c.jpg: the photo is 32x32 but its record says 64x48" in " ".join(out.split())


# --- data split ---------------------------------------------------------------------------------------------------


def test_split_refuses_a_photo_on_two_lines_naming_both_instead_of_putting_one_copy_in_val(tmp_path: Path):
    for i in range(8):
        photo(tmp_path / "images" / f"{i}.jpg", colour=(25 * i, 60, 90))
    lines = [record(f"images/{i}.jpg") for i in range(8)]
    jsonl = tmp_path / "all.jsonl"
    for again in ("images/3.jpg", "images/../images/3.jpg", "./images/3.jpg"):
        jsonl.write_text("\n".join([*lines, record(again)]) + "\n", encoding="utf-8")
        code, out = run("split", jsonl, tmp_path / "parts", "--val-ratio", "0.5")
        assert code == 2, out
        assert f"{jsonl}:9: image {again}: the same photo as line 4" in " ".join(out.split()), out
        assert not (tmp_path / "parts").exists()
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = run("split", jsonl, tmp_path / "parts", "--val-ratio", "0.5")
    assert code == 0 and "4 train, 4 val photos" in out, out


# --- what an error in a dataset line names -----------------------------------------------------------------------


def test_an_error_in_a_plain_record_names_its_own_keys_and_an_empty_image_path_is_named(tmp_path: Path):
    # A plain line has no `student` key, but its errors named 'student.width'; an empty path was "a folder".
    photo(tmp_path / "a.jpg")
    plain = {"images": ["a.jpg"], "height": 48, "objects": [{"bbox_2d": [1, 2, 3, 4], "label": LABEL}]}
    explicit = {"student": {"images": ["a.jpg"], "height": 48}}
    empty = {"images": [" "], "width": 64, "height": 48}
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in (plain, explicit, empty)) + "\n", encoding="utf-8")
    code, out = run("check", jsonl, "--no-decode")
    out = " ".join(out.split())
    assert code == 1
    assert (f"{jsonl}:1: missing key 'width'; missing key 'objects.0.desc'; unknown key 'objects.0.label' (did you "
            "mean 'desc'?)") in out, out
    assert f"{jsonl}:2: missing key 'student.width'" in out  # the explicit form names its own keys
    assert f"{jsonl}:3: images: the image path is empty" in out


def test_a_zoom_that_would_write_a_tile_no_reader_opens_is_refused_before_any_work(tmp_path: Path):
    # --zoom 8 on a 4000x3000 photo cut 2x1 built a 17200x24000 tile: 2 GB and 49 s, and a file that data check
    # then refused as a decompression bomb.
    photo(tmp_path / "small.jpg")
    photo(tmp_path / "big.jpg", size=(4000, 3000))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("small.jpg") + "\n" + record("big.jpg", (4000, 3000)) + "\n", encoding="utf-8")
    code, out = run("tile", jsonl, tmp_path / "t", "--grid", "2x1", "--zoom", "8")
    assert code == 2, out
    assert (f"{jsonl}:2: image big.jpg: its 2150x3000 tiles would be written 17200x24000 at --zoom 8, past the "
            f"{Image.MAX_IMAGE_PIXELS} pixels") in " ".join(out.split()), out
    assert not (tmp_path / "t" / "images").exists()


# --- a frame no photo fits -----------------------------------------------------------------------------------------


def test_a_frame_that_would_enlarge_every_photo_past_what_pillow_reads_is_refused_before_any_photo(tmp_path: Path):
    # `data convert --resize --min-pixels 1000000000` enlarged a 320x240 photo to 10^9 pixels: 4 GB and 49 s a photo.
    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text(vendor_text(), encoding="utf-8")
    huge = str(Image.MAX_IMAGE_PIXELS + 1)
    code, out = run("convert", src, tmp_path / "out", "--resize", "--min-pixels", huge, "--max-pixels", huge)
    assert code == 2 and f"min_pixels ({huge}) would enlarge every photo past the {Image.MAX_IMAGE_PIXELS} pixels" in \
        " ".join(out.split()), out
    assert not (tmp_path / "out" / "images").exists()
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("export/p.jpg") + "\n", encoding="utf-8")
    code, out = run("stats", jsonl, "--min-pixels", huge, "--max-pixels", huge)
    assert code == 2 and "would enlarge every photo" in out, out


# --- COCO ids and categories -------------------------------------------------------------------------------------


def test_a_coco_category_that_names_nothing_is_listed_and_whole_float_ids_pair(tmp_path: Path):
    # A category whose id was a list, or whose name was a number or empty, vanished without a line saying why (its
    # boxes were then "of an unknown category id 1"); a number name became the label '5'. Ids written 1.0 (pandas)
    # named no image.
    for i in range(3):
        photo(tmp_path / "images" / f"{i}.jpg", colour=(60 * i, 20, 20))
    coco = {"images": [{"id": float(i), "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in range(3)],
            "annotations": [{"id": 1, "image_id": 0.0, "category_id": 1.0, "bbox": [4, 5, 26, 35]},
                            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [4, 5, 26, 35]},
                            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [4, 5, 26, 35]},
                            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [1, 1, 9, 9]}],
            "categories": [{"id": 1, "name": LABEL}, {"id": [2], "name": "标签贴纸"}, {"id": 3, "name": 5}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "images", tmp_path / "out", "--val-ratio", "0")
    assert code == 0, out
    entries = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")]
    assert {"entry": "categories[1]", "category_id": [2],
            "reason": "category id [2] is neither a whole number nor a string, so it names no entry"} in entries
    assert {"entry": "categories[2]", "category_id": 3, "reason": "category id 3: name 5 is no label"} in entries
    kept = {r["images"][0]: r["objects"] for r in map(json.loads, (tmp_path / "out" / "train.jsonl").open(encoding="utf-8"))}
    assert kept == {"images/0.jpg": [{"bbox_2d": [4.0, 5.0, 30.0, 40.0], "desc": LABEL}],
                    "images/2.jpg": [{"bbox_2d": [1.0, 1.0, 10.0, 10.0], "desc": LABEL}]}


def test_a_teacher_pool_is_never_drawn_from_a_file_holding_a_photo_twice(tmp_path: Path):
    for i in range(3):
        photo(tmp_path / f"{i}.jpg", colour=(70 * i, 10, 10))
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(record(f"{i}.jpg") for i in (0, 1, 2, 1)) + "\n", encoding="utf-8")
    code, out = run("teachers", jsonl, tmp_path / "pool" / "teachers.jsonl", "--k", "10")
    assert code == 2 and f"{jsonl}:4: image 1.jpg: the same photo as line 2" in " ".join(out.split()), out
    assert not (tmp_path / "pool" / "teachers.jsonl").exists()


def test_a_dataset_written_on_windows_finds_its_photos_as_coco_file_names_do(tmp_path: Path):
    photo(tmp_path / "site 1" / "a.jpg")
    photo(tmp_path / "site 1" / "b.jpg", colour=(1, 2, 250))
    jsonl = tmp_path / "all.jsonl"
    jsonl.write_text(record("site 1\\a.jpg") + "\n" + record("site 1\\b.jpg") + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    assert code == 0, out  # was "image file not found" for each line
    code, out = run("split", jsonl, tmp_path / "parts", "--val-ratio", "0.5")
    assert code == 0, out
    moved = [json.loads(line)["images"][0] for name in ("train.jsonl", "val.jsonl")
             for line in (tmp_path / "parts" / name).open(encoding="utf-8")]
    assert sorted(moved) == ["../site 1/a.jpg", "../site 1/b.jpg"]


def test_an_images_folder_that_is_a_file_or_missing_is_named_before_the_coco_file_is_read(tmp_path: Path):
    # A file given as IMAGES_DIR read every entry and then said "cannot decode image: [Errno 20] Not a directory".
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": [], "categories": []}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "afile", tmp_path / "out")
    assert code == 2 and f"{tmp_path / 'afile'}: a file; give the folder the COCO file's file_name paths are relative " \
        "to" in " ".join(out.split()), out
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "none", tmp_path / "out")
    assert code == 2 and f"{tmp_path / 'none'}: no such folder (the folder the COCO" in " ".join(out.split()), out
    assert not (tmp_path / "out" / "train.jsonl").exists()


# --- a line without end -------------------------------------------------------------------------------------------


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_line_longer_than_any_dataset_line_is_an_error_of_its_own_and_is_never_held_whole(tmp_path: Path):
    # A file without line breaks was read whole as one line (480 MB of memory for 200 MB of zeros); now a line is read
    # up to MAX_LINE_CHARS, the rest of it is skipped, and the lines after it are still read.
    from bbuvl.data.schema import MAX_LINE_CHARS

    photo(tmp_path / "a.jpg")
    photo(tmp_path / "b.jpg", colour=(0, 0, 250))
    jsonl = tmp_path / "d.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        fh.write(record("a.jpg") + "\n" + '{"source": "' + "x" * (MAX_LINE_CHARS + 10) + '"}\n' + record("b.jpg") + "\n")
    code, out = run("check", jsonl)
    out = " ".join(out.split())
    assert code == 1 and f"{jsonl}:2: a line longer than {MAX_LINE_CHARS} characters, which no dataset line is" in out
    assert "1 error(s)" in out, out  # lines 1 and 3 are read and fine
    blob = tmp_path / "archive.jsonl"
    blob.write_bytes(b"\0" * (MAX_LINE_CHARS + 5))  # no line break at all
    code, out = run("stats", blob)
    assert code == 2 and f"{blob}:1: a line longer than" in " ".join(out.split()), out


def test_a_size_longer_than_any_image_files_side_is_named_as_that(tmp_path: Path):
    # 10^300 was "Unable to parse input string as an integer, exceeded maximum size"; 10^20 passed the schema and
    # reached smart_resize as an aspect ratio of 4e17.
    photo(tmp_path / "a.jpg")
    jsonl = tmp_path / "d.jsonl"
    lines = [record("a.jpg").replace('"width": 64', f'"width": {w}') for w in ("1" + "0" * 300, "100000000000000000000")]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    out = " ".join(out.split())
    assert code == 1 and f"{jsonl}:1: width: 1e+300 is longer than any image file's side (4294967295)" in out, out
    assert f"{jsonl}:2: width: 1e+20 is longer than any image file's side (4294967295)" in out


# --- names no file can have ---------------------------------------------------------------------------------------


def test_a_name_too_long_for_the_system_or_holding_nul_is_an_error_of_its_entry_never_a_traceback(tmp_path: Path):
    # `data check` died with a traceback (OSError: File name too long, from is_dir) and import-coco stopped the whole
    # import with "error: [Errno 36] File name too long" naming no entry.
    photo(tmp_path / "images" / "ok.jpg")
    names = ["a" * 300 + ".jpg", "é" * 200 + ".jpg", "x\0y.jpg"]
    jsonl = tmp_path / "images" / "d.jsonl"
    jsonl.write_text("\n".join(record(n) for n in [*names, "ok.jpg"]) + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    out = " ".join(out.split())
    assert code == 1 and "Traceback" not in out, out
    for line, why in ((1, "a file name longer than this system allows"), (2, "a file name longer than this system allows"),
                      (3, "no file name holds a NUL character")):
        assert f"{jsonl}:{line}: image " in out and why in out
    assert "3 error(s)" in out

    coco = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate([*names, "ok.jpg"])],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(4)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "images", tmp_path / "out", "--val-ratio", "0")
    assert code == 0, out
    reasons = {e["image_id"]: e["reason"] for e in map(json.loads, (tmp_path / "out" / "errors.jsonl").open())}
    assert reasons["0"] == reasons["1"] == "a file name longer than this system allows"
    assert reasons["2"].endswith("no file name holds a NUL character")
    assert [json.loads(line)["images"] for line in (tmp_path / "out" / "train.jsonl").open()] == [["images/ok.jpg"]]


def test_a_pipe_a_device_or_a_link_loop_named_as_a_photo_is_an_error_never_a_hang(tmp_path: Path):
    # A named pipe given as a photo made `data check` wait for a writer forever.
    import os

    pics = tmp_path / "pics"  # IMAGES_DIR of the import below, which writes beside it
    pics.mkdir()
    os.mkfifo(pics / "pipe.jpg")
    (pics / "loop_a.jpg").symlink_to("loop_b.jpg")
    (pics / "loop_b.jpg").symlink_to("loop_a.jpg")
    photo(pics / "ok.jpg")
    jsonl = pics / "d.jsonl"
    jsonl.write_text("\n".join(record(n) for n in ("pipe.jpg", "/dev/zero", "loop_a.jpg", "ok.jpg")) + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    out = " ".join(out.split())
    assert code == 1 and "3 error(s)" in out, out
    assert f"{jsonl}:1: image pipe.jpg: not a regular file (a FIFO (named pipe))" in out
    assert f"{jsonl}:2: image /dev/zero: not a regular file (a device)" in out
    assert f"{jsonl}:3: image loop_a.jpg: a symbolic link that never reaches a file" in out
    # tile and import-coco resolved every photo's links first: a loop was a RuntimeError traceback
    code, out = run("tile", jsonl, tmp_path / "t")
    assert code == 2 and f"{jsonl}:1: image pipe.jpg: not a regular file" in " ".join(out.split()), out
    coco = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(["loop_a.jpg", "ok.jpg"])],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(2)],
            "categories": [{"id": 1, "name": LABEL}]}
    (pics / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    out_dir = tmp_path / "imported"
    code, out = run("import-coco", pics / "coco.json", pics, out_dir, "--val-ratio", "0")
    assert code == 0, out
    [entry] = [json.loads(line) for line in (out_dir / "errors.jsonl").open()]
    assert entry["image_id"] == "0" and entry["reason"].endswith("a symbolic link that never reaches a file (its links "
                                                                "lead in a loop)")


# --- how a dataset file is written -------------------------------------------------------------------------------


def test_a_dataset_file_reached_through_a_link_is_written_through_it_and_the_link_stays(tmp_path: Path):
    # write_dataset renamed its own temporary onto the link: `latest.jsonl -> pool.jsonl` became a file of its own and
    # pool.jsonl kept the old pool, where every other writer writes through a link (bbuvl/atomic.py).
    for i in range(4):
        photo(tmp_path / f"{i}.jpg", colour=(50 * i, 30, 30))
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(record(f"{i}.jpg") for i in range(4)) + "\n", encoding="utf-8")
    code, out = run("teachers", jsonl, tmp_path / "pool.jsonl", "--k", "1")
    assert code == 0, out
    (tmp_path / "latest.jsonl").symlink_to("pool.jsonl")
    code, out = run("teachers", jsonl, tmp_path / "latest.jsonl", "--k", "3", "--overwrite")
    assert code == 0, out
    assert (tmp_path / "latest.jsonl").is_symlink()
    assert len((tmp_path / "pool.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_coco_boxes_that_are_no_boxes_say_what_the_file_wrote(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg")
    anns = [{"bbox": [1, 2, -5, 10]}, {"segmentation": [[1, 1, 9]]}, {"bbox": ["1", 2, 3, 4]},
            {"bbox": [4, 5, 26, 35]}]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [dict(a, id=i, image_id=1, category_id=1) for i, a in enumerate(anns)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "images", tmp_path / "out", "--val-ratio", "0")
    assert code == 0, out
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")]
    assert reasons == ["bbox [1, 2, -5, 10] has a negative width or height (COCO boxes are [x, y, width, height])",
                       "no bbox, and its segmentation gives none: polygon 0 [1, 1, 9] is not x, y pairs of finite "
                       "numbers, at least three points",
                       'bbox must be [x, y, width, height], got ["1", 2, 3, 4]']


def test_an_empty_json_file_is_called_empty_not_a_value_mistyped_at_line_1(tmp_path: Path):
    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text("  \n", encoding="utf-8")  # saved before the platform wrote anything
    photo(src / "q.jpg", colour=(0, 99, 0))
    (src / "q.json").write_text('{"markResult": {"features": [', encoding="utf-8")
    code, out = run("convert", src, tmp_path / "out", "--workers", "1")
    assert code == 1, out
    errors = errors_of(tmp_path / "out")
    assert errors == {"p.json": "empty: the file holds no JSON at all",
                      "q.json": "line 1: not valid JSON (Expecting value at column 30; the text ends before its JSON "
                                "does: cut short?)"}
    (tmp_path / "coco.json").write_bytes(b"")
    code, out = run("import-coco", tmp_path / "coco.json", src, tmp_path / "imported")
    assert code == 2 and f"{tmp_path / 'coco.json'}: empty: the file holds no JSON at all" in " ".join(out.split()), out


def test_tiling_that_keeps_no_tile_is_an_error_not_an_empty_dataset_with_exit_0(tmp_path: Path):
    photo(tmp_path / "a.jpg")
    photo(tmp_path / "b.jpg", colour=(200, 200, 0))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"images": [n], "width": 64, "height": 48, "objects": []}) + "\n"
                             for n in ("a.jpg", "b.jpg")), encoding="utf-8")
    code, out = run("tile", jsonl, tmp_path / "t", "--tiles-only", "--empty", "0")
    assert code == 2 and f"{jsonl}: none of its 2 photos gave a tile to keep" in " ".join(out.split()), out
    assert not (tmp_path / "t" / "train.jsonl").exists()
    code, out = run("tile", jsonl, tmp_path / "t", "--tiles-only", "--empty", "0.5")
    assert code == 0 and (tmp_path / "t" / "train.jsonl").read_text(encoding="utf-8").strip(), out


def test_import_coco_scales_a_resized_photo_and_refuses_one_of_another_shape_than_the_coco_file_says(tmp_path: Path):
    # It was imported as the COCO file sized it: its boxes in the wrong frame, and `data check` refused the result. A
    # photo of the file's shape at half its resolution (downscaled since it was annotated) was refused too, where
    # `data convert` scales a vendor file's boxes to it (coords.resolve_vendor_frame decides both).
    photo(tmp_path / "images" / "a.jpg", size=(320, 240))
    photo(tmp_path / "images" / "b.jpg", colour=(5, 5, 90))
    photo(tmp_path / "images" / "c.jpg", size=(320, 240), colour=(90, 5, 5))
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
                       {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
                       {"id": 3, "file_name": "c.jpg", "width": 640, "height": 100}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in (1, 2, 3)]
            + [{"id": 4, "image_id": 1, "category_id": 1, "bbox": [300, 5, 1.5, 1.5]}],  # less than a pixel at half
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    out = tmp_path / "out"
    code, text = run("import-coco", tmp_path / "coco.json", tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, text
    assert "1 photo(s) are of another resolution than the COCO file gives them" in " ".join(text.split()), text
    dropped, refused = [json.loads(line) for line in (out / "errors.jsonl").open(encoding="utf-8")]
    assert dropped["image_id"] == "1" and dropped["reason"] == (
        f"box [300, 5, 301.5, 6.5] (x1, y1, x2, y2) of '{LABEL}' is less than a pixel wide on the photo, 320x240 where "
        "the COCO file gives 640x480: dropped")
    assert refused["image_id"] == "3" and refused["reason"] == ("width/height 640x100 do not match image c.jpg, which is "
                                                                "320x240, nor its shape at another resolution")
    records = {r.id: r for r in read_records(out / "train.jsonl")}
    assert sorted(records) == ["1", "2"]
    assert (records["1"].width, records["1"].height) == (320, 240)
    assert [o.bbox_2d for o in records["1"].objects] == [[2, 2.5, 15, 20]]
    code, text = run("check", out)
    assert code == 0, text


def test_vendor_sizes_and_points_python_reads_but_no_tool_meant_are_named_and_the_rest_converted(tmp_path: Path):
    # An `info` of 0.4x0.4 rounded to 0x0 and stopped the whole conversion with a ZeroDivisionError traceback; float()
    # read the size "6_4" as 64; a point given as text was named as Python shows it ('4').
    src = tmp_path / "export"
    cases = {
        "tiny": vendor_text(info={"width": 0.4, "height": 0.4}),
        "underscore": vendor_text(info={"width": "6_4", "height": "4_8"}),
        "text_points": vendor_text().replace("[[[4, 5], [30, 5]", '[[["4", "5"], [30, 5]'),
        "quoted": vendor_text(info={"width": "64", "height": "48"}),  # a quoted JSON number is still read
    }
    errors = convert_cases(src, tmp_path / "out", cases, 60)
    assert errors["tiny.json"] == "tiny.json: 'info' size 0.4x0.4 rounds to 0x0 pixels; a photo is at least 1x1"
    assert errors["underscore.json"] == "underscore.json: 'info' must give a numeric width and height, got \"6_4\" x \"4_8\""
    assert errors["text_points.json"] == 'coordinates hold the text "4", not [x, y] pairs of numbers'
    assert [json.loads(line)["id"] for line in (tmp_path / "out" / "train.jsonl").open()] == ["quoted"]


def test_two_tokens_or_labels_alike_once_typed_alike_are_refused_never_one_silently_standing_for_both(tmp_path: Path):
    # Tokens and labels are looked up by their key (full width folded, spaces trimmed): `ＢＢＵ` replaced `BBU` in the
    # token map without a word, and every BBU was converted to the other's name.
    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text(vendor_text(label="BBU"), encoding="utf-8")
    token_map = tmp_path / "tokens.json"
    token_map.write_text(json.dumps({"BBU": "bbu基带处理单元", "ＢＢＵ": "螺丝连接点"}, ensure_ascii=False), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "out", "--token-map", token_map)
    assert code == 2 and (f"{token_map}: tokens 'BBU' and 'ＢＢＵ' are one token however typed, but map to "
                          "'bbu基带处理单元' and '螺丝连接点'; keep one") in " ".join(out.split()), out
    assert not (tmp_path / "out" / "train.jsonl").exists()

    hierarchy = tmp_path / "hierarchy.json"
    hierarchy.write_text(json.dumps({"categories": {LABEL: {}, LABEL + " ": {}}}, ensure_ascii=False), encoding="utf-8")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("export/p.jpg") + "\n", encoding="utf-8")
    code, out = run("check", jsonl, "--hierarchy", hierarchy)
    assert code == 2 and f"{hierarchy}: labels '{LABEL}' and '{LABEL} ' are one label however typed" in \
        " ".join(out.split()), out


def test_a_hierarchy_fault_flag_that_is_no_boolean_is_refused_not_read_as_true(tmp_path: Path):
    # `"fault": "false"` is true to Python: the state was taught as a fault, and eval counted it as one.
    hierarchy = tmp_path / "hierarchy.json"
    states = {"连接正确": {"gloss": "ok", "fault": "false"}, "连接错误": {"gloss": "wrong", "fault": True}}
    hierarchy.write_text(json.dumps({"categories": {LABEL: {"attributes": {"接头": {"states": states}}}}},
                                    ensure_ascii=False), encoding="utf-8")
    photo(tmp_path / "a.jpg")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("a.jpg") + "\n", encoding="utf-8")
    code, out = run("check", jsonl, "--hierarchy", hierarchy)
    assert code == 2 and (f"{hierarchy}: state '{LABEL}/接头/连接正确': \"fault\" must be true or false, got \"false\"") in \
        " ".join(out.split()), out


def test_a_vendor_point_of_three_numbers_is_named_whole_and_a_remark_object_is_kept_as_json(tmp_path: Path):
    # [x, y, z] was "coordinates hold 4, not [x, y] pairs", naming its first number; a remark that was an object was
    # kept in Python's spelling ({'a': [1]}), which no JSON reader reads back.
    src = tmp_path / "export"
    photo(src / "z.jpg")
    (src / "z.json").write_text(vendor_text().replace("[4, 5], [30, 5]", "[4, 5, 0], [30, 5]"), encoding="utf-8")
    photo(src / "r.jpg", colour=(0, 0, 250))
    data = json.loads(vendor_text())
    data["markResult"]["features"][0]["properties"]["contentZh"].update({"备注": {"a": [1], "ok": True}, "编号": 7})
    (src / "r.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    assert errors_of(tmp_path / "out")["z.json"] == "point [4, 5, 0] has 3 numbers; a point is [x, y]"
    [kept] = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").open(encoding="utf-8")]
    assert kept["objects"][0]["extra"] == {"备注": '{"a": [1], "ok": true}', "编号": "7"}


@pytest.mark.timeout(120)
def test_a_pipe_or_a_folder_given_as_a_dataset_file_is_named_never_waited_on(tmp_path: Path):
    # check, split, teachers and export-coco opened a named pipe and waited for a writer forever; a folder under
    # train.jsonl's name was "missing" to check, "no photos" to stats and "no such dataset file" to tile.
    import os

    pipe = tmp_path / "d.jsonl"
    os.mkfifo(pipe)
    for args in (("check", pipe), ("stats", pipe), ("split", pipe, tmp_path / "parts"),
                 ("teachers", pipe, tmp_path / "t.jsonl"), ("export-coco", pipe, tmp_path / "c.json"),
                 ("tile", pipe, tmp_path / "tiles")):
        code, out = run(*args)
        out = " ".join(out.split()).replace(f"{pipe}:0:", f"{pipe}:")  # check numbers a whole-file problem line 0
        assert code in (1, 2) and f"{pipe}: a FIFO (named pipe), not a JSONL dataset file" in out, out
    # the JSON files read whole waited on a pipe too: a COCO file, a hierarchy, a token map
    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text(vendor_text(), encoding="utf-8")
    for args, says in ((("import-coco", pipe, src, tmp_path / "imported"), "a FIFO (named pipe), not a COCO file"),
                       (("convert", src, tmp_path / "c1", "--token-map", pipe), "cannot read token map: a FIFO"),
                       (("convert", src, tmp_path / "c2", "--hierarchy", pipe), "cannot read label hierarchy: a FIFO"),
                       (("import-coco", src, src, tmp_path / "imported"), f"{src}: a folder, not a COCO file")):
        code, out = run(*args)
        assert code == 2 and says in " ".join(out.split()), out
    folder = tmp_path / "ds"
    (folder / "train.jsonl").mkdir(parents=True)
    photo(folder / "a.jpg")
    (folder / "val.jsonl").write_text(record("a.jpg") + "\n", encoding="utf-8")
    for args in (("check", folder), ("stats", folder), ("tile", folder, tmp_path / "tiles")):
        code, out = run(*args)
        out = " ".join(out.split()).replace(f"{folder / 'train.jsonl'}:0:", f"{folder / 'train.jsonl'}:")
        assert code in (1, 2) and f"{folder / 'train.jsonl'}: a folder, not a JSONL dataset file" in out, out


def test_a_vendor_json_larger_than_any_photos_annotations_is_an_error_of_its_own_never_read_whole(tmp_path: Path):
    from bbuvl.data.convert import MAX_VENDOR_JSON_BYTES

    src = tmp_path / "export"
    photo(src / "big.jpg")
    with (src / "big.json").open("wb") as fh:  # sparse: no disk is used for its zeros
        fh.truncate(MAX_VENDOR_JSON_BYTES + 1)
    photo(src / "ok.jpg", colour=(0, 0, 200))
    (src / "ok.json").write_text(vendor_text(), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    assert errors_of(tmp_path / "out")["big.json"] == (f"{MAX_VENDOR_JSON_BYTES + 1:,} bytes, more than one photo's "
                                                       f"annotations ever take ({MAX_VENDOR_JSON_BYTES:,}); is this "
                                                       "another kind of file named .json?")
    assert [json.loads(line)["id"] for line in (tmp_path / "out" / "train.jsonl").open()] == ["ok"]


def test_json_broken_by_a_character_that_looks_right_on_screen_names_that_character(tmp_path: Path):
    # A Chinese input method types `：` and `，` for `:` and `,`; a word processor types curly quotes; a BOM or a
    # no-break space pasted mid-line is invisible. "Expecting ':' delimiter at column 10" left the user staring at a
    # colon that looks right.
    photo(tmp_path / "a.jpg")
    good = record("a.jpg")
    lines = [good.replace('"width":', '"width"：'), good.replace(', "height"', '， "height"'),
             good.replace('"images"', "\u201cimages\u201d"), good.replace('"width": ', '"width": \ufeff'), good]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = run("check", jsonl)
    out = " ".join(out.split())
    assert code == 1 and "4 error(s)" in out, out
    assert f"{jsonl}:1: invalid JSON: Expecting ':' delimiter at column " in out
    for line, says in ((1, "'：' where JSON takes only the ASCII ':'"), (2, "'，' where JSON takes only the ASCII ','"),
                       (3, "'“' where JSON takes only the ASCII '\"'"), (4, "the invisible character '\\ufeff'")):
        assert f"{jsonl}:{line}: invalid JSON: " in out and f"; there it holds {says}" in out, (line, out)

    src = tmp_path / "export"
    photo(src / "p.jpg")
    (src / "p.json").write_text(vendor_text().replace('"标签": ', '"标签"： '), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "out", "--workers", "1")
    assert code == 1, out
    assert errors_of(tmp_path / "out")["p.json"].endswith("; there it holds '：' where JSON takes only the ASCII ':')")


def test_a_file_saved_as_gbk_says_so_where_it_was_only_not_utf8(tmp_path: Path):
    # Windows Notepad saves Chinese as GBK ("ANSI"): "not UTF-8 text (byte 0xcf at column 99); is this a JSONL
    # dataset file?" did not say what the file was, nor what to do.
    gbk = "; it reads as GBK (GB18030) text, as Windows saves Chinese by default: save it as UTF-8"
    photo(tmp_path / "export" / "p.jpg")
    (tmp_path / "export" / "p.json").write_bytes(vendor_text().encode("gbk"))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(record("export/p.jpg").encode("gbk") + b"\n")
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_bytes(json.dumps(coco, ensure_ascii=False).encode("gbk"))
    code, out = run("check", jsonl)
    assert code == 1 and f"{jsonl}:1: not UTF-8 text (byte 0xcf at column 106){gbk}" in " ".join(out.split()), out
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "export", tmp_path / "imported")
    assert code == 2 and gbk in " ".join(out.split()), out
    code, out = run("convert", tmp_path / "export", tmp_path / "out", "--workers", "1")
    assert code == 1 and errors_of(tmp_path / "out")["p.json"].endswith(gbk), out
    photo(tmp_path / "a.jpg")
    (tmp_path / "photo.jsonl").write_bytes((tmp_path / "a.jpg").read_bytes())  # a photo is no GBK text
    code, out = run("check", tmp_path / "photo.jsonl")
    assert code == 1 and "it is a JPEG photo, not text" in out and "GBK" not in out, out
    # A PNG's first line, b"\x89PNG\r", reads as GBK holding a Chinese character: check said to save it as UTF-8
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, out = run("check", tmp_path / "a.png")
    assert code == 1 and "it is a PNG image, not text" in out and "GBK" not in out, out


def test_a_photo_whose_exif_holds_a_tag_of_the_wrong_type_loads_upright_as_serve_reads_it(tmp_path: Path):
    path = tmp_path / "turned.jpg"
    path.write_bytes(jpeg_turned_with_a_make_tag_of_the_wrong_type())
    # Pillow's exif_transpose failed on the camera make's tag (AttributeError): predict, training and data check lost
    # a sound photo as a traceback, where serve answered it
    loaded = load_image(path)
    assert (loaded.raw_size, loaded.orientation, loaded.image.size) == ((64, 48), 6, (48, 64))
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        served = decode_image(path.read_bytes(), max_pixels=10**6)
        assert served.tobytes() == loaded.image.tobytes() and im.size == (64, 48)


@pytest.mark.parametrize("block", sorted(UNPARSABLE_EXIF))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_whose_exif_block_cannot_be_parsed_loads_as_stored_and_so_do_its_regions(tmp_path: Path, fmt, block):
    stored = Image.radial_gradient("L").convert("RGB").resize((64, 48))
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(photo_with_an_unparsable_exif_block(stored, fmt, UNPARSABLE_EXIF[block]))
    loaded = load_image(path)
    assert (loaded.orientation, loaded.image.size) == (1, (64, 48))
    # A region of it carries the block along (Pillow copies `info`), and Predictor.prepare turns an image in memory by
    # it: `bbuvl predict --tiles` stopped at a JPEG's first tile with a traceback (SyntaxError), the file itself read
    region = loaded.image.crop((0, 0, 32, 24))
    assert oriented(region)[1] == 1 and oriented(region)[0].size == (32, 24)


def test_a_photo_whose_exif_orientation_is_no_number_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "odd.jpg"
    # the orientation tag written as ASCII "six" (type 2, inline): Pillow reads it back as text
    ifd = struct.pack("<IH", 8, 1) + struct.pack("<HHI", 0x0112, 2, 4) + b"six\x00" + b"\x00" * 4
    Image.new("RGB", (64, 48)).save(path, "JPEG", exif=b"Exif\x00\x00II*\x00" + ifd)
    with pytest.raises(ImageError, match=r"odd\.jpg: cannot decode image: EXIF orientation is not a number"):
        load_image(path)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims `width` x `height` and holds no pixels: what Pillow's size checks read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_a_photo_of_a_hundred_megapixels_is_read_without_pillows_warning_and_one_past_its_limit_says_what_to_do(
        tmp_path: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning printed a line of its code for each run
        assert image_size(png_header(tmp_path / "camera.png", 11648, 8736)) == (11648, 8736)  # a 100 MP camera
    with pytest.raises(ImageError, match=r"phone\.png: image too large to decode safely \(.*\): save it at a lower "
                                         r"resolution first"):
        image_size(png_header(tmp_path / "phone.png", 16320, 12240))  # a phone's 200 MP mode


def test_a_coco_file_whose_photos_would_all_hold_no_box_is_refused_unless_allowed(tmp_path: Path):
    # An empty annotations list (a test split's image_info file) imported every photo with no parts and exit 0; so did
    # a file whose annotations were all unusable, when a photo listed none: trained on, its parts are background.
    photo(tmp_path / "images" / "a.jpg")
    photo(tmp_path / "images" / "b.jpg", colour=(200, 10, 10))
    images = [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
              {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}]
    crowd = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35], "iscrowd": 1}
    cases = {"empty": ([], "its annotations list is empty: its 2 photos would be imported with no parts"),
             "unusable": ([crowd], "none of its 1 annotations could be used (the first, annotations[0]: crowd "
                                   "annotation (a region of many objects, not one box)): the 1 photo left would be "
                                   "imported with no parts")}
    for name, (annotations, says) in cases.items():
        coco_file = tmp_path / f"{name}.json"
        coco_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                         "categories": [{"id": 1, "name": LABEL}]}), encoding="utf-8")
        code, out = run("import-coco", coco_file, tmp_path / "images", tmp_path / name)
        text = " ".join(out.split())
        assert code == 2 and f"error: {coco_file}: {says}" in text and "--allow-empty" in text, out
        assert not (tmp_path / name).exists()
        code, out = run("import-coco", coco_file, tmp_path / "images", tmp_path / name, "--allow-empty", "--val-ratio",
                        "0")
        assert code == 0, out
        kept = [json.loads(line) for line in (tmp_path / name / "train.jsonl").open(encoding="utf-8")]
        assert kept and all(r["objects"] == [] for r in kept)
