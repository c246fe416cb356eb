"""Choosing verdict thresholds on photos some of which got no usable answer (an error line, an unreadable answer, one
the token budget cut): such a photo goes to review at every threshold, as predict, serve and eval judge it, so it is
flagged whatever review is (docs/faults.md, "Choosing thresholds")."""

import pytest

from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.faults import choose_thresholds, fault_metrics
from bbuvl.infer.verdict import VerdictThresholds
from tests.eval.test_faults import A_BAD, BOX1, FAULTS, T, pred


def test_a_faulty_photo_without_a_usable_answer_counts_as_flagged_at_every_review_threshold():
    truth = [True, True, True, True, False, False]
    scores = [0.9, 0.8, None, None, 0.4, 0.1]  # the two faulty photos without a score got no usable answer
    unusable = [False, False, True, True, False, False]
    t, recall, _, _ = choose_thresholds(truth, scores, 0.75, 0.9, unusable)
    # 0.9 flags one, and the two unusable photos go to review anyway: 3 of 4. Counted as missed, no threshold reached
    # 3 of 4: review went down to the lowest score, 0.1, sending both clean photos to review, and said recall 0.5.
    assert t.review == 0.9 and recall == 0.75
    t, recall, _, notes = choose_thresholds(truth, [0.9, None, None, None, 0.4, 0.1], 1.0, 0.9,
                                            [False, False, True, True, False, False])
    assert recall == 0.75 and any("no usable answer came back for, 75% of them" in n for n in notes)


def test_fault_metrics_keep_which_photos_had_no_usable_answer_for_choosing():
    records = [ImageRecord(images=[f"{i}.jpg"], width=200, height=200, objects=[ObjectAnn(bbox_2d=BOX1, desc=A_BAD)])
               for i in range(3)] + [ImageRecord(images=["c.jpg"], width=200, height=200, objects=[])]
    predictions = [[pred(BOX1, A_BAD, 0.7)], [], [], [pred(BOX1, A_BAD, 0.2)]]
    m = fault_metrics(records, predictions, FAULTS, T, failed=[False, True, False, False])
    assert m.photo_unusable == [False, True, False, False]
    assert m.photo_verdicts[1] == "review"  # judged so in eval's own verdicts
    t, recall, _, _ = choose_thresholds(m.photo_faulty, m.photo_scores, 2 / 3, 0.9, m.photo_unusable)
    assert t.review == pytest.approx(0.7) and recall == pytest.approx(2 / 3)
    assert t == VerdictThresholds(0.7, 0.7)
