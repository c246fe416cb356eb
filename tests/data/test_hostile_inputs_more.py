"""More files a new user could hand `bbuvl data ...`, made for real in tmp_path and run through the CLI: what would be
lost silently is an error naming the file, and the rest is converted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.vendor import parse_vendor

LABEL = "线缆"


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def photo(path: Path, colour: tuple[int, int, int]) -> Path:
    """A real 64x48 JPEG of one colour at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path, "JPEG", quality=95)
    return path


FEATURE = {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [[[4, 5], [30, 5], [30, 40], [4, 40]]]},
           "properties": {"contentZh": {"标签": LABEL}}}
DATALIST_ITEM = {"coordinates": [[4, 5], [30, 40]], "properties": {"object_type": LABEL}}


def convert_one_bad(tmp_path: Path, bad: dict) -> tuple[dict[str, str], list[str]]:
    """Convert a good photo and `bad` beside it: errors.jsonl as {file: reason} and the ids converted."""
    src = tmp_path / "export"
    photo(src / "good.jpg", (200, 10, 10))
    (src / "good.json").write_text(json.dumps({"markResult": {"features": [FEATURE]}}), encoding="utf-8")
    photo(src / "bad.jpg", (10, 10, 200))
    (src / "bad.json").write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    errors = {e["file"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text("utf-8").splitlines())}
    ids = [json.loads(line)["id"] for line in (out / "train.jsonl").read_text("utf-8").splitlines()]
    return errors, ids


@pytest.mark.parametrize("mark", [{"type": "FeatureCollection", "Features": [FEATURE]}, {"feature": [FEATURE]}, {}])
def test_a_mark_result_without_its_features_key_is_named_never_a_photo_of_no_part(tmp_path: Path, mark: dict):
    # A misspelt key was read as no features: the photo was converted with no box, and trained the model to see
    # nothing where its parts are.
    errors, ids = convert_one_bad(tmp_path, {"markResult": mark})
    assert ids == ["good"]
    assert errors["bad.json"].startswith("bad.json: 'markResult' has no 'features' array (its keys: "), errors
    assert all(key in errors["bad.json"] for key in mark)


def test_a_file_holding_both_shapes_with_boxes_is_named_never_one_shape_dropped(tmp_path: Path):
    errors, ids = convert_one_bad(tmp_path, {"markResult": {"features": [FEATURE]}, "dataList": [DATALIST_ITEM] * 2})
    assert ids == ["good"]
    assert "holds both 'markResult.features' (1) and 'dataList' (2)" in errors["bad.json"], errors


def test_a_shape_left_empty_beside_the_other_reads_the_one_that_lists_the_boxes():
    for data in ({"markResult": {"features": []}, "dataList": [DATALIST_ITEM]},
                 {"markResult": {"features": [FEATURE]}, "dataList": []},
                 {"markResult": {"features": [FEATURE]}, "dataList": None}):
        ann = parse_vendor(data, "x.json")
        assert [o.parts for o in ann.objects] == [[LABEL]] and ann.problems == [], data
    with pytest.raises(ValueError, match=r"x\.json: 'dataList' must be an array, got null"):
        parse_vendor({"dataList": None}, "x.json")


def test_what_convert_skips_is_named_on_screen_file_by_file_not_only_counted(tmp_path: Path):
    # The screen said "2 problem(s) listed in errors.jsonl": which file, and why, was said nowhere a user looks first.
    src = tmp_path / "export"
    photo(src / "good.jpg", (200, 10, 10))
    (src / "good.json").write_text(json.dumps({"markResult": {"features": [FEATURE]}}), encoding="utf-8")
    photo(src / "site" / "broken.jpg", (10, 10, 200))
    (src / "site" / "broken.json").write_text('{"markResult": {"features": [', encoding="utf-8")
    odd = {**FEATURE, "properties": {"contentZh": {"标签": "外星设备"}}}
    photo(src / "odd.jpg", (10, 200, 10))
    (src / "odd.json").write_text(json.dumps({"markResult": {"features": [FEATURE, odd]}}, ensure_ascii=False), "utf-8")
    code, said = run("convert", src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert code == 0, said
    lines = " ".join(said.split())
    assert "warning: site/broken.json: line 1: not valid JSON" in lines, said
    assert "warning: odd.json, object 1: label '外星设备': unknown category" in lines, said
    assert "2 problem(s) listed in" in lines


def test_what_import_coco_skips_is_named_on_screen_by_its_entry_in_the_file(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    (tmp_path / "images" / "copy.jpg").write_bytes((tmp_path / "images" / "a.jpg").read_bytes())
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "copy.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]},
                            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [30, 5, 20, 20]},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [4, 5, 26, 35]}],
            "categories": [{"id": 1, "name": LABEL}]}
    coco_file = tmp_path / "coco.json"
    coco_file.write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, said = run("import-coco", coco_file, tmp_path / "images", tmp_path / "imported", "--val-ratio", "0")
    assert code == 0, said
    said = " ".join(said.split())
    assert f"warning: {coco_file}: annotations[1] (a.jpg): " in said, said
    assert f"warning: {coco_file}: images[1] ({tmp_path / 'images' / 'copy.jpg'}): the same bytes as " in said, said


def test_a_hierarchy_and_token_map_kept_in_the_export_folder_are_read_as_settings_never_as_photos(tmp_path: Path):
    # Each was listed in errors.jsonl as an annotation without its photo ("no image named 'hierarchy'").
    src = tmp_path / "export"
    photo(src / "good.jpg", (200, 10, 10))
    (src / "good.json").write_text(json.dumps({"markResult": {"features": [FEATURE]}}), encoding="utf-8")
    shipped = Path(__file__).parents[2] / "src" / "bbuvl" / "resources"
    (src / "settings").mkdir()
    for name in ("hierarchy.json", "token_map.json"):
        (src / "settings" / name).write_bytes((shipped / name).read_bytes())
    out = tmp_path / "out"
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0",
                     "--hierarchy", src / "settings" / "hierarchy.json", "--token-map", src / "settings" / "token_map.json")
    assert code == 0, said
    assert (out / "errors.jsonl").read_text(encoding="utf-8") == "", said
    assert [json.loads(line)["id"] for line in (out / "train.jsonl").read_text("utf-8").splitlines()] == ["good"]


def test_a_hierarchy_named_by_a_link_that_reaches_nothing_is_named_as_typed(tmp_path: Path):
    # The error named the file the link leads to, which the user never typed, and called it missing.
    link = tmp_path / "hierarchy.json"
    link.symlink_to(tmp_path / "moved" / "labels.json")
    record = {"images": ["a.jpg"], "width": 64, "height": 48, "objects": []}
    (tmp_path / "d.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    code, said = run("check", tmp_path / "d.jsonl", "--hierarchy", link)
    said = " ".join(said.split())
    assert code != 0 and f"{link}: cannot read label hierarchy: a link that reaches no file (to " in said, said


def test_a_value_tens_of_thousands_of_characters_long_is_shown_cut_and_the_error_stays_one_short_line(tmp_path: Path):
    # A label, a path or a quoted number pasted 50,000 characters long was printed whole, twice for a path: one
    # "line" of an error filled screens and buried its reason.
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    photo(tmp_path / "images" / "b.jpg", (10, 10, 200))
    size = {"width": 64, "height": 48}
    rows = [{"images": ["images/a.jpg"], **size, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆" + "x" * 50_000}]},
            {"images": ["images/" + "y" * 50_000 + ".jpg"], **size, "objects": []},
            {"images": ["images/b.jpg"], **size, "objects": [{"bbox_2d": [4, 5, 30, "4" * 50_000], "desc": LABEL}]}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, said = run("check", jsonl, "--no-decode")
    lines = [line for line in said.splitlines() if line.startswith(str(jsonl))]
    assert code == 1 and [line.split(": ")[0] for line in lines] == [f"{jsonl}:1", f"{jsonl}:2", f"{jsonl}:3"], said
    assert all(len(line) < 600 for line in lines), [len(line) for line in lines]
    assert "(50,004 characters)" in lines[0] and "unknown category" in lines[0]
    assert ".jpg" in lines[1] and "(50,012 characters)" in lines[1]
    assert "is a string, not a number" in lines[2]
    code, said = run("stats", jsonl)
    assert code != 0 and said.startswith(f"error: {jsonl}:3: ") and len(said) < 600, said


@pytest.mark.parametrize("name", ["Val.jsonl", "valid.jsonl", "validation.jsonl", "val.json"])
def test_a_dataset_folders_val_file_under_another_name_is_an_error_never_its_photos_left_out(tmp_path: Path, name: str):
    # `data check` only warned that val.jsonl was missing and said ok; `data stats` counted train alone: the validation
    # photos another tool wrote as valid.jsonl were in no number.
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    photo(tmp_path / "images" / "b.jpg", (10, 10, 200))
    line = {"width": 64, "height": 48, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]}
    (tmp_path / "train.jsonl").write_text(json.dumps({"images": ["images/a.jpg"], **line}, ensure_ascii=False) + "\n", "utf-8")
    (tmp_path / name).write_text(json.dumps({"images": ["images/b.jpg"], **line}, ensure_ascii=False) + "\n", "utf-8")
    code, said = run("check", tmp_path)
    assert code == 1 and f"{tmp_path / 'val.jsonl'}: missing; {name} is there" in " ".join(said.split()), said
    code, said = run("stats", tmp_path)
    assert code != 0 and f"{tmp_path / 'val.jsonl'}: missing; {name} is there" in " ".join(said.split()), said


def test_a_dataset_folder_without_val_nor_a_file_like_it_is_only_warned_of(tmp_path: Path):
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    line = {"images": ["images/a.jpg"], "width": 64, "height": 48, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", "utf-8")
    (tmp_path / "notes.txt").write_text("site 7", "utf-8")
    code, said = run("check", tmp_path)
    assert code == 0 and "val.jsonl: missing (optional, but usual in a dataset folder)" in " ".join(said.split()), said
    code, said = run("stats", tmp_path)
    assert code == 0, said


@pytest.mark.parametrize("command", ["split", "teachers", "export-coco"])
def test_a_photo_path_the_system_refuses_or_a_folder_is_named_by_its_dataset_line(tmp_path: Path, command: str):
    # A name longer than the system allows was an OSError naming the photo alone ("File name too long"), never the
    # dataset line that holds it; a folder named as the photo was called "no such file".
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    (tmp_path / "images" / "b.jpg").mkdir()
    line = {"width": 64, "height": 48, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}]}
    out = {"split": [tmp_path / "parts"], "teachers": [tmp_path / "t.jsonl", "--k", "1"],
           "export-coco": [tmp_path / "coco.json"]}[command]
    for name, said_of_it in (("y" * 300 + ".jpg", "a file name longer than this system allows"),
                             ("b.jpg", f"a folder at {tmp_path / 'images' / 'b.jpg'}, not an image file")):
        jsonl = tmp_path / "d.jsonl"
        jsonl.write_text("".join(json.dumps({"images": [f"images/{n}"], **line}) + "\n" for n in ("a.jpg", name)), "utf-8")
        code, said = run(command, jsonl, *out)
        assert code != 0 and said.startswith(f"error: {jsonl}:2: image images/") and said_of_it in said, said
        assert "Errno" not in said and "y" * 201 not in said


def files_of(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` but the outputs' record, by its path there: its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".bbuvl-outputs.json"}


def test_a_rerun_on_an_export_none_of_whose_photos_converts_keeps_the_dataset_out_held(tmp_path: Path):
    # The dataset of the first run (its JSONL and photos) was deleted by a re-run that converted nothing and failed.
    src = tmp_path / "export"
    photo(src / "good.jpg", (200, 10, 10))
    (src / "good.json").write_text(json.dumps({"markResult": {"features": [FEATURE]}}), encoding="utf-8")
    out = tmp_path / "out"
    assert run("convert", src, out, "--workers", "1", "--val-ratio", "0")[0] == 0
    before = files_of(out)
    (src / "good.json").write_text('{"markResult": ', encoding="utf-8")
    code, said = run("convert", src, out, "--workers", "1", "--val-ratio", "0", "--overwrite")
    said = " ".join(said.split())
    assert code == 1 and "warning: good.json: " in said and f"nothing was written: {out} keeps what it held" in said, said
    assert files_of(out) == before
    # A first run that converts nothing leaves its errors.jsonl and summary.json alone, no empty images/ folder
    code, said = run("convert", src, tmp_path / "first", "--workers", "1")
    assert code == 1 and sorted(p.name for p in (tmp_path / "first").iterdir()) == [".bbuvl-outputs.json", "errors.jsonl",
                                                                                      "summary.json"], said


def test_a_file_cut_short_inside_a_chinese_character_is_called_cut_short_never_gbk(tmp_path: Path):
    # A copy that did not finish, cut inside "缆", was told it "reads as GBK: save it as UTF-8", or asked whether it
    # was a JSONL file at all.
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    lines = "".join(json.dumps({"images": ["images/a.jpg"], "width": 64, "height": 48,
                                "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": d}]}, ensure_ascii=False) + "\n"
                    for d in (LABEL, "螺丝连接点"))
    data = lines.encode("utf-8")
    jsonl = tmp_path / "d.jsonl"
    for cut in (data.rindex("螺丝".encode()) + 1, data.rindex("螺丝".encode()) + 2):
        jsonl.write_bytes(data[:cut])
        code, said = run("check", jsonl, "--no-decode")
        said = " ".join(said.split())
        assert code == 1 and f"{jsonl}:2: not UTF-8 text" in said and "it ends in the middle of a character: the " \
            "file was cut short" in said and "GBK" not in said, said
    src = tmp_path / "export"
    photo(src / "p.jpg", (200, 10, 10))
    text = json.dumps({"markResult": {"features": [FEATURE]}}, ensure_ascii=False).encode("utf-8")
    (src / "p.json").write_bytes(text[:text.rindex(LABEL.encode()) + 4])
    code, said = run("convert", src, tmp_path / "out", "--workers", "1")
    said = " ".join(said.split())
    assert code == 1 and "warning: p.json: not UTF-8 text" in said and "the file was cut short" in said, said


def test_json_that_ends_before_it_closes_is_said_to_end_early_in_a_jsonl_line_and_a_coco_file(tmp_path: Path):
    # "Expecting ',' delimiter at column 12950" of a COCO file cut short said nothing of the file's end.
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    line = json.dumps({"images": ["images/a.jpg"], "width": 64, "height": 48, "objects": []})
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(line + "\n" + line[:-30], encoding="utf-8")  # the last line cut short, no line break after it
    code, said = run("check", jsonl)
    assert code == 1 and f"{jsonl}:2: invalid JSON: " in said and "the text ends before its JSON does: cut short?" in said
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                                "annotations": [], "categories": []})[:-25], encoding="utf-8")
    code, said = run("import-coco", coco, tmp_path / "images", tmp_path / "out")
    said = " ".join(said.split())
    assert code == 2 and f"{coco}: line 1: not valid JSON (" in said and "cut short?" in said, said
    coco.write_text('{"images": [} ', encoding="utf-8")  # broken inside, not at its end: no such guess
    assert "cut short" not in run("import-coco", coco, tmp_path / "images", tmp_path / "out")[1]


@pytest.mark.parametrize("box, said", [([10, 10, 900, 900], "lies outside the 64x48 image"),
                                       ([-10, 5, 30, 40], "lies outside the 64x48 image"),
                                       ([10, 5, 10, 40], "is degenerate")])
def test_tile_refuses_a_box_training_refuses_by_its_line_never_cutting_it_into_tiles(tmp_path: Path, box, said):
    # A box of another frame (900 px in a 64 px photo) was cut into tiles that hold a piece of it each, exit 0:
    # with --tiles-only the mistake was gone from sight, with the whole photo kept it failed later in the tiled files.
    photo(tmp_path / "images" / "a.jpg", (90, 120, 30))
    photo(tmp_path / "images" / "b.jpg", (10, 10, 200))
    objects = [[{"bbox_2d": [4, 5, 30, 40], "desc": LABEL}], [{"bbox_2d": box, "desc": LABEL}]]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"images": [f"images/{n}"], "width": 64, "height": 48, "objects": o},
                                        ensure_ascii=False) + "\n" for n, o in zip(("a.jpg", "b.jpg"), objects)), "utf-8")
    code, out = run("tile", jsonl, tmp_path / "tiles", "--tiles-only")
    assert code != 0 and out.startswith(f"error: {jsonl}:2: objects[0]: box ") and said in out, out
    assert not (tmp_path / "tiles").exists()
