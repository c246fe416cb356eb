"""Head mode with one label a box (the caption path, `labels_per_box` 1): a box scores objectness x the mean
probability of its caption's tokens, end token included (docs/constrained_decoding.md, "Head captions")."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from bbuvl.infer.modes.head import head_objects


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_caption_scores_objectness_times_the_mean_probability_of_its_tokens(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    options = predictor.options("head", labels_per_box=1, objectness_threshold=0.0, nms_iou=None, part_nms=None,
                                score_threshold=0.0, constrained=True)
    prepared = [predictor.prepare(photo)]
    [found] = head_objects(predictor, prepared, options)
    assert found
    # The head's queries again, each caption's log-probability summed over its tokens by caption_logprobs (another
    # path than the greedy decoding: the one labels_per_box > 1 scores by), then averaged over those tokens. A
    # constrained caption is a label, tokenised as the vocabulary is (modes/head.py caption_vocabulary).
    head = predictor.model.detection_head
    with torch.inference_mode():
        det = predictor.model.detect(predictor.batch(prepared, with_teachers=False, for_generation=False))
        objectness = det.objectness_logits.float().sigmoid().cpu()[0].tolist()
        for d, obj in found:
            tokens = predictor.tokenizer.encode(d.label, add_special_tokens=False)
            assert d.label in predictor.prompt.labels and len(tokens) >= 1  # sum and mean differ over 2+ with eos
            q = objectness.index(obj)
            total = float(head.caption_logprobs(det.query_hidden[0, q:q + 1], [tokens])[0, 0])
            assert d.score == pytest.approx(obj * math.exp(total / (len(tokens) + 1)), rel=1e-4), d


def test_a_query_exactly_as_sure_as_the_objectness_threshold_is_kept(predictor, small_dataset):
    # inference.objectness_threshold keeps the queries "at least this sure" (infer/options.py)
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    every = dict(labels_per_box=1, nms_iou=None, part_nms=None, score_threshold=0.0)
    prepared = [predictor.prepare(photo)]
    [found] = head_objects(predictor, prepared, predictor.options("head", objectness_threshold=0.0, **every))
    sure = sorted({obj for _, obj in found})
    threshold = sure[len(sure) // 2]
    [kept] = head_objects(predictor, prepared, predictor.options("head", objectness_threshold=threshold, **every))
    assert sorted({obj for _, obj in kept}) == [s for s in sure if s >= threshold] and threshold in {o for _, o in kept}
