"""The answer parser: every documented damage is recovered, and no damage at all makes it raise."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from bbuvl.infer.parse import (
    DAMAGE_BAD_OBJECT,
    DAMAGE_BOX_AS_STRING,
    DAMAGE_BOX_NOT_NUMERIC,
    DAMAGE_BOX_REORDERED,
    DAMAGE_BOX_WRONG_LENGTH,
    DAMAGE_CODE_FENCE,
    DAMAGE_DUPLICATE,
    DAMAGE_LABEL_KEY,
    DAMAGE_NO_LABEL,
    DAMAGE_SINGLE_QUOTES,
    DAMAGE_STRAY_TEXT,
    DAMAGE_TRAILING_COMMA,
    DAMAGE_TRUNCATED,
    DAMAGE_UNQUOTED_KEYS,
    parse_detections,
)

A = {"bbox_2d": [10, 20, 110, 220], "label": "螺丝连接点/BBU安装螺丝/连接正确"}
B = {"bbox_2d": [5, 300, 60, 420], "label": "标签贴纸"}


def boxes_and_labels(result) -> list[tuple[list[float], str]]:
    return [(o["bbox_2d"], o["label"]) for o in result.objects]


def answer(*objects) -> str:
    return json.dumps(list(objects), ensure_ascii=False)


def test_clean_answer_parses_without_damage_and_spans_cover_each_object():
    text = answer(A, B)
    r = parse_detections(text)
    assert r.ok and r.damage == []
    assert boxes_and_labels(r) == [([10.0, 20.0, 110.0, 220.0], A["label"]), ([5.0, 300.0, 60.0, 420.0], "标签贴纸")]
    for o, src in zip(r.objects, (A, B)):
        start, end = o["span"]
        assert json.loads(text[start:end]) == src


def test_labels_holding_braces_quotes_and_backslashes_come_back_as_written():
    # A hierarchy may name a part `天线 {v2}`: the object holding it was dropped, and `q"}r` came back as `q\\`
    labels = ["📡 antenna {v2}/שלום עולם", "a}b", "x{y", 'q"}r', "back\\slash}", 'Dev"ice\\x/<img src=x>/ok & "fine"']
    for label in labels:
        objects = [{"bbox_2d": [1, 2, 30, 40], "label": label}, B]
        text = answer(*objects)
        r = parse_detections(text)
        assert boxes_and_labels(r) == [([1.0, 2.0, 30.0, 40.0], label), (B["bbox_2d"], B["label"])], label
        assert r.ok and r.damage == [], (label, r.damage)
        assert [json.loads(text[s:e]) for s, e in (o["span"] for o in r.objects)] == objects
    cut = answer({"bbox_2d": [1, 2, 30, 40], "label": "a}b"}, B)[:-30]  # the second object cut short
    r = parse_detections(cut)
    assert boxes_and_labels(r) == [([1.0, 2.0, 30.0, 40.0], "a}b")] and DAMAGE_TRUNCATED in r.damage


def test_explicit_empty_list_is_ok_with_no_objects():
    for text in ("[]", "```json\n[]\n```", "[ ]", '{"objects": []}'):
        r = parse_detections(text)
        assert r.ok and r.objects == [], text


def test_answer_without_any_json_is_not_ok():
    for text in ("", "I cannot see any equipment.", "[{", "{not json at all}"):
        r = parse_detections(text)
        assert not r.ok and r.objects == [], text


def test_an_empty_list_then_an_object_cut_off_is_not_a_usable_answer():
    # The cut object may have been a fault: the empty list before it does not make the answer "nothing here"
    r = parse_detections('[]\n[{"bbox_2d": [10, 20, 30, 40], "label": "螺丝连接点/BBU安装螺丝/连接错')
    assert not r.ok and r.objects == [] and DAMAGE_TRUNCATED in r.damage


def test_code_fence_is_ignored_and_recorded():
    r = parse_detections("```json\n" + answer(A) + "\n```")
    assert boxes_and_labels(r) == [(A["bbox_2d"], A["label"])]
    assert r.damage == [DAMAGE_CODE_FENCE]


def test_stray_text_before_and_after_is_ignored_and_recorded():
    r = parse_detections("Here are the objects I found: " + answer(A, B) + "\nLet me know if you need more.")
    assert len(r.objects) == 2 and r.ok
    assert r.damage == [DAMAGE_STRAY_TEXT]


def test_truncated_answer_keeps_every_complete_object():
    text = answer(A, B)
    cut = text[: text.index("标签贴纸") + 2]
    r = parse_detections(cut)
    assert boxes_and_labels(r) == [(A["bbox_2d"], A["label"])]
    assert r.ok and DAMAGE_TRUNCATED in r.damage
    assert DAMAGE_STRAY_TEXT not in r.damage


def test_array_missing_its_closing_bracket_is_truncated_but_complete():
    r = parse_detections(answer(A, B)[:-1])
    assert len(r.objects) == 2 and r.damage == [DAMAGE_TRUNCATED]


def test_single_quotes_are_read_as_json():
    text = "[{'bbox_2d': [10, 20, 110, 220], 'label': '标签贴纸'}]"
    r = parse_detections(text)
    assert boxes_and_labels(r) == [([10.0, 20.0, 110.0, 220.0], "标签贴纸")]
    assert r.damage == [DAMAGE_SINGLE_QUOTES]


def test_trailing_commas_and_unquoted_keys_are_repaired():
    r = parse_detections('[{bbox_2d: [1, 2, 3, 4,], label: "挡风板/已安装",},]')
    assert boxes_and_labels(r) == [([1.0, 2.0, 3.0, 4.0], "挡风板/已安装")]
    assert DAMAGE_TRAILING_COMMA in r.damage and DAMAGE_UNQUOTED_KEYS in r.damage


def test_three_number_box_drops_the_object_and_keeps_the_rest():
    r = parse_detections('[{"bbox_2d": [10, 20, 110], "label": "标签贴纸"}, ' + json.dumps(A, ensure_ascii=False) + "]")
    assert boxes_and_labels(r) == [(A["bbox_2d"], A["label"])]
    assert r.damage == [DAMAGE_BOX_WRONG_LENGTH] and r.ok


def test_only_broken_boxes_means_not_ok():
    r = parse_detections('[{"bbox_2d": [10, 20, 110], "label": "标签贴纸"}]')
    assert not r.ok and r.objects == [] and r.damage == [DAMAGE_BOX_WRONG_LENGTH]


def test_reversed_corners_are_reordered():
    r = parse_detections('[{"bbox_2d": [110, 220, 10, 20], "label": "线缆"}]')
    assert boxes_and_labels(r) == [([10.0, 20.0, 110.0, 220.0], "线缆")]
    assert r.damage == [DAMAGE_BOX_REORDERED]


def test_boxes_given_as_strings_are_read():
    r = parse_detections('[{"bbox_2d": "[1, 2.5, 3, 4]", "label": "线缆"}, {"bbox_2d": ["5", "6", "7", "8"], "label": "线缆"}]')
    assert boxes_and_labels(r) == [([1.0, 2.5, 3.0, 4.0], "线缆"), ([5.0, 6.0, 7.0, 8.0], "线缆")]
    assert r.damage == [DAMAGE_BOX_AS_STRING, DAMAGE_BOX_AS_STRING]


def test_a_minus_sign_in_a_box_written_as_text_is_kept():
    # A box a little past the photo's left or top edge is written negative; read as positive it lands elsewhere
    r = parse_detections('[{"bbox_2d": "[-5, 20, 110, 220]", "label": "线缆"}, '
                         '{"bbox_2d": ["-3.5", "6", "7", "8"], "label": "线缆"}, '
                         '{"bbox_2d": [-2, -1e1, 30, 40], "label": "线缆" "x"}]')  # the last beyond repair: by pattern
    assert boxes_and_labels(r) == [([-5.0, 20.0, 110.0, 220.0], "线缆"), ([-3.5, 6.0, 7.0, 8.0], "线缆"),
                                   ([-2.0, -10.0, 30.0, 40.0], "线缆")]


def test_exact_duplicates_are_dropped_and_counted():
    r = parse_detections(answer(A, B, A, A))
    assert boxes_and_labels(r) == [(A["bbox_2d"], A["label"]), (B["bbox_2d"], B["label"])]
    assert r.damage.count(DAMAGE_DUPLICATE) == 2


def test_same_box_with_another_label_is_not_a_duplicate():
    r = parse_detections(answer(A, {**A, "label": "标签贴纸"}))
    assert len(r.objects) == 2 and r.damage == []


def test_desc_and_description_keys_are_read_as_label():
    r = parse_detections('[{"bbox_2d": [1, 2, 3, 4], "desc": "线缆"}, {"bbox_2d": [5, 6, 7, 8], "description": "标签贴纸"}]')
    assert [o["label"] for o in r.objects] == ["线缆", "标签贴纸"]
    assert r.damage == [DAMAGE_LABEL_KEY, DAMAGE_LABEL_KEY]


def test_objects_without_label_or_numeric_box_are_dropped():
    r = parse_detections('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [1, "a", 3, 4], "label": "x"}, '
                         '{"bbox_2d": [true, 2, 3, 4], "label": "x"}, {"label": "x"}, {"bbox_2d": [NaN, 1, 2, 3], "label": "x"}]')
    assert r.objects == [] and not r.ok
    assert r.damage.count(DAMAGE_NO_LABEL) == 1 and r.damage.count(DAMAGE_BOX_NOT_NUMERIC) == 4


def test_object_beyond_repair_is_dropped_but_its_fields_are_rescued_when_visible():
    rescued = parse_detections('[{"bbox_2d": [1, 2, 3, 4], "label": "a" "b"}]')
    assert boxes_and_labels(rescued) == [([1.0, 2.0, 3.0, 4.0], "a")]
    lost = parse_detections('[{"x" ; ;}]')
    assert lost.objects == [] and lost.damage == [DAMAGE_BAD_OBJECT]


def test_wrapper_object_around_the_list_is_looked_through():
    r = parse_detections('{"objects": ' + answer(A) + "}")
    assert boxes_and_labels(r) == [(A["bbox_2d"], A["label"])]


# --- property tests ------------------------------------------------------------------------------

LABELS = st.sampled_from(["螺丝连接点/BBU安装螺丝/连接正确", "标签贴纸", "bbu基带处理单元/华为", "挡风板/未安装", "custom part"])
COORD = st.integers(min_value=0, max_value=2000)


@st.composite
def valid_objects(draw) -> list[dict]:
    n = draw(st.integers(min_value=0, max_value=6))
    out = []
    for _ in range(n):
        x1, x2 = sorted(draw(st.tuples(COORD, COORD)))
        y1, y2 = sorted(draw(st.tuples(COORD, COORD)))
        out.append({"bbox_2d": [x1, y1, x2, y2], "label": draw(LABELS)})
    return out


def unique(objects: list[dict]) -> list[tuple[list[float], str]]:
    seen, out = set(), []
    for o in objects:
        key = (tuple(o["bbox_2d"]), o["label"])
        if key not in seen:
            seen.add(key)
            out.append(([float(v) for v in o["bbox_2d"]], o["label"]))
    return out


def assert_well_formed(result, text: str) -> None:
    assert isinstance(result.ok, bool)
    assert all(isinstance(d, str) for d in result.damage)
    for o in result.objects:
        x1, y1, x2, y2 = o["bbox_2d"]
        assert x1 <= x2 and y1 <= y2
        assert isinstance(o["label"], str) and o["label"]
        start, end = o["span"]
        assert 0 <= start < end <= len(text)


@settings(max_examples=300, deadline=None)
@given(valid_objects(), st.data())
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_random_damage_never_raises_and_output_is_well_formed(objects, data):
    text = answer(*objects)
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        kind = data.draw(st.sampled_from(["cut", "insert", "delete", "quotes", "fence", "prose", "swap"]))
        i = data.draw(st.integers(min_value=0, max_value=len(text)))
        if kind == "cut":
            text = text[:i]
        elif kind == "insert":
            text = text[:i] + data.draw(st.text(alphabet='{}[]",:\' 0123456789.-abc标签\n`', max_size=4)) + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + data.draw(st.integers(min_value=1, max_value=3)):]
        elif kind == "quotes":
            text = text.replace('"', "'")
        elif kind == "fence":
            text = "```json\n" + text + "\n```"
        elif kind == "prose":
            text = data.draw(st.text(max_size=20)) + text + data.draw(st.text(max_size=20))
        else:
            text = text[i:] + text[:i]
    assert_well_formed(parse_detections(text), text)


@settings(max_examples=200, deadline=None)
@given(valid_objects(), st.integers(min_value=0, max_value=10_000))
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_truncation_keeps_exactly_the_objects_closed_before_the_cut(objects, cut):
    text = answer(*objects)
    cut = min(cut, len(text))
    r = parse_detections(text[:cut])
    closed = [o for o, end in zip(objects, _object_ends(text)) if end <= cut]
    assert boxes_and_labels(r) == unique(closed)
    assert_well_formed(r, text[:cut])


def _object_ends(text: str) -> list[int]:
    return [i + 1 for i, ch in enumerate(text) if ch == "}"]


@settings(max_examples=200, deadline=None)
@given(valid_objects(), st.booleans(), st.booleans(), st.text(alphabet="abc :.!\n发现", max_size=30), st.text(alphabet="abc :.!\n", max_size=30))
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_fences_quotes_and_prose_lose_nothing(objects, fence, single_quotes, before, after):
    text = answer(*objects)
    if single_quotes:
        text = text.replace('"', "'")
    if fence:
        text = "```json\n" + text + "\n```"
    r = parse_detections(before + text + after)
    assert boxes_and_labels(r) == unique(objects)
    assert r.ok
