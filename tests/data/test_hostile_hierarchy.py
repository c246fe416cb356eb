"""A hand-written label hierarchy is read strictly: a key it misspells or a gloss of the wrong JSON type is an error
naming the file and the entry, never ignored or turned into a traceback later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.labels import Hierarchy

LABEL = "线缆"


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, on one line."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def hierarchy(tmp_path: Path, categories: dict) -> Path:
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps({"_doc": "a comment", "categories": categories}, ensure_ascii=False), encoding="utf-8")
    return path


def vendor_export(src: Path) -> Path:
    """One photo and its FeatureCollection labelled LABEL/接头/连接错误."""
    src.mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 30)).save(src / "p.jpg")
    feature = {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [[[4, 5], [30, 5], [30, 40], [4, 40]]]},
               "properties": {"contentZh": {"标签": f"{LABEL}/接头/连接错误"}}}
    (src / "p.json").write_text(json.dumps({"markResult": {"type": "FeatureCollection", "features": [feature]}},
                                           ensure_ascii=False), encoding="utf-8")
    return src


STATES = {"连接正确": "ok", "连接错误": {"gloss": "wrong", "fault": True}}


@pytest.mark.parametrize("where, gloss", [("category", 5), ("attribute", ["joint"]), ("state", {"en": "wrong"}),
                                          ("cue_en", 1.5), ("category", None)])
def test_a_gloss_that_is_no_text_is_named_where_the_hierarchy_is_read(tmp_path, where, gloss):
    # `data convert --lang en` ended in "TypeError: sequence item 0: expected str instance, int found"; a cue went
    # into the system prompt as Python's repr; a state's gloss was turned into its repr.
    states = {**STATES, "连接错误": {"gloss": gloss, "fault": True}} if where == "state" else STATES
    attribute = {"gloss": gloss, "states": states} if where == "attribute" else {"gloss": "joint", "states": states}
    category = {"attributes": {"接头": attribute}, "gloss": gloss if where == "category" else "cable"}
    if where == "cue_en":
        category["cue_en"] = gloss
    path = hierarchy(tmp_path, {LABEL: category})
    code, out = run("convert", vendor_export(tmp_path / "export"), tmp_path / "out", "--lang", "en", "--hierarchy",
                    path, "--workers", "1", "--val-ratio", "0")
    key = "cue_en" if where == "cue_en" else "gloss"
    assert code == 2 and "Traceback" not in out, out
    assert f"{path}:" in out and f'"{key}" must be text (a JSON string), got' in out, out
    assert "null null" not in out, out  # a null gloss was "got null null"
    assert not (tmp_path / "out" / "train.jsonl").exists()


@pytest.mark.parametrize("where", ["file", "category", "attribute", "state"])
def test_a_misspelt_key_is_refused_naming_it_and_the_key_meant(tmp_path, where):
    # `"fualt": true` marked no fault and the run went on: inspections never flagged that state.
    states = {**STATES, "连接错误": {"gloss": "wrong", "fualt": True}} if where == "state" else STATES
    attribute = {"gloss": "joint", "states": states, **({"staets": {}} if where == "attribute" else {})}
    category = {"attributes": {"接头": attribute}, **({"atributes": {}} if where == "category" else {})}
    path = hierarchy(tmp_path, {LABEL: category})
    if where == "file":
        path.write_text(json.dumps({"categories": {LABEL: category}, "categroies": {}}, ensure_ascii=False), encoding="utf-8")
    typo, meant = {"file": ("categroies", "categories"), "category": ("atributes", "attributes"),
                   "attribute": ("staets", "states"), "state": ("fualt", "fault")}[where]
    with pytest.raises(ValueError, match=rf"unknown key '{typo}' \(did you mean '{meant}'\?\)"):
        Hierarchy.load(path)
    (tmp_path / "d.jsonl").write_text("", encoding="utf-8")
    code, out = run("check", tmp_path / "d.jsonl", "--hierarchy", path)
    assert code == 2 and f"{path}:" in out and f"unknown key '{typo}'" in out, out


def test_comments_and_every_known_key_are_read(tmp_path):
    category = {"_note": "why", "gloss": "cable", "cue_zh": "线", "cue_en": "a cable", "attributes": {
        "接头": {"_note": "x", "gloss": "joint", "states": {"连接正确": "ok", "连接错误": {"gloss": "wrong", "fault": True,
                                                                                      "_why": "loose"}}}}}
    h = Hierarchy.load(hierarchy(tmp_path, {LABEL: category}))
    assert h.labels() == [f"{LABEL}/接头/连接正确", f"{LABEL}/接头/连接错误"]
    assert h.faults == {f"{LABEL}/接头/连接错误"} and h.english(f"{LABEL}/接头/连接错误") == "cable/joint/wrong"
    assert h.categories[LABEL].cue_en == "a cable"


def test_a_hierarchy_edited_while_the_process_runs_is_read_again(tmp_path):
    # Loads were cached by the file's name alone: a notebook or a test that edited the file kept the first labels
    # and faults it read, and a fault added since never flagged anything.
    path = hierarchy(tmp_path, {LABEL: {"attributes": {"接头": {"states": {"连接正确": "ok", "连接错误": "wrong"}}}}})
    assert Hierarchy.load(path).faults == frozenset()
    assert Hierarchy.load(path) is Hierarchy.load(path)  # unchanged: read once
    hierarchy(tmp_path, {LABEL: {"attributes": {"接头": {"states": STATES}}}, "标签贴纸": {}})
    edited = Hierarchy.load(path)
    assert edited.faults == {f"{LABEL}/接头/连接错误"} and "标签贴纸" in edited.labels()


@pytest.mark.parametrize("second, gloss", [("电源线", "cable"), ("电源线", "ｃａｂｌｅ "), ("线缆/插头", "joint")])
def test_two_parts_with_one_english_gloss_are_refused_naming_both(tmp_path, second, gloss):
    # Before: loaded without a word; `data convert --lang en` wrote both as 'cable', which read back as the later alone.
    categories = {LABEL: {"gloss": "cable", "attributes": {"接头": {"gloss": "joint", "states": STATES}}}}
    if "/" in second:
        categories[LABEL]["attributes"]["插头"] = {"gloss": gloss, "states": STATES}
    else:
        categories[second] = {"gloss": gloss}
    path = hierarchy(tmp_path, categories)
    code, out = run("convert", vendor_export(tmp_path / "export"), tmp_path / "out", "--lang", "en", "--hierarchy",
                    path, "--workers", "1", "--val-ratio", "0")
    first = f"{LABEL}/接头" if "/" in second else LABEL
    assert code == 2 and "Traceback" not in out, out
    assert f"{path}: '{first}' and '{second}' share the English gloss" in out, out
    assert not (tmp_path / "out").exists()
