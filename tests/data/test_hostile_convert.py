"""Vendor exports as `data convert` meets them from other tools: every problem is one errors.jsonl line a person can
read, in the file's own terms (JSON's names for its values, numbers as the file wrote them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bbuvl.data.images import load_image
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.data.vendor import parse_vendor
from tests.data.test_hostile_inputs import convert_cases, photo, run, vendor_text


@pytest.mark.parametrize("text, named", [("null", "got null"), ("[]", "got an array"), ('"x"', "got a string"),
                                         ('{"markResult": null}', "'markResult' must be an object, got null"),
                                         ('{"markResult": {"features": 7}}', "got a number"),
                                         ('{"dataList": true}', "got a boolean"),
                                         ('{"info": [64, 48], "dataList": []}', "got an array")])
def test_a_vendor_value_of_the_wrong_kind_is_named_by_json_not_python(text: str, named: str):
    with pytest.raises(ValueError) as e:
        parse_vendor(json.loads(text), "a.json")
    # Before: "got NoneType", "got list", "got str": Python's names, which the file never wrote.
    assert named in str(e.value)
    assert not re.search(r"\b(NoneType|list|str|int|float|bool|dict)\b", str(e.value)), e.value


def test_features_that_are_no_objects_are_named_by_json_not_python():
    ann = parse_vendor({"markResult": {"features": [None, [1, 2]]}, "dataList": []}, "a.json")
    assert [p.reason for p in ann.problems] == ["feature is null, not an object", "feature is an array, not an object"]


def test_a_box_past_the_edge_by_a_number_past_any_photo_is_one_short_line(tmp_path: Path):
    errors = convert_cases(tmp_path / "src", tmp_path / "out",
                           {"far": vendor_text(box=(4, 5, 1e300, 40)), "ok": vendor_text()}, colour=60)
    reason = errors["far.json"]
    # Before: the overshoot written out in 301 digits, "extends 10000000000000000525047602552044202487...0.0 px".
    assert "1e+300" in reason and len(reason) < 200, reason


def test_photos_of_two_sites_numbered_alike_by_their_cameras_are_two_photos_each_with_its_own_json(tmp_path: Path):
    src, out = tmp_path / "export", tmp_path / "out"
    colours = {"site1": (200, 20, 20), "site2": (20, 20, 200)}
    for site, colour in colours.items():
        photo(src / site / "IMG_0001.jpg", colour=colour)
        (src / site / "IMG_0001.json").write_text(vendor_text(box=(4, 5, 30, 40) if site == "site1" else (10, 10, 50, 44)),
                                                  encoding="utf-8")
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    # Before: both lost, as one "ambiguous stem 'IMG_0001'" error line.
    records = {r.id: r for r in read_records(out / "train.jsonl")}
    assert sorted(records) == ["site1/IMG_0001", "site2/IMG_0001"]
    assert records["site2/IMG_0001"].objects[0].bbox_2d == [10, 10, 50, 44]
    for site, colour in colours.items():
        stored = load_image(resolve_image(out / "train.jsonl", records[f"{site}/IMG_0001"].image)).image
        assert all(abs(a - b) < 12 for a, b in zip(stored.getpixel((32, 24)), colour))
    assert (out / "errors.jsonl").read_text(encoding="utf-8") == ""
    code, said = run("check", out)
    assert code == 0, said


def test_a_photo_not_annotated_yet_in_a_third_folder_loses_no_site_its_photo_of_that_name(tmp_path: Path):
    src, out = tmp_path / "export", tmp_path / "out"
    for site, box, colour in (("site1", (4, 5, 30, 40), (200, 20, 20)), ("site2", (10, 10, 50, 44), (20, 20, 200))):
        photo(src / site / "IMG_0001.jpg", colour=colour)  # photos alike would be folded into one
        (src / site / "IMG_0001.json").write_text(vendor_text(box=box), encoding="utf-8")
    photo(src / "site3" / "IMG_0001.jpg", colour=(20, 200, 20))  # its annotation still to come
    photo(src / "site4" / "IMG_0002.jpg", colour=(200, 200, 20))
    (src / "site4" / "IMG_0002.json").write_text(vendor_text(), encoding="utf-8")
    (src / "site5").mkdir()
    (src / "site5" / "IMG_0002.json").write_text(vendor_text(), encoding="utf-8")  # its photo missing
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    # Before: every IMG_0001 lost as one "ambiguous stem" error, counted as one photo failed with no objects lost.
    assert sorted(r.id for r in read_records(out / "train.jsonl")) == ["site1/IMG_0001", "site2/IMG_0001",
                                                                        "site4/IMG_0002"]
    errors = {e["file"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text(encoding="utf-8").splitlines())}
    assert errors == {"site3/IMG_0001.jpg": "image has no annotation JSON named 'IMG_0001.json' in its folder",
                      "site5/IMG_0002.json": "no image named 'IMG_0002' in its folder, where several folders hold files "
                                             "of that name and each JSON is paired with the image beside it"}, errors


NFC, NFD = "caf\u00e9", "cafe\u0301"  # `é` composed, and e + U+0301: two names on Linux, one on macOS


def test_two_photos_named_alike_but_for_composition_each_beside_its_json_are_two_photos(tmp_path: Path):
    src, out = tmp_path / "export", tmp_path / "out"
    boxes = {NFC: (4, 5, 30, 40), NFD: (10, 10, 50, 44)}
    colours = {NFC: (200, 20, 20), NFD: (20, 20, 200)}
    for stem in (NFC, NFD):
        photo(src / "images" / f"{stem}.jpg", colour=colours[stem])
        (src / "annotations" / f"{stem}.json").parent.mkdir(exist_ok=True)
        (src / "annotations" / f"{stem}.json").write_text(vendor_text(box=boxes[stem]), encoding="utf-8")
    photo(src / "images" / "other.jpg", colour=(20, 200, 20))
    (src / "annotations" / "other.json").write_text(vendor_text(), encoding="utf-8")
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    # Before: both lost as one "ambiguous stem 'café'" error naming four files that print alike; 2 photos found.
    records = {r.id: r for r in read_records(out / "train.jsonl")}
    assert sorted(records) == sorted([f"annotations/{NFC}", f"annotations/{NFD}", "other"])
    for stem in (NFC, NFD):
        record = records[f"annotations/{stem}"]
        assert record.objects[0].bbox_2d == list(boxes[stem])
        stored = load_image(resolve_image(out / "train.jsonl", record.image)).image
        assert all(abs(a - b) < 12 for a, b in zip(stored.getpixel((32, 24)), colours[stem]))
    assert (out / "errors.jsonl").read_text(encoding="utf-8") == ""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["photos"]["found"] == summary["photos"]["converted"] == 3
    code, said = run("check", out)
    assert code == 0, said


def test_files_left_unpaired_among_names_alike_but_for_composition_are_named_apart_and_each_photo_counted(tmp_path: Path):
    src, out = tmp_path / "export", tmp_path / "out"
    photo(src / "images" / f"{NFC}.jpg", colour=(200, 20, 20))
    photo(src / "images" / f"{NFD}.jpg", colour=(20, 20, 200))  # no JSON of its own
    (src / "annotations").mkdir()
    (src / "annotations" / f"{NFC}.json").write_text(vendor_text(), encoding="utf-8")
    for site in ("a", "b"):  # two JSON files and two images of one name, none beside another: whose is a guess
        (src / site).mkdir()
        (src / site / "x.json").write_text(vendor_text(), encoding="utf-8")
        photo(src / f"{site}_photos" / "x.jpg", colour=(20, 200 if site == "a" else 100, 20))
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    assert [r.id for r in read_records(out / "train.jsonl")] == [f"annotations/{NFC}"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["file"], e["reason"]) for e in errors if "x." not in e["file"]] == [
        (f"images/{NFD}.jpg", "image has no annotation JSON named 'cafe\\u0301.json' in its folder")]
    # Before: one error line and one photo failed for the two photos the four files hold.
    assert sorted(e["file"] for e in errors if "x." in e["file"]) == ["a/x.json", "b/x.json"]
    assert all(e["reason"].startswith("ambiguous stem 'x': a/x.json, b/x.json, a_photos/x.jpg, b_photos/x.jpg")
               for e in errors if "x." in e["file"])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["photos"]["found"], summary["photos"]["failed"]) == (4, 3)


def test_a_coco_file_among_the_vendor_annotations_is_named_as_one_with_the_command_that_reads_it(tmp_path: Path):
    from tests.data.test_hostile_inputs import errors_of

    src = tmp_path / "src"
    photo(src / "a.jpg")
    (src / "a.json").write_text(vendor_text(), encoding="utf-8")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
            "categories": [{"id": 1, "name": "x"}]}
    (src / "instances_val.json").write_text(json.dumps(coco), encoding="utf-8")
    code, said = run("convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    reason = errors_of(tmp_path / "out")["instances_val.json"]
    # Before: "no image named 'instances_val' (.bmp/.jpeg/...) anywhere under src", as if a photo were missing.
    assert reason.startswith("a COCO detection file (1 images, 1 annotations), not one photo's vendor annotation")
    assert f"bbuvl data import-coco {src / 'instances_val.json'} IMAGES_DIR OUT" in reason
