"""Head mode's labels per box: each kept box reported with its likeliest labels, at objectness x P(label)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import pytest
from PIL import Image


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_box_comes_with_its_two_likeliest_labels_whose_shares_of_its_objectness_sum_to_at_most_one(
        predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    options = dict(objectness_threshold=0.0, nms_iou=None, score_threshold=0.0)
    [one] = predictor.predict([photo], "head", labels_per_box=1, **options)
    [two] = predictor.predict([photo], "head", labels_per_box=2, **options)
    by_box = defaultdict(list)
    for d in two.objects:
        by_box[tuple(d.bbox_2d)].append(d)
    assert len(by_box) == len(one.objects) > 0  # the same boxes, each twice
    labels = set(predictor.prompt.labels)
    for box, found in by_box.items():
        assert len(found) == 2 and found[0].label != found[1].label and {d.label for d in found} <= labels
    # objectness x P(label): two labels of one box share at most its objectness, which the one-label run bounds too
    total = {tuple(d.bbox_2d): sum(x.score for x in by_box[tuple(d.bbox_2d)]) for d in two.objects}
    assert all(0 < t <= 1 for t in total.values())


def test_labels_per_box_out_of_range_is_refused(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    with pytest.raises(ValueError, match="labels_per_box"):
        predictor.predict([photo], "head", labels_per_box=0)



@contextmanager
def refit_to_name_nothing(predictor, background: float):
    """The predictor's run config saying its captions were refit with `background` (0: not), restored after."""
    refit = predictor.cfg.detection.caption_refit
    saved = (refit.steps, refit.background)
    refit.steps, refit.background = (10, background) if background else (0, 0.0)
    try:
        yield predictor
    finally:
        refit.steps, refit.background = saved


def test_captions_that_can_name_nothing_give_every_label_a_smaller_share_and_drop_boxes_naming_nothing(
        predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    options = dict(objectness_threshold=0.0, nms_iou=None, score_threshold=0.0, part_nms=None)
    found = {}
    for background in (0.0, 0.25):
        with refit_to_name_nothing(predictor, background):
            found[background] = [predictor.predict([photo], "head", labels_per_box=k, **options)[0] for k in (2, 1)]
    before = {(tuple(d.bbox_2d), d.label): d.score for d in found[0.0][0].objects}
    after = {(tuple(d.bbox_2d), d.label): d.score for d in found[0.25][0].objects}
    shared = before.keys() & after.keys()
    assert shared, "the same boxes keep some of their labels"
    assert all(after[k] < before[k] for k in shared)  # the empty caption takes its share of every box
    # one label a box: a box whose likeliest caption is the empty one is no detection
    assert {tuple(d.bbox_2d) for d in found[0.25][1].objects} <= {tuple(d.bbox_2d) for d in found[0.0][1].objects}


@pytest.mark.parametrize("tiles", ["off", "2x1"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_name_mode_names_each_box_once_whatever_labels_per_box(predictor, photos, tiles):
    # Head mode reports a box once a label; name mode asks the VLM to name the box itself, once. It named each of
    # the head's rows, writing every box twice under labels_per_box 2, the same label at the same score.
    options = dict(objectness_threshold=0.0, queries=3, tiles=tiles, zoom_containers=(), part_nms=None,
                   score_threshold=0.0, max_new_tokens=24)
    for nms_iou in (None, 0.5):
        [two] = predictor.predict_lines(photos[:1], "name", labels_per_box=2, nms_iou=nms_iou, **options)
        [one] = predictor.predict_lines(photos[:1], "name", labels_per_box=1, nms_iou=None, **options)
        boxes = [tuple(o["bbox_2d"]) for o in two["objects"]]
        assert boxes and len(boxes) == len(set(boxes))
        if nms_iou is None:  # the same boxes as one label a box names, with the same labels and scores
            assert two["objects"] == one["objects"]


def test_boxes_on_one_corner_come_best_score_first_as_before_the_queries_kept_their_labels():
    """Head mode sorts its boxes by top-left corner; two boxes of one label on the same corner (both clamped to the
    photo's edge) came out in query order, where they had come in score order."""
    from bbuvl.infer.modes.head import _label_nms
    from bbuvl.infer.predictor import Detection

    queries = [[(Detection([0.0, 0.0, 100.0, 50.0], "a", 0.3), 0.5)],
               [(Detection([0.0, 0.0, 40.0, 200.0], "a", 0.9), 0.9)],
               [(Detection([300.0, 0.0, 340.0, 20.0], "b", 0.6), 0.6), (Detection([300.0, 0.0, 340.0, 20.0], "a", 0.1), 0.6)]]
    left = _label_nms(queries, 0.5)
    assert [[d.score for d, _ in labels] for labels in left] == [[0.9], [0.6, 0.1], [0.3]]
    left.sort(key=lambda labels: (labels[0][0].bbox_2d[1], labels[0][0].bbox_2d[0]))
    assert [labels[0][0].score for labels in left] == [0.9, 0.3, 0.6]
