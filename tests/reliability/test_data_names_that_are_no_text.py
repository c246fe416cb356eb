"""A file name of bytes that are not UTF-8 (an archive made on a Chinese Windows, unpacked here: `机房.jpg` in GBK),
or half a character written as a JSON `\\udcbb` / `\\ud800` escape, is named where it is read, with what it reads
as in GBK; it never reaches a writer, where it failed as "'utf-8' codec can't encode ..." naming no file, after the
work and with everything else lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app

GBK_ROOM = "机房"
LABEL = "线缆"


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def gbk_name(folder: Path, stem: str, suffix: str) -> Path:
    """The path of `stem + suffix` in `folder` as Windows names it in GBK: bytes that are not UTF-8."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + stem.encode("gbk") + suffix.encode()))


def photo(path: Path, colour: tuple[int, int, int] = (90, 120, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path, "JPEG")
    return path


def vendor_json(path: Path, label: str = LABEL) -> None:
    feature = {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [[[4, 5], [30, 5], [30, 40], [4, 40]]]},
               "properties": {"contentZh": {"标签": "LABEL"}}}
    text = json.dumps({"markResult": {"type": "FeatureCollection", "features": [feature]}}, ensure_ascii=False)
    path.write_text(text.replace("LABEL", label), encoding="utf-8")


def record(image: str) -> str:
    return json.dumps({"images": [image], "width": 64, "height": 48,
                       "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]})  # ensure_ascii: `\udcbb` escapes


def test_a_dataset_naming_a_photo_whose_name_is_no_utf8_is_an_error_of_its_line_in_check_and_every_writer(tmp_path):
    photo(tmp_path / "a.jpg")
    photo(gbk_name(tmp_path, GBK_ROOM, ".jpg"), (10, 10, 200))
    data = tmp_path / "d.jsonl"
    # What a script writes with json.dumps (ASCII escapes) from os.listdir: the photo is found, its name is no text
    data.write_text(record("a.jpg") + "\n" + record(gbk_name(Path(), GBK_ROOM, ".jpg").name) + "\n", encoding="utf-8")
    said = f"{data}:2: images.0: '\\xbb\\xfa\\xb7\\xbf.jpg' is not UTF-8 text (a file name of bytes that are not UTF-8; " \
           f"they read as GBK: '{GBK_ROOM}.jpg')"
    code, out = invoke("data", "check", data)
    assert code == 1 and said in out and ":1:" not in out, out  # it said "ok"
    for command in (["split", data, tmp_path / "split"], ["teachers", data, tmp_path / "t.jsonl"],
                    ["export-coco", data, tmp_path / "c.json"], ["tile", data, tmp_path / "tiles"]):
        code, out = invoke("data", *command)
        assert code == 2 and said in out and "codec" not in out, (command, out)
    assert not any(p.name in ("split", "t.jsonl", "c.json", "tiles") for p in tmp_path.iterdir())


def test_convert_names_a_photo_whose_name_is_no_utf8_and_converts_the_rest(tmp_path):
    src = tmp_path / "export"
    photo(src / "images" / "ok.jpg")
    vendor_json(photo(src / "images" / "x.jpg", (0, 0, 250)).with_suffix(".json"), LABEL + "SURROGATE")
    (src / "images" / "x.json").write_text((src / "images" / "x.json").read_text(encoding="utf-8")
                                           .replace("SURROGATE", "\\ud800"), encoding="utf-8")
    vendor_json(src / "images" / "ok.json")
    photo(gbk_name(src / "images", GBK_ROOM, ".jpg"), (200, 0, 0))
    vendor_json(gbk_name(src / "images", GBK_ROOM, ".json"))
    code, out = invoke("data", "convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0 and "codec" not in out, out  # the whole conversion failed writing train.jsonl
    assert [json.loads(line)["id"] for line in (tmp_path / "out" / "train.jsonl").open(encoding="utf-8")] == ["ok"]
    errors: dict[str, dict] = {}
    for entry in map(json.loads, (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")):
        errors.setdefault(entry["file"], entry)
    gbk = errors["images/\\xbb\\xfa\\xb7\\xbf.json"]["reason"]
    assert "is not UTF-8 text" in gbk and f"they read as GBK: 'images/{GBK_ROOM}.j" in gbk, gbk
    half = errors["images/x.json"]  # errors.jsonl itself could not be written with it
    assert half["label"] == LABEL + "\\ud800" and f"label '{LABEL}\\ud800'" in half["reason"], half


def test_import_coco_skips_a_file_name_that_is_no_utf8_into_errors_and_imports_the_rest(tmp_path):
    images = tmp_path / "images"
    photo(images / "ok.jpg")
    photo(gbk_name(images, GBK_ROOM, ".jpg"), (0, 0, 250))
    names = ["ok.jpg", gbk_name(Path(), GBK_ROOM, ".jpg").name]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 5, 20, 20]} for i in range(2)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "c.json").write_text(json.dumps(coco), encoding="utf-8")
    code, out = invoke("data", "import-coco", tmp_path / "c.json", images, tmp_path / "out", "--val-ratio", "0")
    assert code == 0, out  # it stopped with pydantic's text, or a codec error, naming no entry
    [line] = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["images"] == ["images/ok.jpg"]
    [error, _] = map(json.loads, (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8"))
    assert error["entry"] == "images[1]" and f"they read as GBK: '{GBK_ROOM}.jpg'" in error["reason"], error


def test_fewshot_skips_a_query_photo_whose_name_is_no_utf8_and_writes_the_others(tmp_path):
    support = tmp_path / "support"
    for i, label in enumerate((LABEL, "标签贴纸")):
        photo(support / label / "a.jpg", (100 * i, 50, 50))
    queries = tmp_path / "queries"
    photo(queries / "ok.jpg")
    photo(gbk_name(queries, GBK_ROOM, ".jpg"), (0, 0, 250))
    out = tmp_path / "answers.csv"
    code, said = invoke("fewshot", "classify", "--support", support, "--query", queries, "--backbone", "pixels",
                        "--out", out, "--device", "cpu", "--no-cache")
    assert code == 0 and "codec" not in said, said  # every answer was lost
    assert f"they read as GBK: '{GBK_ROOM}.jpg'" in said, said
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{queries / 'ok.jpg'},"), rows


def dataset_in_gbk_folder(tmp_path: Path) -> Path:
    """A dataset JSONL with its photo, in a folder named in GBK bytes (the name the user types is no UTF-8 text)."""
    folder = gbk_name(tmp_path, GBK_ROOM, "")
    photo(folder / "a.jpg")
    (folder / "d.jsonl").write_text(record("a.jpg") + "\n", encoding="utf-8")
    return folder / "d.jsonl"


def test_a_path_made_from_a_gbk_folder_the_user_typed_is_refused_naming_the_output_or_written_escaped(tmp_path):
    data = dataset_in_gbk_folder(tmp_path)
    # Records that must name the photo from elsewhere cannot hold the folder's name: the file is named, not a codec
    for command, out in ((["split", data, tmp_path / "split"], "split/train.jsonl"),
                         (["teachers", data, tmp_path / "t.jsonl"], "t.jsonl"),
                         (["export-coco", data, tmp_path / "c.json"], "c.json")):
        code, said = invoke("data", *command)
        assert code == 2 and f"{tmp_path / out}: not written:" in said and "codec" not in said, said
        assert f"{GBK_ROOM}/a.jpg'" in said and "they read as GBK: '" in said, said
    # What only describes a run (summary.json, --json reports, the record of what a command wrote) keeps the path as
    # JSON escapes, which read back as it was: these ended in a traceback after the work
    json_out = gbk_name(tmp_path, "统计", ".json")
    for _ in range(2):  # the second run finds its own output, recorded under its name
        code, said = invoke("data", "stats", data, "--json", json_out)
        assert code == 0 and "Traceback" not in said, said
    code, said = invoke("data", "tile", data, tmp_path / "tiles", "--teachers", "0")
    assert code == 0, said
    summary = json.loads((tmp_path / "tiles" / "summary.json").read_text(encoding="utf-8"))
    assert str(data) in json.dumps(summary, ensure_ascii=False), summary
    code, said = invoke("doctor", "data", data, "--json", tmp_path / "doctor.json")
    assert "Traceback" not in said and (tmp_path / "doctor.json").is_file(), said


def test_half_a_character_in_free_text_is_kept_spelt_out_and_the_photo_or_run_kept(tmp_path):
    # A vendor remark (备注) and a detector's label are free text no model reads: a `\ud800` escape in one lost the
    # photo (convert) or stopped the run (fewshot label) with pydantic's dump, where before it failed every writer.
    src = tmp_path / "export"
    vendor_json(photo(src / "p.jpg").with_suffix(".json"))
    data = json.loads((src / "p.json").read_text(encoding="utf-8"))
    data["markResult"]["features"][0]["properties"]["contentZh"]["备注"] = "夜间SURROGATE"
    (src / "p.json").write_text(json.dumps(data, ensure_ascii=False).replace("SURROGATE", "\\ud800"), encoding="utf-8")
    code, out = invoke("data", "convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0, out
    [line] = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["objects"][0]["extra"] == {"备注": "夜间\\ud800"}

    support = tmp_path / "support"
    photo(support / LABEL / "a.jpg")
    prediction = json.dumps({"image": str(src / "p.jpg"), "width": 64, "height": 48, "error": None, "raw": "",
                             "objects": [{"bbox_2d": [4, 5, 30, 40], "label": "SURROGATE", "score": 0.9}]})
    (tmp_path / "pred.jsonl").write_text(prediction.replace("SURROGATE", "\\ud800") + "\n", encoding="utf-8")
    code, out = invoke("fewshot", "label", "--predictions", tmp_path / "pred.jsonl", "--support", support, "--backbone",
                       "pixels", "--out", tmp_path / "labelled.jsonl", "--threshold", "-1", "--no-cache", "--device", "cpu")
    assert code == 0, out
    [line] = (tmp_path / "labelled.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["objects"][0]["extra"]["detector_label"] == "\\ud800"


def test_half_a_character_where_a_number_belongs_is_an_error_of_its_line(tmp_path):
    # pydantic could not word the error ("'utf-8' codec can't encode character '\ud800'"): a traceback in data check
    photo(tmp_path / "a.jpg")
    line = record("a.jpg").replace('"width": 64', '"width": "\\ud800"')
    data = tmp_path / "d.jsonl"
    data.write_text(record("a.jpg") + "\n" + line + "\n", encoding="utf-8")
    code, out = invoke("data", "check", data)
    assert code == 1 and f'{data}:2: width: "\\ud800" is a string, not a number' in out and "Traceback" not in out, out
