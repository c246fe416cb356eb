"""GRPO's rewards (rl/rewards.py) on answers whose value is known by hand."""

import sys

import pytest

from bbuvl.config import RewardWeights
from bbuvl.data.labels import Hierarchy
from bbuvl.rl.rewards import (LabelledBox, RewardScorer, detection_reward, format_reward, label_credit, label_reward,
                              load_user_reward, match_boxes)

RED, GREEN = "bbu基带处理单元/华为", "螺丝连接点/BBU安装螺丝/连接正确"
GREEN_WRONG_STATE = "螺丝连接点/BBU安装螺丝/连接错误"


def box(x1, y1, x2, y2, label=RED):
    return LabelledBox((x1, y1, x2, y2), label)


def detection(truth, answer):
    return detection_reward(match_boxes(truth, answer))


def test_a_perfect_answer_earns_one_and_an_empty_photo_answered_empty_too():
    truth = [box(0, 0, 10, 10), box(20, 20, 40, 40)]
    assert detection(truth, list(reversed(truth))) == pytest.approx(1.0)
    assert detection([], []) == 1.0


def test_a_near_miss_earns_its_iou_where_a_far_miss_earns_nothing():
    truth = [box(0, 0, 10, 10)]
    assert detection(truth, [box(1, 0, 11, 10)]) == pytest.approx(90 / 110)  # 1 px off: 0.818
    assert detection(truth, [box(50, 50, 60, 60)]) == 0.0


def test_a_dense_photo_padded_with_extra_boxes_earns_less_than_the_exact_answer():
    truth = [box(20 * i, 0, 20 * i + 10, 10) for i in range(10)]
    exact = detection(truth, truth)
    padded = detection(truth, truth + [box(20 * i, 50, 20 * i + 10, 60) for i in range(5)])
    assert exact == pytest.approx(1.0) and padded == pytest.approx(10 / 15)


def test_a_dense_photo_cut_short_earns_its_share_of_the_objects():
    truth = [box(20 * i, 0, 20 * i + 10, 10) for i in range(10)]
    assert detection(truth, truth[:4]) == pytest.approx(0.4)


def test_a_duplicate_box_is_an_extra_object_not_a_second_hit():
    truth = [box(0, 0, 10, 10)]
    assert detection(truth, [box(0, 0, 10, 10), box(0, 0, 10, 10)]) == pytest.approx(0.5)


def test_matching_is_one_to_one_and_maximises_the_summed_iou():
    truth = [box(0, 0, 10, 10), box(5, 0, 15, 10)]
    answer = [box(4, 0, 14, 10), box(0, 0, 10, 10)]
    m = match_boxes(truth, answer)
    assert sorted(m.pairs) == [(0, 1), (1, 0)]
    assert detection(truth, answer) == pytest.approx((1.0 + 90 / 110) / 2)


def test_label_credit_counts_the_hierarchy_levels_named_right_from_the_top():
    h = Hierarchy.load()
    assert label_credit(GREEN, GREEN, h) == 1.0
    assert label_credit(GREEN, GREEN_WRONG_STATE, h) == pytest.approx(2 / 3)  # category and attribute right
    assert label_credit(GREEN, RED, h) == 0.0
    assert label_credit("标签贴纸", "标签贴纸", h) == 1.0


def test_label_reward_is_the_credit_of_matched_pairs_over_the_larger_count():
    h = Hierarchy.load()
    truth = [box(0, 0, 10, 10, GREEN), box(20, 0, 30, 10, RED)]
    answer = [box(0, 0, 10, 10, GREEN_WRONG_STATE), box(20, 0, 30, 10, RED), box(50, 50, 60, 60, RED)]
    assert label_reward(truth, answer, match_boxes(truth, answer), h) == pytest.approx((2 / 3 + 1) / 3)


def test_format_pays_for_parsing_and_for_known_labels():
    vocab = [RED, GREEN]
    assert format_reward(False, [], vocab) == 0.0
    assert format_reward(True, [box(0, 0, 1, 1, "狗")], vocab) == 0.5
    assert format_reward(True, [box(0, 0, 1, 1, RED)], vocab) == 1.0


def count_answers(truth, answer):
    """A user reward: 1 when the answer has as many objects as the truth."""
    return float(len(truth) == len(answer))


def test_a_user_function_named_by_import_path_gets_the_truth_and_the_parsed_answer():
    fn = load_user_reward(f"{__name__}:count_answers")
    assert fn([box(0, 0, 1, 1)], [box(5, 5, 6, 6)]) == 1.0
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, label=0.0, user=2.0,
                                                    user_function=f"{__name__}.count_answers"), Hierarchy.load(), [RED])
    scored = scorer.score([box(0, 0, 10, 10)], [box(0, 0, 10, 10)], True)
    assert scored == {"reward": pytest.approx(3.0), "detection": pytest.approx(1.0), "user": 1.0}


@pytest.mark.parametrize("path, message", [("nosuchmodule_xyz:f", "cannot import module 'nosuchmodule_xyz'"),
                                           ("json:no_such_fn", "has no function 'no_such_fn'"),
                                           ("justaname", "is not module:function")])
def test_a_bad_user_function_path_is_a_clear_error(path, message):
    with pytest.raises(ValueError, match=message):
        load_user_reward(path)


def test_the_weighted_total_is_the_sum_of_weighted_terms():
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, label=0.5), Hierarchy.load(), [RED, GREEN])
    truth = [box(0, 0, 10, 10, GREEN)]
    scored = scorer.score(truth, [box(1, 0, 11, 10, GREEN_WRONG_STATE)], True)
    assert scored["detection"] == pytest.approx(90 / 110) and scored["label"] == pytest.approx(2 / 3)
    assert scored["reward"] == pytest.approx(90 / 110 + 0.5 * 2 / 3)


@pytest.mark.parametrize("source, path, message", [
    ("def f(:\n    pass\n", "broken_reward_zz:f", r"broken_reward_zz.py:1: SyntaxError"),
    ("import missing_dependency_zz\n", "broken_reward_zz:f", r"broken_reward_zz.py:1: ModuleNotFoundError: No module "
                                                             "named 'missing_dependency_zz'"),
    ("def f(truth):\n    return 1.0\n", "broken_reward_zz:f", r"cannot be called as fn\(truth, answer\)"),
    ("def f(truth, answer):\n    return 1.0\n", "broken_reward_zz.py:f", r"names a file; give its module: broken_reward_zz:f"),
])
def test_a_user_reward_module_that_cannot_be_used_is_refused_naming_its_file_and_line(tmp_path, monkeypatch, source,
                                                                                      path, message):
    (tmp_path / "broken_reward_zz.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_reward_zz", raising=False)
    with pytest.raises(ValueError, match=message):
        load_user_reward(path)


def test_a_user_reward_module_off_the_import_path_is_refused_saying_where_python_looks():
    with pytest.raises(ValueError, match=r"on PYTHONPATH\? the current folder is not searched"):
        load_user_reward("nosuchmodule_xyz:f")


@pytest.mark.parametrize("body, message", [("raise RuntimeError('boom')", r"raised .*rewards_zz.py:2: RuntimeError: boom"),
                                           ("return float('nan')", r"returned nan: a reward must be a finite number")])
def test_a_user_reward_that_raises_or_is_not_finite_is_an_error_naming_it(tmp_path, monkeypatch, body, message):
    (tmp_path / "rewards_zz.py").write_text(f"def f(truth, answer):\n    {body}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rewards_zz", raising=False)
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, user=1.0, user_function="rewards_zz:f"),
                                      Hierarchy.load(), [RED])
    with pytest.raises(ValueError, match=message):
        scorer.score([box(0, 0, 10, 10)], [box(0, 0, 10, 10)], True)


@pytest.mark.parametrize("path, message", [("os:path", "'path' of module 'os' is a module, not a function"),
                                           ("math:pi", "'pi' of module 'math' is a float, not a function")])
def test_a_user_function_path_naming_no_function_says_what_it_names(path, message):
    with pytest.raises(ValueError, match=message):
        load_user_reward(path)


@pytest.mark.parametrize("name, message", [
    ("per_box", r"per_box returned \[1.0\] \(list\), not a number: it is called once per answer"),
    ("not_finite", r"not_finite returned nan: a reward must be a finite number"),
    ("mean_size", r"mean_size raised .*reward_fns.py:\d+: ZeroDivisionError"),
    ("per_box_tensor", r"per_box_tensor returned tensor\(\[1\.\]\) \(Tensor\), not a number"),
])
def test_a_user_reward_is_tried_on_an_exact_and_an_empty_answer_before_a_run(name, message):
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, user=1.0, user_function=f"tests.rl.reward_fns:{name}"),
                                      Hierarchy.load(), [RED])
    with pytest.raises(ValueError, match=message):
        scorer.check_user([box(0, 0, 10, 10)])
    fine = RewardScorer.from_config(RewardWeights(detection=1.0, user=1.0, user_function="tests.rl.reward_fns:answer_size"),
                                    Hierarchy.load(), [RED])
    fine.check_user([box(0, 0, 10, 10)])


def test_an_unreadable_answer_to_a_photo_with_no_parts_earns_nothing_where_an_empty_list_earns_everything():
    """An answer cut by the budget or not JSON holds no object, as `[]` does: scored like it, every rollout of a photo
    with no parts earned the full reward whatever it wrote."""
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, label=0.5), Hierarchy.load(None), [RED])
    assert scorer.score([], [], parsed=True) == {"reward": 1.5, "detection": 1.0, "label": 1.0}
    assert scorer.score([], [], parsed=False) == {"reward": 0.0, "detection": 0.0, "label": 0.0}
    truth = [box(0, 0, 10, 10)]  # what an unreadable answer salvaged still counts where there are parts
    assert scorer.score(truth, [box(0, 0, 10, 10)], parsed=False)["detection"] == pytest.approx(1.0)
