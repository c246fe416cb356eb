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
