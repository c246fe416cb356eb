"""Known answers for every fault metric: objects (recall, precision, AP, curve), photos (verdict scores, ROC AUC),
state given kind, the "always pass" / "always fail" baselines, and threshold choice."""

import numpy as np
import pytest

from bbuvl.data.boxes import box_iou
from bbuvl.data.faults import Faults
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval import faults as faults_module
from bbuvl.eval import match_many
from bbuvl.eval.faults import _Judged, _LabelIds, _match, binary_scores, choose_thresholds, fault_metrics, roc_auc
from bbuvl.infer.verdict import FramedThresholds, VerdictThresholds, judge, verdict_of

FAULTS = Faults.load()
KINDS = list(FAULTS.kinds.values())
A, B = KINDS[0], KINDS[1]  # two judged kinds, each with one fault state and one sound state
A_BAD, A_OK = A.label(A.faults[0]), A.label(next(s for s in A.states if s not in A.faults))
B_BAD, B_OK = B.label(B.faults[0]), B.label(next(s for s in B.states if s not in B.faults))
T = VerdictThresholds(review=0.3, fail=0.6)
BOX1, BOX2, BOX3 = [0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 120, 20]
NEAR1 = [0, 0, 10, 12]  # IoU 10/12 with BOX1
OFF1 = [5, 0, 15, 10]  # IoU 50/150 with BOX1: below 0.5


def photo(*objects):
    return ImageRecord(images=["p.jpg"], width=200, height=200, objects=[ObjectAnn(bbox_2d=b, desc=d) for b, d in objects])


def pred(box, label, score):
    return {"bbox_2d": box, "label": label, "score": score}


def test_a_photo_with_no_fault_and_no_prediction_passes_and_has_nothing_to_find():
    m = fault_metrics([photo((BOX1, A_OK))], [[]], FAULTS, T)
    o = m.objects
    assert (o.gt, o.predicted) == (0, 0)
    assert (o.at_fail.recall, o.at_fail.precision, o.at_fail.AP) == (None, None, None)
    assert o.always_fail.precision == 0.0 and o.always_fail.recall is None
    assert m.photo_verdicts == ["pass"] and m.photos.faulty == 0
    assert m.photos.model.failed.accuracy == 1.0 and m.photos.model.failed.recall is None
    assert m.photos.model.roc_auc is None and any("no photo holds a fault" in n for n in m.notes)
    a = m.states[0]
    assert a.kind == A.kind and a.counts == [[0, 0], [0, 0]] and a.accuracy is None
    assert a.missed[a.states.index(A_OK.rsplit("/", 1)[1])] == 1 and sum(a.missed) == 1


def test_a_photo_of_nothing_but_faults_found_at_the_right_states():
    record = photo((BOX1, A_BAD), (BOX2, B_BAD))
    m = fault_metrics([record], [[pred(NEAR1, A_BAD, 0.9), pred(BOX2, B_BAD, 0.4)]], FAULTS, T)
    o = m.objects
    assert (o.gt, o.predicted) == (2, 2)
    assert (o.at_fail.found, o.at_fail.flagged, o.at_fail.recall, o.at_fail.precision) == (1, 1, 0.5, 1.0)
    assert (o.at_review.found, o.at_review.recall, o.at_review.precision) == (2, 1.0, 1.0)
    assert o.at_fail.AP == pytest.approx(1.0)
    assert (o.curve.threshold, o.curve.precision, o.curve.recall) == ([0.9, 0.4], [1.0, 1.0], [0.5, 1.0])
    # always fail: each of the 2 parts called faulty in its kind's one fault state: 2 calls, both right
    assert (o.always_fail.recall, o.always_fail.precision, o.always_fail.AP) == (1.0, 1.0, 1.0)
    assert (o.always_pass.recall, o.always_pass.precision, o.always_pass.AP) == (0.0, None, 0.0)
    assert m.photo_verdicts == ["fail"] and m.photo_scores == [0.9] and m.photo_missed == [0]
    assert m.photos.model.roc_auc is None and any("every photo holds a fault" in n for n in m.notes)


def test_a_wrong_state_another_kind_or_a_loose_box_does_not_find_a_fault():
    record = photo((BOX1, A_BAD))
    for guess in (pred(BOX1, A_OK, 0.9), pred(BOX1, B_BAD, 0.9), pred(OFF1, A_BAD, 0.9)):
        m = fault_metrics([record], [[guess]], FAULTS, T)
        assert m.objects.at_review.found == 0 and m.photo_missed == [1]
        assert m.objects.at_review.recall == 0.0 and m.objects.at_fail.AP == 0.0


def test_ap_is_cocos_101_point_interpolation_over_every_fault_score():
    # 2 faults; scores 0.9 (hit), 0.8 (false alarm on a sound part), 0.7 (hit), 0.2 (duplicate of a found fault)
    record = photo((BOX1, A_BAD), (BOX2, A_OK), (BOX3, B_BAD))
    preds = [pred(BOX1, A_BAD, 0.9), pred(BOX2, A_BAD, 0.8), pred(BOX3, B_BAD, 0.7), pred(BOX1, A_BAD, 0.2)]
    m = fault_metrics([record], [preds], FAULTS, T)
    o = m.objects
    assert o.curve.precision == pytest.approx([1.0, 0.5, 2 / 3, 0.5]) and o.curve.recall == [0.5, 0.5, 1.0, 1.0]
    # precision envelope [1, 2/3, 2/3, 1/2]: recall levels 0..0.5 (51 of them) read 1, 0.51..1 (50) read 2/3
    assert o.at_fail.AP == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    assert (o.at_fail.found, o.at_fail.flagged, o.at_fail.precision) == (2, 3, pytest.approx(2 / 3))
    assert o.recall_at_precision(0.6) == 1.0 and o.recall_at_precision(0.9) == 0.5 and o.recall_at_precision(1.01) == 0.0
    # always fail: 3 parts of judged kinds, 2 of them faulty
    assert o.always_fail.precision == pytest.approx(2 / 3) and o.always_fail.flagged == 3


def test_empty_predictions_find_nothing_and_pass_every_photo():
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_OK)), photo()]
    m = fault_metrics(records, [[], [], []], FAULTS, T)
    o = m.objects
    assert (o.at_fail.recall, o.at_fail.precision, o.at_fail.AP, o.curve.threshold) == (0.0, None, 0.0, [])
    assert m.photo_verdicts == ["pass"] * 3
    assert m.photos.model.failed == binary_scores([True, False, False], [False] * 3)
    assert (m.photos.model.failed.precision, m.photos.model.failed.recall) == (None, 0.0)
    assert m.photos.model.failed.accuracy == pytest.approx(2 / 3)
    assert m.photos.model.roc_auc == 0.5  # every photo scores 0: no ranking
    assert m.photos.model == m.photos.always_pass


def test_photo_verdicts_and_their_baselines_on_a_mixed_set():
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_OK)), photo((BOX1, B_BAD)), photo((BOX1, A_OK)), photo((BOX1, A_BAD))]
    preds = [[pred(BOX1, A_BAD, 0.9)], [pred(BOX1, A_BAD, 0.8)], [pred(BOX1, B_BAD, 0.4)], [pred(BOX1, A_OK, 0.9)], []]
    m = fault_metrics(records, preds, FAULTS, T, failed=[False, False, False, False, True])
    assert m.photo_verdicts == ["fail", "fail", "review", "pass", "review"]
    p = m.photos
    assert (p.photos, p.faulty) == (5, 3)
    assert p.verdicts == {"pass": {"faulty": 0, "clean": 1}, "review": {"faulty": 2, "clean": 0},
                          "fail": {"faulty": 1, "clean": 1}}
    assert (p.model.failed.precision, p.model.failed.recall, p.model.failed.accuracy) == (0.5, pytest.approx(1 / 3), 0.4)
    assert (p.model.flagged.precision, p.model.flagged.recall, p.model.flagged.accuracy) == (0.75, 1.0, 0.8)
    # scores [0.9, 0.8, 0.4, 0, 0], truth [T, F, T, F, T]: of the 6 (faulty, clean) pairs, 0.9 ranks above both
    # clean photos, 0.4 above the clean 0, and the faulty 0 ties the clean 0 (half a pair): 3.5 of 6
    assert p.model.roc_auc == pytest.approx(roc_auc([True, False, True, False, True], [0.9, 0.8, 0.4, 0.0, 0.0]))
    assert p.model.roc_auc == pytest.approx((2 + 1 + 0.5) / 6)
    assert (p.always_pass.failed.precision, p.always_pass.failed.recall, p.always_pass.failed.accuracy) == (None, 0.0, 0.4)
    assert (p.always_fail.failed.precision, p.always_fail.failed.recall, p.always_fail.failed.accuracy) == (0.6, 1.0, 0.6)
    assert p.always_pass.roc_auc == p.always_fail.roc_auc == 0.5


def test_every_photo_failing_is_scored_against_the_baselines():
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_OK))]
    m = fault_metrics(records, [[pred(BOX1, A_BAD, 0.9)], [pred(BOX1, A_BAD, 0.7)]], FAULTS, T)
    assert m.photo_verdicts == ["fail", "fail"]
    assert m.photos.model.failed == m.photos.always_fail.failed
    assert m.photos.model.roc_auc == 1.0  # the faulty photo still ranks first


def test_a_photo_predicted_through_tiles_is_judged_by_the_tiled_photos_thresholds():
    # The same faulty photo and the same prediction (a found fault at 0.5), once predicted in one pass (fail at 0.6:
    # review) and once through tiles (fail at 0.4: fail); a clean photo with a false fault at 0.5 likewise.
    framed = FramedThresholds(T, VerdictThresholds(review=0.2, fail=0.4))
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_BAD)), photo((BOX1, A_OK)), photo((BOX1, A_OK))]
    preds = [[pred(BOX1, A_BAD, 0.5)]] * 4
    m = fault_metrics(records, preds, FAULTS, framed, tiled=[False, True, False, True])
    assert m.photo_verdicts == ["review", "fail", "review", "fail"]
    assert (m.photos_tiled, m.thresholds, m.thresholds_tiled) == (2, T, framed.tiled)
    assert m.one_pair() is None and "the 2 predicted through tiles or zoom: review ≥ 0.2, fail ≥ 0.4" in m.judged()
    # At the fail threshold, each fault counts against its own photo's: the two tiled ones (one found, one false).
    assert (m.objects.at_fail.found, m.objects.at_fail.flagged) == (1, 2)
    assert (m.objects.at_review.found, m.objects.at_review.flagged) == (2, 4)
    d = m.to_dict()
    assert (d["photos_tiled"], d["thresholds_tiled"]) == (2, {"review": 0.2, "fail": 0.4})
    # Without a pair of their own, tiled photos are judged as the others; with no tiled photo none is reported.
    alone = fault_metrics(records, preds, FAULTS, FramedThresholds(T), tiled=[False, True, False, True])
    assert alone.photo_verdicts == ["review"] * 4 and alone.one_pair() == T
    assert fault_metrics(records, preds, FAULTS, framed).thresholds_tiled is None
    # Every photo tiled: the tiled pair judged them all, and is the one reported.
    every = fault_metrics(records, preds, FAULTS, framed, tiled=[True] * 4)
    assert every.one_pair() == framed.tiled and every.judged() == "review ≥ 0.2, fail ≥ 0.4"


def test_state_given_kind_counts_found_parts_by_true_and_predicted_state():
    records = [photo((BOX1, A_BAD), (BOX2, A_OK), (BOX3, A_OK)), photo((BOX1, A_BAD), (BOX2, B_OK))]
    preds = [[pred(BOX1, A_OK, 0.9), pred(BOX2, A_OK, 0.8)], [pred(BOX1, A_BAD, 0.7), pred(BOX2, A_OK, 0.9)]]
    m = fault_metrics(records, preds, FAULTS, T)
    a = next(s for s in m.states if s.kind == A.kind)
    bad, ok = a.states.index(A.faults[0]), a.states.index(A_OK.rsplit("/", 1)[1])
    expected = [[0, 0], [0, 0]]
    expected[bad][ok] = 1  # the first photo's fault called sound
    expected[ok][ok] = 1
    expected[bad][bad] = 1
    assert a.counts == expected
    missed = [0, 0]
    missed[ok] = 1  # BOX3
    assert a.missed == missed
    assert a.accuracy == pytest.approx(2 / 3)
    assert (a.always_pass, a.always_fail) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    b = next(s for s in m.states if s.kind == B.kind)
    assert sum(map(sum, b.counts)) == 0 and sum(b.missed) == 1  # a box of another kind does not find it
    assert b.accuracy is None


def test_metrics_json_holds_every_view_and_a_thinned_curve():
    records = [photo(*[([i * 10, 0, i * 10 + 8, 8], A_BAD) for i in range(15)])] * 20
    preds = [[pred([i * 10, 0, i * 10 + 8, 8], A_BAD, (k * 15 + i + 1) / 301) for i in range(15)] for k in range(20)]
    d = fault_metrics(records, preds, FAULTS, T).to_dict()
    assert set(d) == {"labels", "thresholds", "photos_tiled", "thresholds_tiled", "objects", "photos", "states", "notes"}
    assert sorted(FAULTS.labels) == d["labels"] and d["thresholds"] == {"review": 0.3, "fail": 0.6}
    assert len(d["objects"]["curve"]["threshold"]) == 101 and d["objects"]["curve"]["recall"][-1] == 1.0
    assert d["objects"]["recall_at_precision"] == {"0.5": 1.0, "0.6": 1.0, "0.8": 1.0}


def test_thresholds_chosen_for_a_target_recall_and_precision():
    truth = [True, True, True, True, False, False, False]
    scores = [0.9, 0.8, 0.5, None, 0.85, 0.3, None]  # None: no fault predicted
    t, recall, precision, notes = choose_thresholds(truth, scores, target_recall=0.75, target_precision=0.6)
    assert t.review == 0.5 and recall == 0.75  # 0.9, 0.8, 0.5 flagged: 3 of 4
    assert t.fail == 0.5 and precision == 0.75 and not notes  # at 0.5: 3 faulty of 4 failed
    t, recall, precision, notes = choose_thresholds(truth, scores, target_recall=0.75, target_precision=0.9)
    assert t.fail == 0.9 and precision == 1.0
    t, recall, precision, notes = choose_thresholds(truth, scores, target_recall=1.0, target_precision=0.99)
    assert t.review == 0.3 and recall == 0.75 and any("no threshold flags 100%" in n for n in notes)
    assert t.fail == 0.9 and precision == 1.0
    t, _, precision, notes = choose_thresholds([True, False], [0.5, 0.9], 0.5, 0.9)
    assert t.fail == 1.0 and precision is None and any("every flagged photo goes to review" in n for n in notes)
    # Out of reach, but failing the surest photos gets more verdicts right than failing none (4 of 7 right):
    # at 0.6, 0.8 (clean), 0.7 and 0.6 (faulty) fail and 5 of 7 are right.
    truth = [True, True, True, False, False, False, False]
    t, _, precision, notes = choose_thresholds(truth, [0.7, 0.6, 0.2, 0.8, 0.3, 0.1, None], 0.75, 0.9)
    assert t == VerdictThresholds(0.2, 0.6) and precision == pytest.approx(2 / 3)
    assert any("fail is set at 0.6, where the fewest photos get a wrong verdict (5 of 7 right" in n for n in notes)
    # a fault predicted at score 0 can still be flagged (review at 0), a photo with none cannot
    t, recall, precision, notes = choose_thresholds([True, True, False], [0.0, None, None], 0.5, 0.9)
    assert (t, recall, precision, notes) == (VerdictThresholds(0.0, 0.0), 0.5, 1.0, [])
    with pytest.raises(ValueError, match="no photo of the validation set holds a fault"):
        choose_thresholds([False, False], [0.1, 0.2], 0.8, 0.9)


def test_a_fail_threshold_out_of_reach_never_claims_to_fail_none_when_a_photo_scores_1():
    # Scores of exactly 1 fail at fail 1.0 too: the note said "every flagged photo goes to review" and the
    # precision was left out, while 3 photos (2 clean) failed.
    truth, scores = [True, True, False, False, False], [1.0, 0.9, 1.0, 1.0, 0.95]
    t, recall, precision, notes = choose_thresholds(truth, scores, 0.9, 0.9)
    assert t == VerdictThresholds(0.9, 1.0) and recall == 1.0
    assert [verdict_of(s, False, t) for s in scores] == ["fail", "review", "fail", "fail", "review"]
    assert precision == pytest.approx(1 / 3)
    assert notes == ["no threshold fails photos at precision 90%: fail is set at 1, where the fewest photos get a wrong "
                     "verdict (2 of 5 right, precision 33%); 3 photo(s) whose best fault scores 1 fail at any threshold"]



def test_the_notes_give_a_threshold_set_out_of_reach_in_the_digits_it_is_written_with():
    # "review is set at the lowest fault score, 0.0551" of a review written as 0.05513: given to predict as that, the
    # photo that set it passed
    t, _, _, notes = choose_thresholds([True, True, False], [0.05513, None, 0.71234], 1.0, 0.9)
    assert t.review == 0.05513 and any(n.endswith("review is set at the lowest fault score, 0.05513") for n in notes)
    t, _, _, notes = choose_thresholds([True, True, True, False, False], [0.71234, 0.61234, 0.2, 0.81234, 0.3], 0.6, 0.9)
    assert t.fail == 0.61234 and any("fail is set at 0.61234, where the fewest" in n for n in notes)

def test_photos_to_check_put_missed_faults_first_then_clean_photos_flagged():
    records = [photo((BOX1, A_OK)), photo((BOX1, A_BAD)), photo((BOX1, A_BAD), (BOX2, B_BAD)), photo((BOX1, A_OK)),
               photo((BOX1, A_OK)), photo((BOX1, A_BAD))]
    preds = [[pred(BOX1, A_BAD, 0.4)], [], [], [pred(BOX1, A_BAD, 0.9)], [], [pred(BOX1, A_BAD, 0.9)]]
    m = fault_metrics(records, preds, FAULTS, T)
    assert m.photo_missed == [0, 1, 2, 0, 0, 0]
    assert m.photos_to_check(10) == [2, 1, 3, 0]  # 2 missed, 1 missed, clean failed, clean sent to review
    assert m.photos_to_check(1) == [2]


def test_a_hierarchy_marking_no_fault_passes_every_photo_and_says_why(tmp_path):
    path = tmp_path / "no_faults.json"
    path.write_text('{"categories": {"门": {"attributes": {"开": {}, "关": {}}}}}', encoding="utf-8")
    none = Faults.load(path)
    record = photo((BOX1, "门/开"))
    m = fault_metrics([record, record], [[pred(BOX1, "门/开", 0.9)], []], none, T, failed=[False, True])
    assert m.labels == [] and m.states == [] and m.objects.gt == 0
    assert m.photo_verdicts == ["pass", "review"]  # no usable answer is still a person's to look at
    assert any("marks no fault" in n for n in m.notes)


def test_the_fault_pr_curve_with_scores_of_0_and_1_and_ties_everywhere_is_scikit_learns():
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(1)
    scores = np.round(rng.random(120), 1)
    scores[:15], scores[15:30] = 1.0, 0.0
    hit = rng.random(120) < 0.5
    # Photo i holds one fault; its predicted fault lies on it (found) or beside it (not found).
    records = [photo((BOX1, A_BAD)) for _ in scores]
    preds = [[pred(BOX1 if h else BOX2, A_BAD, float(s))] for s, h in zip(scores, hit)]
    curve = fault_metrics(records, preds, FAULTS, T).objects.curve
    precision, recall, threshold = precision_recall_curve(hit, scores)
    assert curve.threshold == pytest.approx(threshold[::-1].tolist())
    assert curve.precision == pytest.approx(precision[:-1][::-1].tolist())
    assert np.array(curve.recall) * len(scores) / hit.sum() == pytest.approx(recall[:-1][::-1])


def test_a_fault_matched_only_under_the_review_threshold_is_missed_and_its_photo_checked_first():
    # Before: matched at 0.05 (under review 0.3), the fault counted found: "missed 0" on a faulty photo that passed,
    # and the report's list said no fault was missed
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_OK))]
    m = fault_metrics(records, [[pred(BOX1, A_BAD, 0.05)], []], FAULTS, T)
    assert m.photo_verdicts == ["pass", "pass"] and m.objects.at_review.found == 0
    assert m.photo_missed == [1, 0] and m.photos_to_check(5) == [0]
    tiled = fault_metrics(records, [[pred(BOX1, A_BAD, 0.05)], []], FAULTS,
                          FramedThresholds(T, VerdictThresholds(0.01, 0.5)), tiled=[True, False])
    assert tiled.photo_missed == [0, 0]  # its own photo's review threshold reads it: found there


def _greedy_one_by_one(gt: _Judged, pred: _Judged, iou: float, same) -> dict[int, int]:
    """The matching rule read literally: each prediction in turn (each photo's in score order) takes the free
    ground-truth box of its photo it overlaps most at IoU >= `iou` among those `same(p, g)` allows, the first on ties."""
    out, taken = {}, set()
    for p in range(len(pred.score)):
        k = pred.photo[p]
        best = None
        for g in range(gt.start[k], gt.start[k + 1]):
            overlap = float(box_iou(pred.boxes[p], gt.boxes[g]))
            if g not in taken and same(p, g) and overlap >= iou and (best is None or overlap > best[0]):
                best = (overlap, g)
        if best is not None:
            out[p] = best[1]
            taken.add(best[1])
    return out


def _random_judged(rng: np.random.Generator, counts, ids: _LabelIds) -> _Judged:
    """Photos of `counts` boxes on a coarse grid (equal boxes, equal IoUs) with judged labels and tied scores."""
    labels = [A_BAD, A_OK, B_BAD, B_OK]
    per_photo = []
    for n in counts:
        x, y = rng.integers(0, 6, (2, n)) * 2
        w, h = rng.integers(0, 4, (2, n)) * 2  # some boxes empty
        per_photo.append([([float(a), float(b), float(a + c), float(b + d)], float(rng.integers(0, 4)) / 4,
                           labels[rng.integers(0, 4)]) for a, b, c, d in zip(x, y, w, h)])
    return _Judged.of(per_photo, ids)


@pytest.mark.parametrize("chunk", [1, 40, 1 << 21])
def test_fault_matching_in_chunks_is_the_greedy_rule_box_by_box_and_never_holds_more_than_a_chunk_of_pairs(
        monkeypatch, chunk):
    # Every pair of every photo was once computed at once: 20 photos of 1,600 boxes took 3 GB
    monkeypatch.setattr(match_many, "_CHUNK_ELEMENTS", chunk)
    held = []
    iou = faults_module._iou
    monkeypatch.setattr(faults_module, "_iou", lambda a, b: held.append(len(a)) or iou(a, b))
    ids = _LabelIds(FAULTS)
    rng = np.random.default_rng(chunk)
    for _ in range(30):
        n_photos = int(rng.integers(0, 6))
        gt = _random_judged(rng, rng.integers(0, 9, n_photos), ids)
        pred = _random_judged(rng, rng.integers(0, 9, n_photos), ids)
        held.clear()
        fault_match, kind_match = _match(gt, pred, 0.5)
        assert fault_match == _greedy_one_by_one(gt, pred, 0.5, lambda p, g: pred.fault[p] >= 0 and pred.fault[p] == gt.fault[g])
        assert kind_match == _greedy_one_by_one(gt, pred, 0.5, lambda p, g: pred.kind[p] == gt.kind[g])
        biggest = int((np.maximum(np.diff(gt.start), np.diff(pred.start)) ** 2).max(initial=0))
        assert max(held, default=0) <= max(chunk, biggest)


def _choose_score_by_score(truth, scores, target_recall, target_precision, unusable, unjudged=None):
    """choose_thresholds read literally: each distinct score tried over every photo (the error cases left out); a
    photo's unjudgeable box flags it for review at its score, never fails it."""
    t, anyway = np.asarray(truth, dtype=bool), np.asarray(unusable, dtype=bool)
    s = np.asarray([-1.0 if v is None else v for v in scores], dtype=np.float64)
    u = np.asarray([-1.0 if v is None else v for v in (unjudged or [None] * len(t))], dtype=np.float64)
    r = np.maximum(s, u)
    candidates = np.unique(s[s >= 0])[::-1]
    flags = np.unique(r[r >= 0])[::-1]
    notes = []
    review = next((float(c) for c in flags if (t & ((r >= c) | anyway)).sum() / t.sum() >= target_recall), None)
    if review is None:
        review = float(flags[-1])
        reachable = float((t & ((r >= 0) | anyway)).sum() / t.sum())
        notes.append(f"no threshold flags {target_recall:.0%} of the faulty photos (a fault is predicted in, or no "
                     f"usable answer came back for, {reachable:.0%} of them): review is set at the lowest fault score, "
                     f"{review:g}")
    recall = float((t & ((r >= review) | anyway)).sum() / t.sum())
    fail, precision = next(((float(c), float(t[s >= c].mean())) for c in candidates[::-1]
                            if c >= review and t[s >= c].mean() >= target_precision), (1.0, None))
    if precision is None:
        right = {float(c): int(((s >= c) == t).sum()) for c in candidates if c >= review}
        # An unjudgeable box may set review above every fault score: no fail threshold then fails a photo
        best = max(right, key=lambda c: (right[c], c)) if right else None
        certain = bool((s >= 1.0).any())
        if best is not None and (right[best] > int((~t).sum()) or certain):
            fail, precision = best, float(t[s >= best].mean())
            notes.append(f"no threshold fails photos at precision {target_precision:.0%}: fail is set at {best:g}, "
                         f"where the fewest photos get a wrong verdict ({right[best]} of {len(t)} right, precision "
                         f"{precision:.0%})" + (f"; {int((s >= 1.0).sum())} photo(s) whose best fault scores 1 fail at "
                                                "any threshold" if certain else ""))
        else:
            notes.append(f"no threshold fails photos at precision {target_precision:.0%}: fail is set at 1.0, so every "
                         "flagged photo goes to review")
    return VerdictThresholds(review, fail), recall, precision, notes


@pytest.mark.parametrize("seed", range(60))
def test_thresholds_chosen_from_sorted_counts_are_those_each_score_tried_over_every_photo_chose(seed):
    # One sort and cumulative sums, where each distinct score was tried over every photo (16,000 photos: 1.3 s)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    truth = (rng.random(n) < rng.uniform(0.1, 0.9)).tolist()
    truth[:2] = [True, False]
    levels = int(rng.choice([2, 5, 11, 1000]))  # few levels: many ties; 0 and 1 among them
    scores = [None if rng.random() < 0.2 else float(rng.integers(0, levels)) / (levels - 1) for _ in range(n)]
    scores[int(rng.integers(0, n))] = float(rng.integers(0, levels)) / (levels - 1)
    unusable = (rng.random(n) < rng.choice([0.0, 0.2])).tolist()
    unjudged = [float(rng.integers(0, levels)) / (levels - 1) if rng.random() < rng.choice([0.0, 0.3]) else None
                for _ in range(n)]
    for recall, precision in [(0.5, 0.5), (0.8, 0.9), (1.0, 1.0), (0.3, 0.99), (float(rng.random()) + 1e-9, 0.75)]:
        chosen = choose_thresholds(truth, scores, recall, precision, unusable, unjudged)
        assert chosen == _choose_score_by_score(truth, scores, recall, precision, unusable, unjudged)


def test_a_photo_with_a_box_whose_label_may_be_a_fault_the_hierarchy_cannot_read_is_sent_to_review_as_predict_does():
    unread = A_BAD[:-1]  # its last character dropped: a state the hierarchy lacks
    records = [photo((BOX1, A_OK)), photo((BOX1, A_OK))]
    m = fault_metrics(records, [[pred(BOX1, unread, 0.9)], [pred(BOX1, A_OK, 0.9)]], FAULTS, T)
    assert m.photo_verdicts == ["review", "pass"]
    assert any("1 photo was sent to review for a box whose label the hierarchy cannot judge" in n for n in m.notes)
    assert m.photo_unjudged == [0.9, None]  # flagged at every review threshold up to 0.9, when thresholds are chosen
    assert m.photo_unusable == [False, False]


@pytest.mark.parametrize("score, verdict", [(0.0, "pass"), (0.01, "pass"), (0.299994, "pass"), (0.299996, "review"),
                                            (0.3, "review"), (0.9, "review")])
def test_a_box_whose_label_the_hierarchy_cannot_read_sends_its_photo_to_review_only_at_a_fault_scores_review(score,
                                                                                                             verdict):
    # Before: at any score, down to a head's alternatives at 0.0, so every photo went to review, as predict sent them
    unread = A_BAD[:-1]
    objects = [pred(BOX1, unread, score), pred(BOX2, A_OK, 0.9)]
    m = fault_metrics([photo((BOX1, A_OK))], [objects], FAULTS, T)
    assert m.photo_verdicts == [verdict]
    assert judge([(o["bbox_2d"], o["label"], o["score"]) for o in objects], FAULTS, T).verdict == verdict
    assert any("the hierarchy cannot judge" in n for n in m.notes) == (verdict == "review")



@pytest.mark.parametrize("score, verdict", [(0.299994, "pass"), (0.299996, "review"), (0.5999996, "fail")])
def test_a_fault_scored_past_the_digits_a_line_writes_is_judged_as_predict_judges_it(score, verdict):
    # A line of another tool's (or edited by hand) with a fault at 0.299996: eval passed the photo and counted the
    # fault missed, where predict's verdict (`judge`), the report's frame (`at_review`) and an unjudgeable box of the
    # same score read it as 0.3, at review
    objects = [pred(NEAR1, A_BAD, score)]
    m = fault_metrics([photo((BOX1, A_BAD))], [objects], FAULTS, T)
    expected = judge([(o["bbox_2d"], o["label"], o["score"]) for o in objects], FAULTS, T)
    assert m.photo_verdicts == [expected.verdict] == [verdict]
    assert m.photo_scores == [expected.score]
    assert m.photo_missed == [int(verdict == "pass")]

def test_thresholds_are_chosen_with_an_unjudgeable_box_flagging_its_photo_at_its_own_score():
    # Before: such a photo was flagged at every threshold, its box's score 0.01 counting as if it were 1
    truth, scores = [True, True, False, False], [0.8, None, 0.2, None]
    chosen, recall, _, _ = choose_thresholds(truth, scores, 1.0, 0.9, [False] * 4, [None, 0.4, None, 0.01])
    assert (chosen.review, recall) == (0.4, 1.0)  # the faulty photo is flagged by its unjudgeable box at 0.4
    assert chosen.fail == 0.8  # never failed on it: the fail threshold stands on fault scores alone

def test_a_photo_with_a_fault_label_written_on_past_its_state_is_sent_to_review_as_predict_does():
    # '.../连接错误/松动': a fault with a part after it was read as no fault, by eval as by predict, and the photo passed
    records = [photo((BOX1, A_BAD)), photo((BOX1, A_OK))]
    m = fault_metrics(records, [[pred(BOX1, A_BAD + "/松动", 0.9)], [pred(BOX1, A_OK + "/松动", 0.9)]], FAULTS, T)
    assert m.photo_verdicts == ["review", "pass"]
    assert m.photo_unjudged == [0.9, None]


def test_a_box_naming_a_category_without_faults_alone_leaves_its_photo_to_its_faults():
    # 'bbu基带处理单元' (its brand unwritten) was read as no category at all, and sent every such photo to review
    records = [photo((BOX1, A_OK)), photo((BOX1, A_OK))]
    m = fault_metrics(records, [[pred(BOX1, "bbu基带处理单元", 0.9)], [pred(BOX1, A_BAD.split("/")[0], 0.9)]], FAULTS, T)
    assert m.photo_verdicts == ["pass", "review"]
    assert m.photo_unjudged == [None, 0.9]


def test_a_fault_found_at_exactly_a_chosen_threshold_is_counted_as_its_photos_verdict_reads_it():
    # choose_thresholds sets review and fail at fault scores the photos have, so a fault found at exactly a threshold
    # is the usual case: the object counts and the missed faults must read it as verdict_of does (score >= threshold).
    scores = [0.9, 0.7, 0.55, 0.4, 0.2]  # one fault a photo, each found (NEAR1: IoU 0.83) at its score
    records = [photo((BOX1, A_BAD)) for _ in scores] + [photo((BOX1, A_OK)), photo((BOX1, A_OK))]
    preds = [[pred(NEAR1, A_BAD, s)] for s in scores] + [[pred(BOX1, A_BAD, 0.6)], []]
    truth, best = [True] * 5 + [False] * 2, scores + [0.6, None]
    t, recall, precision, _ = choose_thresholds(truth, best, target_recall=0.8, target_precision=0.9)
    assert t == VerdictThresholds(review=0.4, fail=0.7) and (recall, precision) == (0.8, 1.0)  # both a found fault's score
    m = fault_metrics(records, preds, FAULTS, t)
    assert m.photo_verdicts == [verdict_of(s, False, t) for s in best] == [
        "fail", "fail", "review", "review", "pass", "review", "pass"]
    faulty = [v for v, f in zip(m.photo_verdicts, m.photo_faulty) if f]
    at_fail, at_review = m.objects.at_fail, m.objects.at_review
    assert (at_fail.found, at_fail.flagged, at_fail.recall) == (faulty.count("fail"), 2, 0.4)
    assert (at_review.found, at_review.flagged, at_review.recall) == (len(faulty) - faulty.count("pass"), 5, 0.8)
    assert at_review.precision == 0.8  # the false fault at 0.6 is the fifth
    assert m.photo_missed == [0, 0, 0, 0, 1, 0, 0]  # the fault at exactly review is found; the one under it is missed


def test_recall_at_a_precision_counts_the_point_at_exactly_that_precision():
    # 2 faults; 0.9 finds one (precision 1), 0.8 and 0.7 are false (1/2, 1/3), 0.6 finds the other: precision 2/4 = 0.5
    # exactly, at recall 1. "Recall at precision 0.5" is that point's.
    record = photo((BOX1, A_BAD), (BOX3, B_BAD))
    preds = [pred(BOX1, A_BAD, 0.9), pred(BOX2, A_BAD, 0.8), pred(BOX2, B_BAD, 0.7), pred(BOX3, B_BAD, 0.6)]
    m = fault_metrics([record], [preds], FAULTS, T)
    assert m.objects.curve.precision == pytest.approx([1.0, 0.5, 1 / 3, 0.5]) and m.objects.curve.recall == [0.5, 0.5, 0.5, 1.0]
    assert m.objects.curve.precision[-1] == 0.5
    assert m.objects.recall_at_precision(0.5) == 1.0
    assert m.to_dict()["objects"]["recall_at_precision"] == {"0.5": 1.0, "0.6": 0.5, "0.8": 0.5}
