"""Label hierarchy and token map are data files, validated path by path."""

import json

import pytest

from bbuvl.data.labels import Hierarchy, TokenMap, label_at_level


def test_default_hierarchy_matches_product_spec():
    h = Hierarchy.load()
    labels = h.labels()
    assert "螺丝连接点/BBU安装螺丝/连接正确" in labels and "螺丝连接点/地排处螺丝/连接错误" in labels
    assert {"bbu基带处理单元/华为", "bbu基带处理单元/中兴", "bbu基带处理单元/爱立信"} <= set(labels)
    assert {"挡风板/已安装", "挡风板/未安装", "机柜空间/满载", "机柜空间/非满载", "标签贴纸", "线缆"} <= set(labels)
    assert len(labels) == 3 + 5 * 2 + 2 + 2 + 1 + 1


@pytest.mark.parametrize("label,needle", [
    ("螺丝连接点/BBU安装螺丝", "lacks a state"),
    ("螺丝连接点/BBU安装螺丝/松动", "unknown state"),
    ("螺丝连接点/螺母/连接正确", "unknown attribute"),
    ("门", "unknown category"),
    ("标签贴纸/黄色", "takes no attribute"),
    ("挡风板/已安装/连接正确", "too many parts"),
])
def test_invalid_labels_are_explained(label, needle):
    h = Hierarchy.load()
    assert not h.is_valid(label)
    assert needle in h.problem(label)


@pytest.mark.parametrize("label,said", [
    # Read by the hierarchy's names alone, each was of an "unknown category 'air baffle'" (or 'screw or ...'): the
    # reason a verdict gives for a photo sent to review named a category the label spells right.
    ("air baffle/not installed/loose", "label 'air baffle/not installed/loose' has too many parts (nearest known "
                                       "label: 'air baffle/not installed'"),
    ("screw or connection point/BBU mounting screw/wrongly", "unknown state 'wrongly' for 'screw or connection point/BBU "
                                                             "mounting screw' (known: correct, wrong)"),
    ("BBU base-band unit/Huwei", "unknown attribute 'Huwei' for 'BBU base-band unit' (known: Huawei, ZTE, Ericsson)"),
])
def test_a_label_in_english_is_explained_in_english(label, said):
    assert said in Hierarchy.load().problem(label)


@pytest.mark.parametrize("label,said", [
    # Each was "has too many parts", of a label of as many parts as its category takes; the first two with that very
    # label as the nearest known one.
    ("air baffle/not installed", "label 'air baffle/not installed' is the hierarchy's English for '挡风板/未安装', not "
                                 "its label"),
    ("cable", "label 'cable' is the hierarchy's English for '线缆', not its label"),
    ("air baffle/已安装", "label 'air baffle/已安装' mixes the hierarchy's names and their English glosses: '挡风板/已安装' "
                          "or 'air baffle/installed', written in one language"),
    ("BBU base-band unit/华为", "label 'BBU base-band unit/华为' mixes the hierarchy's names and their English glosses: "
                               "'bbu基带处理单元/华为' or 'BBU base-band unit/Huawei', written in one language"),
])
def test_a_label_in_english_or_of_both_languages_is_told_so(label, said):
    assert Hierarchy.load().problem(label) == said


def test_user_hierarchy_file_adds_categories(tmp_path):
    p = tmp_path / "h.json"
    p.write_text(json.dumps({"categories": {"电源模块": {"attributes": {"正常": {}, "告警": {}}}}}), encoding="utf-8")
    h = Hierarchy.load(p)
    assert h.labels() == ["电源模块/正常", "电源模块/告警"]


def test_token_map_keeps_state_and_maps_platform_names():
    tm = TokenMap.load()
    assert tm.map_path("连接点（螺丝）/BBU安装螺丝/连接正确") == "螺丝连接点/BBU安装螺丝/连接正确"
    assert tm.map_path("connection_point/install_screw/install_screw_true") == "螺丝连接点/BBU安装螺丝/连接正确"
    assert tm.map_path(["bbu", "zte", ""]) == "bbu基带处理单元/中兴"
    assert tm.map_path("标签") == "标签贴纸"
    assert tm.map_path("螺丝连接点/BBU安装螺丝/安装正确") == "螺丝连接点/BBU安装螺丝/连接正确"


def test_english_gloss_and_levels():
    h = Hierarchy.load()
    assert h.english("螺丝连接点/BBU安装螺丝/连接正确") == "screw or connection point/BBU mounting screw/correct"
    assert label_at_level("螺丝连接点/BBU安装螺丝/连接正确", 2) == "螺丝连接点/BBU安装螺丝"
    assert label_at_level("线缆", 3) == "线缆"
    assert label_at_level("a/b/c", None) == "a/b/c"


def test_a_level_is_cut_from_the_label_as_label_key_reads_it():
    # Before: cut as raw text, '螺丝连接点 / BBU安装螺丝' was of category '螺丝连接点 ' and 'ｂｂｕ基带处理单元/华为' of its
    # own, though every label comparison reads them as the other spelling's.
    assert label_at_level("螺丝连接点 / BBU安装螺丝 / 连接正确", 1) == "螺丝连接点"
    assert label_at_level("螺丝连接点 ／BBU安装螺丝／连接正确", 2) == "螺丝连接点/BBU安装螺丝"
    assert label_at_level("ｂｂｕ基带处理单元/华为", 1) == "bbu基带处理单元"


def test_a_path_is_found_at_any_level_as_spelt_here_or_in_english():
    h = Hierarchy.load()
    assert h.path(" 螺丝连接点 / BBU安装螺丝") == "螺丝连接点/BBU安装螺丝"
    assert h.path("screw or connection point") == "螺丝连接点"
    assert h.path("ＢＢＵ base-band unit/Huawei") == "bbu基带处理单元/华为"
    assert h.path("螺丝连接点/BBU安装螺丝/连接错") is None


def test_broken_hierarchy_file_is_reported(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{nope", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read label hierarchy"):
        Hierarchy.load(p)


@pytest.mark.parametrize("content, needle", [
    ([1, 2], "the file must be a JSON object"),
    ({"categories": ["a"]}, "categories must be a JSON object"),
    ({"categories": {"a": "gloss"}}, "category 'a' must be a JSON object"),
    ({"categories": {"a": {"attributes": {"x": {"states": ["s1"]}}}}}, "attribute 'a/x' states must be a JSON object"),
])
def test_a_hierarchy_of_the_wrong_shape_names_the_file_and_the_part(tmp_path, content, needle):
    p = tmp_path / "h.json"
    p.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=needle) as caught:
        Hierarchy.load(p)
    assert str(caught.value).count(str(p.name)) == 1


@pytest.mark.parametrize("content, needle", [([1], "the file must be a JSON object"),
                                             ({"tokens": {"a": 3}}, "token 'a' must map to a name")])
def test_a_token_map_of_the_wrong_shape_names_the_file(tmp_path, content, needle):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=needle):
        TokenMap.load(p)


@pytest.mark.parametrize("state, needle", [
    ("连接\u001b[2J正确", "name '连接\\x1b[2J正确' holds control characters ('\\x1b')"),
    ("连接/正确", "name '连接/正确' holds '/', which separates a label's parts"),
    ("连接／正确", "name '连接／正确' holds '/', which separates a label's parts"),
    ("\u200b ", "name '\\u200b ' is empty once invisible characters and spaces are removed"),
])
def test_a_hierarchy_name_that_cannot_be_part_of_a_label_is_refused_naming_the_file(tmp_path, state, needle):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"categories": {"线缆": {"attributes": {"接头": {"states": {"正常": "ok", state: "x"}}}}}},
                               ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        Hierarchy.load(path)
    assert str(e.value).startswith(f"{path}: category '线缆': {needle}")


@pytest.mark.parametrize("where", ["category", "attribute", "state"])
def test_a_gloss_holding_a_slash_is_refused_since_the_english_label_would_be_cut_there(tmp_path, where):
    glosses = {"category": "cable", "attribute": "connector", "state": "ok"}
    glosses[where] = "fibre／optic" if where == "state" else "fibre/optic"
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"categories": {"线缆": {"gloss": glosses["category"], "attributes": {"接头": {
        "gloss": glosses["attribute"], "states": {"正常": {"gloss": glosses["state"]}}}}}}}, ensure_ascii=False),
        encoding="utf-8")
    # Before: accepted, and `eval --level 1` scored the English label "fibre/optic/connector/ok" as category "fibre".
    with pytest.raises(ValueError, match="holds '/', which separates an English label's parts"):
        Hierarchy.load(path)
