"""Whole-file JSON (a COCO file, a vendor annotation file) and COCO ids, through `bbuvl data ...`: a problem names the
line and column where it is, and an id written as a string where the file lists numbers (or the reverse) says so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.data.test_hostile_inputs import LABEL, errors_of, photo, run, vendor_text


def where(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """Line and column (from 1) of the `nth` occurrence of `needle` in `text`."""
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)


def coco_text(annotations: list[dict], images: list[dict] | None = None) -> str:
    """A COCO file, indented as most tools save it."""
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}]
    return json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": LABEL}]},
                      ensure_ascii=False, indent=2)


def test_a_key_named_twice_in_a_whole_json_file_is_given_its_line_and_column(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg")
    text = coco_text([{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]},
                      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}])
    text = text.replace('"bbox": [\n        1,', '"bbox": [1, 1, 2, 2],\n        "bbox": [\n        1,')  # the 2nd box
    coco_file = tmp_path / "coco.json"
    coco_file.write_text(text, encoding="utf-8")
    (line, column), (first, _) = where(text, '"bbox"', 3), where(text, '"bbox"', 2)
    code, out = run("import-coco", coco_file, tmp_path / "images", tmp_path / "out")
    assert code == 2 and f"{coco_file}: line {line}, column {column} (first at line {first}): key \"bbox\" appears " \
        "twice" in " ".join(out.split()), out
    assert not (tmp_path / "out" / "train.jsonl").exists()

    src = tmp_path / "export"
    photo(src / "p.jpg")
    vendor = json.dumps(json.loads(vendor_text()), ensure_ascii=False, indent=1)
    vendor = vendor.replace('"标签": ', '"标签": "标签贴纸",\n "标签": ')  # a hand edit adding a label beside the first
    (src / "p.json").write_text(vendor, encoding="utf-8")
    photo(src / "q.jpg", colour=(0, 0, 200))
    (src / "q.json").write_text(vendor_text(), encoding="utf-8")
    code, out = run("convert", src, tmp_path / "conv", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    (line, column), (first, _) = where(vendor, '"标签"', 2), where(vendor, '"标签"', 1)
    assert errors_of(tmp_path / "conv")["p.json"].startswith(f"line {line}, column {column} (first at line {first}): key "
                                                             "\"标签\" appears twice")


def test_a_coco_id_written_as_a_string_where_the_file_lists_numbers_is_named_as_that(tmp_path: Path):
    for i, colour in ((1, (200, 0, 0)), (2, (0, 200, 0)), (5, (0, 0, 200))):
        photo(tmp_path / "images" / f"{i}.jpg", colour=colour)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in (1, 2, 5)]
    text = coco_text([{"id": 10, "image_id": 1, "category_id": "1", "bbox": [4, 5, 26, 35]},
                      {"id": 11, "image_id": 2, "category_id": 1, "bbox": [4, 5, 26, 35]},
                      {"id": 12, "image_id": "5", "category_id": 1, "bbox": [4, 5, 26, 35]}], images)
    (tmp_path / "coco.json").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code, printed = run("import-coco", tmp_path / "coco.json", tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, printed
    reasons = {e.get("annotation_id", e.get("image_id")): e["reason"]
               for e in map(json.loads, (out / "errors.jsonl").open(encoding="utf-8"))}
    assert reasons[10] == ('category_id is the string "1" but the categories list the number 1: a string and a number '
                           "are different ids to every COCO reader; write category_id as the categories do")
    assert reasons[12].startswith('image_id is the string "5" but the images list the number 5: ')
    # Photo 5 has parts by its file: it is left out with its box, never imported as a photo of nothing.
    assert reasons[5] == "none of its 1 annotations could be used: the photo is left out"
    assert [json.loads(line)["images"] for line in (out / "train.jsonl").open()] == [["images/2.jpg"]]


def test_a_coco_file_whose_every_category_id_is_a_string_says_why_in_its_one_line(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg")
    text = coco_text([{"id": 1, "image_id": 1, "category_id": "1", "bbox": [4, 5, 26, 35]}])
    (tmp_path / "coco.json").write_text(text.replace('"id": 1,\n      "name"', '"id": "1",\n      "name"')
                                        .replace('"category_id": "1"', '"category_id": 1'), encoding="utf-8")
    code, out = run("import-coco", tmp_path / "coco.json", tmp_path / "images", tmp_path / "out")
    assert code == 2, out
    assert 'category_id is the number 1 but the categories list the string "1"' in " ".join(out.split()), out


def test_an_iscrowd_flag_written_as_text_is_read_as_the_number_it_spells(tmp_path: Path):
    # "0" is true to Python: every box of a file that quotes its flags was dropped as a crowd region.
    photo(tmp_path / "images" / "a.jpg")
    anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [4 * i, 5, 20, 30], "iscrowd": flag}
            for i, flag in enumerate(["0", "1", "no", 0, None], start=1)]
    (tmp_path / "coco.json").write_text(coco_text(anns), encoding="utf-8")
    out = tmp_path / "out"
    code, printed = run("import-coco", tmp_path / "coco.json", tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, printed
    reasons = {e["annotation_id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").open(encoding="utf-8"))}
    assert reasons == {2: "crowd annotation (a region of many objects, not one box)", 3: 'iscrowd "no" is neither 0 nor 1'}
    [kept] = [json.loads(line) for line in (out / "train.jsonl").open(encoding="utf-8")]
    assert sorted(o["bbox_2d"][0] for o in kept["objects"]) == [4.0, 16.0, 20.0]  # "0", 0 and null


def test_a_coco_id_that_is_a_fraction_is_named_as_no_whole_number_and_an_unknown_id_is_shown(tmp_path: Path):
    # 1.5 was "no number or string", and an annotation's unknown image id was not shown at all.
    photo(tmp_path / "images" / "a.jpg")
    anns = [{"id": 1, "image_id": 1.5, "category_id": 1, "bbox": [4, 5, 26, 35]},
            {"id": 2, "image_id": 9, "category_id": 1, "bbox": [4, 5, 26, 35]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]}]
    (tmp_path / "coco.json").write_text(coco_text(anns), encoding="utf-8")
    out = tmp_path / "out"
    code, printed = run("import-coco", tmp_path / "coco.json", tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, printed
    reasons = {e["annotation_id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").open(encoding="utf-8"))}
    assert reasons == {1: "image_id 1.5 is neither a whole number nor a string, so it names no entry",
                       2: "unknown image id 9"}
