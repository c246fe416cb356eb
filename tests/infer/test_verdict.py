"""The photo verdict: pass, review or fail from the faults the hierarchy marks and two thresholds; thresholds in a
checkpoint are validated when read."""

import json

import pytest

from bbuvl.data.faults import Faults
from bbuvl.data.labels import DEFAULT_HIERARCHY
from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds, VerdictThresholds, at_review, judge

FAULTS = Faults.load()
FAULT = sorted(FAULTS.labels)[0]
KIND = FAULTS.kind_state(FAULT)[0]
OK = FAULTS.kinds[KIND].label(next(s for s in FAULTS.kinds[KIND].states if s not in FAULTS.kinds[KIND].faults))
T = VerdictThresholds(review=0.3, fail=0.6)
BOX = [1.0, 2.0, 30.0, 40.0]


@pytest.mark.parametrize("objects,verdict,score", [
    ([], "pass", 0.0),  # nothing found
    ([(BOX, OK, 0.99)], "pass", 0.0),  # a sound part, however sure
    ([(BOX, FAULT, 0.29)], "pass", 0.29),  # a fault below review
    ([(BOX, FAULT, 0.3)], "review", 0.3),  # at review
    ([(BOX, FAULT, 0.59), (BOX, OK, 0.9)], "review", 0.59),
    ([(BOX, FAULT, 0.6)], "fail", 0.6),  # at fail
    ([(BOX, FAULT, 0.4), (BOX, FAULT, 0.95)], "fail", 0.95),  # the best fault decides
])
def test_the_best_fault_score_decides_the_verdict(objects, verdict, score):
    v = judge(objects, FAULTS, T)
    assert (v.verdict, v.score) == (verdict, score)
    assert [f.score for f in v.faults] == sorted((s for _, label, s in objects if label == FAULT and s >= T.review), reverse=True)
    assert (v.reason is None) == (verdict == "pass")


@pytest.mark.parametrize("scores", [[], [0.00008], [0.00008, 0.29], [0.2999996, 0.1], [0.3, 0.00008], [0.95, 0.4, 0.001]])
def test_the_objects_at_review_are_the_verdicts_faults_and_a_fault_label_below_it_is_none(scores):
    # The server marks each object "flagged" by `at_review`; the page counts and highlights those. Counted by its label
    # alone, a photo that passed read "20 faults", fault labels down to a score of 8e-05 among them.
    objects = [(BOX, OK, 0.9)] + [(BOX, FAULT, s) for s in scores]
    v = judge(objects, FAULTS, T)
    marked = [(label, round(s, 5)) for _, label, s in objects if at_review(label, s, FAULTS, T)]
    assert sorted(marked) == sorted((f.label, f.score) for f in v.faults)
    assert (v.verdict == "pass") == (not marked)


def test_a_photo_without_a_usable_answer_goes_to_review_unless_a_fault_already_fails_it():
    assert judge([], FAULTS, T, failed=True).verdict == "review"
    assert "no usable answer" in judge([], FAULTS, T, failed=True).reason
    assert judge([(BOX, FAULT, 0.9)], FAULTS, T, failed=True).verdict == "fail"


def test_an_answer_the_token_budget_cut_goes_to_review_unless_a_fault_already_fails_it():
    """What the answer did not write may hold the fault: a cut answer never passes."""
    assert judge([], FAULTS, T, cut=True).verdict == "review"
    assert "token budget" in judge([], FAULTS, T, cut=True).reason
    assert judge([(BOX, FAULT, 0.9)], FAULTS, T, cut=True).verdict == "fail"
    assert judge([], FAULTS, T).verdict == "pass"


def test_the_verdict_serialises_its_faults_best_first():
    d = judge([(BOX, FAULT, 0.4), (BOX, FAULT, 0.951234567)], FAULTS, T).to_dict()
    assert d["verdict"] == "fail" and d["score"] == 0.95123
    assert [f["score"] for f in d["faults"]] == [0.95123, 0.4] and d["faults"][0]["label"] == FAULT
    json.dumps(d, ensure_ascii=False)


@pytest.mark.parametrize("review,fail,needle", [(0.7, 0.6, "must not exceed"), (-0.1, 0.5, "in \\[0, 1\\]"),
                                                (0.2, float("nan"), "in \\[0, 1\\]"), (True, 0.5, "in \\[0, 1\\]")])
def test_thresholds_out_of_order_or_range_are_refused(review, fail, needle):
    with pytest.raises(ValueError, match=needle):
        VerdictThresholds(review, fail)


def test_chosen_thresholds_round_trip_through_the_checkpoint(tmp_path):
    chosen = ChosenThresholds(VerdictThresholds(0.2, 0.7), 0.8, 0.9, 0.85, None, 40, 12, sorted(FAULTS.labels), "val.jsonl",
                              ["a note"])
    path = chosen.save(tmp_path)
    assert path == tmp_path / THRESHOLDS_FILE
    assert ChosenThresholds.load(tmp_path) == chosen
    assert ChosenThresholds.load(tmp_path / "elsewhere") is None


@pytest.mark.parametrize("body", ['{"tool": "bbuvl eval --choose-thresholds", "review": 0.9, "fail": 0.2}', '[1, 2]',
                                  '{"review": 0.1', '{"tool": "someone else", "review": 0.1, "fail": 0.2}'])
def test_a_damaged_thresholds_file_is_an_error_naming_it(tmp_path, body):
    (tmp_path / THRESHOLDS_FILE).write_text(body, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        ChosenThresholds.load(tmp_path)
    assert str(tmp_path / THRESHOLDS_FILE) in str(e.value)


def test_verdicts_are_counted_over_a_predictions_file(tmp_path):
    from bbuvl.infer.verdict import verdict_counts

    lines = [judge([(BOX, FAULT, 0.9)], FAULTS, T).to_dict(), judge([], FAULTS, T).to_dict(), judge([], FAULTS, T).to_dict()]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"image": f"{i}.jpg", "verdict": v}) + "\n" for i, v in enumerate(lines))
                    + '{"image": "old.jpg"}\n\n[1, 2]\n', encoding="utf-8")
    assert verdict_counts(path) == {"pass": 2, "review": 0, "fail": 1, "unjudged": 2, "tiled": 0}


def test_the_tiled_photos_thresholds_fall_back_to_the_one_pass_ones_and_keep_their_order():
    from bbuvl.config import InferenceConfig
    from bbuvl.infer.verdict import config_thresholds

    plain = InferenceConfig(verdict_review=0.2, verdict_fail=0.6)
    assert config_thresholds(plain, tiled=True) == config_thresholds(plain) == VerdictThresholds(0.2, 0.6)
    half = InferenceConfig(verdict_review=0.2, verdict_fail=0.6, verdict_fail_tiled=0.4)
    assert config_thresholds(half, tiled=True) == VerdictThresholds(0.2, 0.4)
    with pytest.raises(ValueError, match="tiled photos' verdict_review"):
        InferenceConfig(verdict_review=0.2, verdict_fail=0.6, verdict_fail_tiled=0.1)


@pytest.mark.parametrize("score, verdict", [(0.2999996, "review"), (0.5999996, "fail"), (0.2999949, "pass")])
def test_a_photo_is_judged_by_its_fault_scores_as_its_line_writes_them(score, verdict):
    """A fault scoring 0.2999996 is written 0.3: judged unrounded, its line read 0.3 beside "pass" at review 0.3, and
    `bbuvl eval`, judging the line, sent the photo to review; thresholds are chosen on such written scores."""
    from bbuvl.infer.predictor import Detection

    written = Detection(BOX, FAULT, score).to_dict()["score"]
    v = judge([(BOX, FAULT, score)], FAULTS, T)
    assert v.verdict == judge([(BOX, FAULT, written)], FAULTS, T).verdict == verdict
    assert v.to_dict()["score"] == written


def test_the_reason_gives_the_fault_score_beside_the_thresholds_in_the_same_digits():
    """Thresholds chosen on a model's low scores (review 0.003): the reason read 'scored 0.00 (review from 0.003 ...)'."""
    low = VerdictThresholds(review=0.003, fail=0.5)
    assert judge([(BOX, FAULT, 0.004)], FAULTS, low).reason == f"{FAULT} scored 0.004 (review from 0.003, fail at 0.5)"
    assert judge([(BOX, FAULT, 0.61234)], FAULTS, T).reason == f"{FAULT} scored 0.61234 (fail at 0.6)"


@pytest.mark.parametrize("label", ["螺丝连接点/BBU安装螺丝/连接错", "挡风板/没安装", "挡风版/未安装", "螺丝连接点",
                                   # a fault with a part after it: read as no fault, the photo passed
                                   "螺丝连接点/BBU安装螺丝/连接错误/松动", "挡风板 / 未安装 / 松动",
                                   "air baffle/not installed/loose"])
def test_a_box_whose_label_may_be_a_fault_the_hierarchy_cannot_read_sends_its_photo_to_review(label):
    # Before: a label an answer not held to the vocabulary wrote ('.../连接错') was no fault, and the photo passed.
    v = judge([(BOX, OK, 0.9), (BOX, label, 0.9)], FAULTS, T)
    assert v.verdict == "review" and "none the hierarchy can judge" in v.reason, v
    assert FAULTS.hierarchy.problem(label) in v.reason
    assert judge([(BOX, label, 0.9), (BOX, FAULT, 0.7)], FAULTS, T).verdict == "fail"  # a fault read fails it still


@pytest.mark.parametrize("score, verdict", [(0.0, "pass"), (0.01, "pass"), (0.29999, "pass"), (0.299996, "review"),
                                            (0.3, "review"), (0.7, "review")])
def test_a_box_whose_label_the_hierarchy_cannot_read_sends_its_photo_to_review_where_a_fault_of_its_score_would(
        score, verdict):
    # Before: at any score, down to 0.0: a head's low-scoring alternatives sent every photo to review on boxes nobody
    # would show. It may be a fault: judged as one of its score, as a line writes it, for review (never to fail).
    v = judge([(BOX, OK, 0.9), (BOX, "挡风版/未安装", score)], FAULTS, T)
    assert v.verdict == verdict, v
    assert ("none the hierarchy can judge" in (v.reason or "")) == (verdict == "review")
    if verdict == "review":
        assert FAULTS.hierarchy.problem("挡风版/未安装") in v.reason
    assert judge([(BOX, "挡风版/未安装", score), (BOX, FAULT, 0.4)], FAULTS, T).verdict == "review"


@pytest.mark.parametrize("label", ["螺丝连接点／地排处螺丝／ground_bar_screw_false", "windshield／not_installed",
                                   "connection_point ／ install_screw ／ false"])
def test_a_fault_a_platform_spells_with_full_width_separators_fails_its_photo(label):
    # The token map split a label at '/' alone: '／' left one part no token names, and the fault read as no label
    assert FAULTS.is_fault(label)
    assert judge([(BOX, label, 0.9)], FAULTS, T).verdict == "fail"


@pytest.mark.parametrize("english", ["air baffle/not installed/", "air baffle//not installed", "/air baffle/not installed",
                                     "screw or connection point/BBU mounting screw/wrong/"])
def test_a_fault_in_english_with_an_empty_part_fails_its_photo_as_the_same_fault_in_chinese_does(english):
    # The token map drops empty parts of a label in the hierarchy's language, so '挡风板/未安装/' failed its photo;
    # its English gloss so written was read as no label, and sent the photo to review
    chinese = FAULTS.hierarchy.from_english("/".join(p for p in english.split("/") if p))
    assert FAULTS.is_fault(english) and FAULTS.canonical(english) == chinese
    assert judge([(BOX, english, 0.9)], FAULTS, T).verdict == "fail" == judge([(BOX, chinese + "/", 0.9)], FAULTS, T).verdict

@pytest.mark.parametrize("label", ["bbu基带处理单元/华", "标签贴纸", "screw or connection point/BBU mounting screw/correct",
                                   "bbu基带处理单元/华为/连接错误",
                                   # a category without faults alone: read as no category, its photo went to review
                                   "机柜空间", "bbu基带处理单元", "BBU base-band unit", "线缆/x"])
def test_a_label_that_is_read_or_can_be_no_fault_leaves_the_photo_to_its_faults(label):
    # A vendor no fault is kept under, a known label, an English gloss: none can hide a fault.
    assert judge([(BOX, label, 0.9)], FAULTS, T).verdict == "pass"


def test_a_hierarchy_marking_no_fault_sends_no_photo_to_review_for_a_label_it_cannot_read(tmp_path):
    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    for spec in raw["categories"].values():
        for attr in spec.get("attributes", {}).values():
            attr.pop("fault", None)
            attr["states"] = {s: g["gloss"] if isinstance(g, dict) else g for s, g in attr.get("states", {}).items()}
    (tmp_path / "h.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert judge([(BOX, "挡风版/未安装", 0.9)], Faults.load(tmp_path / "h.json"), T).verdict == "pass"
