"""`bbuvl eval` scores a label under the ground truth's spelling at every `--level`: a prediction of the right category
counts right however its label is spelt, when the hierarchy reads that spelling as that category."""

from __future__ import annotations

import json

import pytest

from bbuvl.data.faults import Faults
from bbuvl.data.schema import read_records
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.spelling import truth_spelling

RIGHT = "螺丝连接点/BBU安装螺丝/连接正确"
WRONG = "螺丝连接点/BBU安装螺丝/连接错误"
BOXES = ([10, 10, 110, 110], [200, 10, 300, 110])


def _evaluate(tmp_path, truth: list[str], predicted: list[str], level: int | None) -> dict:
    """METRICS of one photo whose boxes hold `truth` and are predicted, box on box, as `predicted`."""
    gt = {"images": ["p.png"], "width": 448, "height": 336,
          "objects": [{"bbox_2d": b, "desc": d} for b, d in zip(BOXES, truth)]}
    pred = {"image": "p.png", "width": 448, "height": 336, "raw": None, "error": None,
            "objects": [{"bbox_2d": b, "label": d, "score": 0.9 - i / 10} for i, (b, d) in enumerate(zip(BOXES, predicted))]}
    for name, row in (("gt.jsonl", gt), ("pred.jsonl", pred)):
        (tmp_path / name).write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    return evaluate_predictions(read_records(tmp_path / "gt.jsonl"), tmp_path / "gt.jsonl",
                                read_predictions(tmp_path / "pred.jsonl"), tmp_path / "pred.jsonl", level=level).metrics


@pytest.mark.parametrize("level", [1, 2])
def test_chinese_predictions_of_an_english_truths_category_are_right_at_its_level(tmp_path, level):
    # Before: the prediction whose full label the truth lacks stayed Chinese, and was cut as a category of its own
    # ('螺丝连接点' beside 'screw or connection point'): AP50 0.50, level-1 and level-2 accuracy 0.5.
    english = "screw or connection point/BBU mounting screw/correct"
    m = _evaluate(tmp_path, [english, english], [RIGHT, WRONG], level)
    assert list(m["per_category"]) == ["/".join(english.split("/")[:level])]
    assert m["AP50"] == pytest.approx(1.0)
    assert m["label_accuracy"]["level_1"] == m["label_accuracy"]["level_2"] == 1.0
    assert m["label_accuracy"]["full"] == 0.5


def test_the_wrong_state_of_an_english_truth_is_named_in_english(tmp_path):
    m = _evaluate(tmp_path, ["screw or connection point/BBU mounting screw/correct"] * 2, [RIGHT, WRONG], None)
    assert set(m["per_category"]) == {"screw or connection point/BBU mounting screw/correct",
                                      "screw or connection point/BBU mounting screw/wrong"}


def test_a_spelling_the_hierarchy_reads_as_a_category_is_that_category(tmp_path):
    # Before: a space before '/' and full-width letters, which `label_key` reads as the same label, were cut raw at
    # level 1 as the categories '螺丝连接点 ' and 'ｂｂｕ基带处理单元': AP50 0.0, no note.
    m = _evaluate(tmp_path, [RIGHT, "bbu基带处理单元/华为"], ["螺丝连接点 /BBU安装螺丝/连接错误", "ｂｂｕ基带处理单元/中兴"], 1)
    assert set(m["per_category"]) == {"螺丝连接点", "bbu基带处理单元"}
    assert m["AP50"] == pytest.approx(1.0) and m["label_accuracy"]["level_1"] == 1.0


def test_a_truth_typed_with_spaces_around_its_parts_is_one_category(tmp_path):
    # Before: '螺丝连接点 / BBU安装螺丝 / 连接正确' was of category '螺丝连接点 ', the other box's '螺丝连接点'.
    m = _evaluate(tmp_path, ["螺丝连接点 / BBU安装螺丝 / 连接正确", "螺丝连接点/CPRI光缆和BBU连接点/连接正确"],
                  [WRONG, "螺丝连接点/CPRI光缆和BBU连接点/连接正确"], 1)
    assert list(m["per_category"]) == ["螺丝连接点"]
    assert m["AP50"] == pytest.approx(1.0) and m["label_accuracy"]["level_2"] == 1.0


def test_a_state_the_hierarchy_lacks_is_still_of_its_category_and_attribute(tmp_path):
    m = _evaluate(tmp_path, ["screw or connection point/BBU mounting screw/correct"] * 2, [RIGHT, WRONG[:-1]], 2)
    assert list(m["per_category"]) == ["screw or connection point/BBU mounting screw"]
    assert m["label_accuracy"]["level_2"] == 1.0


@pytest.mark.parametrize("truth,mixed", [(RIGHT, "air baffle/未安装"),
                                         ("screw or connection point/BBU mounting screw/correct", "螺丝连接点/BBU安装螺丝/wrong"),
                                         (RIGHT, "screw or connection point/BBU mounting screw/连接错误"),
                                         (RIGHT, "screw or connection point/pigtail to ODF/连接正确/wrong")])
def test_a_label_in_two_languages_is_judged_as_predict_judges_it(tmp_path, truth, mixed):
    # Spelt in the truth's language it became a fault label, and eval failed the photo `bbuvl predict` sends to review
    # as holding a label the hierarchy cannot judge.
    from bbuvl.infer.verdict import VerdictThresholds, judge

    assert judge([(BOXES[1], mixed, 0.8)], Faults.load(), VerdictThresholds(0.25, 0.5)).verdict == "review"
    m = _evaluate(tmp_path, [truth, truth], [truth, mixed], None)
    assert {v: sum(c.values()) for v, c in m["faults"]["photos"]["verdicts"].items()} == {"pass": 0, "review": 1, "fail": 0}
    assert m["faults"]["objects"]["predicted"] == 0


@pytest.mark.parametrize("truth", [RIGHT, "screw or connection point/BBU mounting screw/correct",
                                   "connection_point/install_screw/install_screw_true", "螺丝连接点 ／ ＢＢＵ安装螺丝／连接正确"])
def test_eval_judges_each_photo_as_predict_judges_its_line_however_its_label_is_spelt(tmp_path, truth):
    """Labels put together from the hierarchy's names, English glosses, platform tokens and misspellings, a part
    more or less, any separator: each photo's verdict in eval is the one `bbuvl predict` gives its line."""
    import random

    from bbuvl.data.labels import DEFAULT_TOKEN_MAP
    from bbuvl.infer.verdict import VerdictThresholds, judge

    faults, thresholds = Faults.load(), VerdictThresholds(0.25, 0.5)
    h, rng = faults.hierarchy, random.Random(truth)
    tokens = list(json.loads(DEFAULT_TOKEN_MAP.read_text(encoding="utf-8"))["tokens"])

    def label() -> str:
        path = rng.choice(h.paths())
        parts = [rng.choice([n, e, n, e, rng.choice(tokens)]) for n, e in zip(path.split("/"), h.english(path).split("/"))]
        if (r := rng.random()) < 0.2:
            parts.append(rng.choice(["x", "wrong", "未安装", "correct", "连接错误"]))
        elif r < 0.35:
            parts[-1] = parts[-1][:-1] or parts[-1]
        return rng.choice(["/", " / ", "／"]).join(parts)

    labels = [label() for _ in range(150)]
    gt = "".join(json.dumps({"images": [f"p{i}.png"], "width": 448, "height": 336,
                             "objects": [{"bbox_2d": BOXES[0], "desc": truth}]}, ensure_ascii=False) + "\n"
                 for i in range(len(labels)))
    pred = "".join(json.dumps({"image": f"p{i}.png", "width": 448, "height": 336, "raw": None, "error": None,
                               "objects": [{"bbox_2d": BOXES[1], "label": text, "score": 0.8}]}, ensure_ascii=False) + "\n"
                   for i, text in enumerate(labels))
    (tmp_path / "gt.jsonl").write_text(gt, encoding="utf-8")
    (tmp_path / "pred.jsonl").write_text(pred, encoding="utf-8")
    e = evaluate_predictions(read_records(tmp_path / "gt.jsonl"), tmp_path / "gt.jsonl",
                             read_predictions(tmp_path / "pred.jsonl"), tmp_path / "pred.jsonl", faults=faults,
                             thresholds=thresholds)
    judged = {r.record.image: v for r, v in zip(e.images, e.faults.photo_verdicts)}
    differ = [(text, judge([(BOXES[1], text, 0.8)], faults, thresholds).verdict, judged[f"p{i}.png"])
              for i, text in enumerate(labels) if judge([(BOXES[1], text, 0.8)], faults, thresholds).verdict
              != judged[f"p{i}.png"]]
    assert not differ, differ[:5]


def test_a_path_short_of_a_label_is_spelt_whole_in_the_truths_language():
    # Before: its last part was kept as typed ('screw or connection point/BBU安装螺丝'), another category at level 2
    spell = truth_spelling(["screw or connection point/BBU mounting screw/correct", "cabinet space/full"], [], Faults.load())
    assert spell("螺丝连接点/BBU安装螺丝") == "screw or connection point/BBU mounting screw"
    assert spell("机柜空间") == "cabinet space"


def test_a_truth_mixing_spellings_is_respelt_into_labels_the_hierarchy_still_reads():
    faults = Faults.load()
    truth = ["screw or connection point/BBU mounting screw/correct", "air baffle/installed", "cable", "label sticker",
             "螺丝连接点／ＢＢＵ安装螺丝／连接错误", "connection_point/cpri_bbu/cpri_bbu_true", "挡风板 / 未安装"]
    others = [RIGHT, "挡风板/已安装", "ｂｂｕ基带处理单元/华为", "螺丝连接点/BBU安装螺丝/连接错", "不知道/什么",
              "air baffle/未安装", "挡风板/not installed"]
    spell = truth_spelling(truth, others, faults)
    for label in truth + others:
        assert faults.canonical(spell(label)) == faults.canonical(label), label  # the fault metrics read it alike
    # In English, as most of the truth is, each level spelt as the truth first spells it
    assert spell(WRONG) == "screw or connection point/BBU mounting screw/wrong"
    assert spell("ｂｂｕ基带处理单元/华为") == "BBU base-band unit/Huawei"
    assert spell("螺丝连接点/BBU安装螺丝/连接错") == "screw or connection point/BBU mounting screw/连接错"
    assert spell("不知道 /什么") == "不知道/什么" and spell("不知道/什么") == "不知道/什么"


def test_the_truths_spelling_is_the_same_whatever_order_its_lines_come_in(tmp_path):
    # The ground truth's first spelling was the one its first line held: reversing the file renamed per_category.
    wide = "螺丝连接点/ＢＢＵ安装螺丝/连接正确"
    named = [set(_evaluate(tmp_path, truth, [WRONG, RIGHT], None)["per_category"]) for truth in ([wide, RIGHT],
                                                                                                 [RIGHT, wide])]
    assert named[0] == named[1] == {RIGHT, WRONG}
