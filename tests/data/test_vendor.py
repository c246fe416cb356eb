"""Reading the annotation platform's JSON shapes (bbuvl.data.vendor)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbuvl.data.vendor import parse_vendor


def feature(coords, zh=None, en=None):
    props = {}
    if en is not None:
        props["content"] = {"label": en}
    if zh is not None:
        props["contentZh"] = zh
    return {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": coords}, "properties": props}


def rect(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]


def collection(*features, info=(640, 480)):
    data = {
        "tagInfo": {"dataId": "D-1"},
        "version": "2.1",
        "markResult": {"type": "FeatureCollection", "features": list(features)},
        "statistics": {"count": len(features)},
        "workload": {"annotator": "A-1"},
        "quality": {"passed": True},
    }
    if info is not None:
        data["info"] = {"width": info[0], "height": info[1], "depth": 3}
    return data


def test_featurecollection_box_is_extent_of_the_polygon_at_any_nesting_depth():
    data = collection(
        feature([rect(10.5, 20, 50, 60.25)], zh={"标签": "挡风板/已安装"}),
        feature(rect(1, 2, 3, 4), zh={"标签": "挡风板/已安装"}),
        feature([[rect(5, 6, 7, 8)]], zh={"标签": "挡风板/已安装"}),
    )
    ann = parse_vendor(data, "a.json")
    assert ann.size == (640, 480)
    assert ann.shape == "featurecollection"
    assert [o.box for o in ann.objects] == [[10.5, 20, 50, 60.25], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert [o.index for o in ann.objects] == [0, 1, 2]


def test_featurecollection_prefers_the_chinese_label_and_keeps_the_state():
    data = collection(
        feature(
            [rect(0, 0, 5, 5)],
            zh={"标签": "连接点（螺丝）/BBU安装螺丝/连接正确"},
            en="connection_point/install_screw/install_screw_true",
        )
    )
    (obj,) = parse_vendor(data, "a.json").objects
    assert obj.parts == ["连接点（螺丝）", "BBU安装螺丝", "连接正确"]
    assert obj.label == "连接点（螺丝）/BBU安装螺丝/连接正确"


def test_featurecollection_falls_back_to_the_english_label():
    data = collection(feature([rect(0, 0, 5, 5)], zh={"备注": ""}, en="windshield/installed"))
    (obj,) = parse_vendor(data, "a.json").objects
    assert obj.parts == ["windshield", "installed"]


def test_featurecollection_free_text_keys_become_extra_when_not_empty():
    data = collection(
        feature([rect(0, 0, 5, 5)], zh={"标签": "标签", "备注": "光纤弯曲半径过小", "说明": "  ", "编号": 7})
    )
    (obj,) = parse_vendor(data, "a.json").objects
    assert obj.extra == {"备注": "光纤弯曲半径过小", "编号": "7"}


def test_datalist_reads_english_fallback_property_names_in_label_order():
    data = {
        "dataList": [
            {"coordinates": [[100, 120], [420, 260]],
             "properties": {"object_type": "bbu", "property": "zte", "extra_info": ""}},
            {"coordinates": [[130, 150], [110, 130]],  # corners in the other order
             "properties": {"label": "connection_point", "question": "install_screw",
                            "question_ex": "install_screw_true"}},
        ]
    }
    ann = parse_vendor(data, "old.json")
    assert ann.shape == "datalist"
    assert ann.size is None  # no info: the caller assumes the displayed image's size
    assert [o.parts for o in ann.objects] == [["bbu", "zte"], ["connection_point", "install_screw", "install_screw_true"]]
    assert ann.objects[1].box == [110, 130, 130, 150]


def test_datalist_level_holding_a_whole_path_is_split():
    data = {"info": {"width": 10, "height": 10},
            "dataList": [{"coordinates": [[0, 0], [5, 5]], "properties": {"label": "挡风板/未安装"}}]}
    (obj,) = parse_vendor(data, "x.json").objects
    assert obj.parts == ["挡风板", "未安装"]


def test_unknown_shape_is_an_error_naming_the_source():
    with pytest.raises(ValueError, match=r"photos/x\.json.*unknown annotation shape.*shapes"):
        parse_vendor({"shapes": []}, "photos/x.json")
    with pytest.raises(ValueError, match=r"x\.json: expected a JSON object"):
        parse_vendor([1, 2], "x.json")


def test_unusable_info_size_is_an_error_naming_the_source():
    with pytest.raises(ValueError, match=r"x\.json.*not a positive finite size"):
        parse_vendor(collection(info=(0, 480)), "x.json")
    with pytest.raises(ValueError, match=r"x\.json.*numeric width and height"):
        parse_vendor({"info": {"width": "wide", "height": 4}, "dataList": []}, "x.json")


def test_an_unreadable_object_is_a_problem_for_that_object_only():
    data = collection(
        feature([rect(0, 0, 5, 5)], zh={"标签": "挡风板/已安装"}),
        feature([rect(0, 0, 5, 5)], zh={"备注": "no label here"}),
        feature([["a", "b"]], zh={"标签": "挡风板/未安装"}),
        feature([], zh={"标签": "线缆"}),
        "not a feature",
    )
    ann = parse_vendor(data, "a.json")
    assert [o.index for o in ann.objects] == [0]
    assert [p.index for p in ann.problems] == [1, 2, 3, 4]
    assert "no label" in ann.problems[0].reason
    assert ann.problems[1].label == "挡风板/未安装"
    assert "no [x, y] points" in ann.problems[2].reason


def test_empty_collection_is_a_photo_without_objects():
    ann = parse_vendor(collection(), "a.json")
    assert ann.objects == [] and ann.problems == []


nested_points = st.recursive(
    st.lists(
        st.tuples(st.floats(-1e4, 1e4, allow_nan=False), st.floats(-1e4, 1e4, allow_nan=False)).map(list),
        min_size=1, max_size=6,
    ),
    lambda inner: st.lists(inner, min_size=1, max_size=3),
    max_leaves=4,
)


def _flatten(coords):
    if len(coords) == 2 and all(isinstance(v, float) for v in coords):
        return [coords]
    return [p for c in coords for p in _flatten(c)]


@given(nested_points)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_box_is_min_max_of_all_points_whatever_the_nesting(coords):
    data = {"dataList": [{"coordinates": coords, "properties": {"label": "线缆"}}]}
    (obj,) = parse_vendor(data, "h.json").objects
    pts = _flatten(coords)
    assert obj.box == [min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)]
