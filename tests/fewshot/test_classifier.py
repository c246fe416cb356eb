"""Known answers of the few-shot rule: scores, Unknown rejection at the threshold, margin and confidence bands."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbuvl.fewshot.backbones import PixelBackbone
from bbuvl.fewshot.classifier import FewShotClassifier, confidence_band, decide, normalize
from bbuvl.fewshot.embed import ImageItem, embed_items
from bbuvl.fewshot.support import UNKNOWN


def unit(*v: float) -> np.ndarray:
    return normalize(np.array([v], dtype=np.float32))[0]


@pytest.mark.parametrize("mode", ["mean", "prototype"])
def test_a_query_identical_to_a_support_image_scores_one_for_its_class(tmp_path, mode):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"s{i}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(paths[-1])
    bb = PixelBackbone(8)
    (_, support), = embed_items([ImageItem(p) for p in paths], bb)
    clf = FewShotClassifier.fit(["a", "b", "c"], support, mode)
    (_, query), = embed_items([ImageItem(paths[1])], bb)
    scores = clf.scores(query)
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert decide(scores, 0.99).labels(clf.classes) == ["b"]


def test_mean_mode_averages_cosines_prototype_mode_uses_the_normalised_mean():
    support = np.stack([unit(1, 0), unit(0, 1), unit(-1, 0)])
    clf = FewShotClassifier.fit(["a", "a", "b"], support, "mean")
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(clf.scores(q), [[0.5, -1.0]], atol=1e-6)
    proto = FewShotClassifier.fit(["a", "a", "b"], support, "prototype")
    np.testing.assert_allclose(proto.scores(q), [[np.sqrt(0.5), -1.0]], atol=1e-6)


def test_a_query_far_from_every_class_is_unknown_above_its_best_score():
    clf = FewShotClassifier.fit(["a", "b"], np.stack([unit(1, 0, 0), unit(0, 1, 0)]))
    far = np.array([[0.2, 0.1, 1.0]], dtype=np.float32)
    scores = clf.scores(far)
    best = float(scores.max())
    assert decide(scores, best + 0.01).labels(clf.classes) == [UNKNOWN]
    assert decide(scores, best - 0.01).labels(clf.classes) == ["a"]


def test_a_score_equal_to_the_threshold_is_accepted():
    scores = np.array([[0.5, 0.25]], dtype=np.float32)
    assert decide(scores, 0.5).accepted.tolist() == [True]
    assert decide(scores, np.nextafter(np.float32(0.5), np.float32(1))).accepted.tolist() == [False]


def test_margin_is_top1_minus_top2_and_bands_are_strictly_above_0_2_and_0_1():
    scores = np.array([[0.9, 0.6, 0.1], [0.3, 0.8, 0.65], [0.5, 0.45, 0.2], [0.2, 0.1, 0.7]], dtype=np.float64)
    d = decide(scores, 0.0)
    np.testing.assert_allclose(d.margin, [0.3, 0.15, 0.05, 0.5])
    assert d.best.tolist() == [0, 1, 0, 2] and d.second.tolist() == [1, 2, 1, 0]
    assert d.confidence() == ["high", "medium", "low", "high"]
    assert [confidence_band(m) for m in (0.2, 0.2001, 0.1, 0.1001, 0.0, -0.1)] == ["medium", "high", "low", "medium", "low", "low"]


def test_a_margin_of_exactly_a_band_edge_is_in_the_band_below_it_whatever_float_subtraction_leaves():
    # 0.9 - 0.7 is 0.20000000000000007 and 0.8 - 0.7 is 0.10000000000000009 in floats: margins are kept at
    # SCORE_DECIMALS, so both are the edge itself, which is not above it (fewshot/classifier.py)
    d = decide(np.array([[0.9, 0.7, 0.1], [0.8, 0.7, 0.0], [0.6, 0.4, 0.0]], dtype=np.float64), 0.25)
    assert d.confidence() == ["medium", "low", "medium"]
    assert d.margin.tolist() == [0.2, 0.1, 0.2]


def test_a_single_class_has_a_zero_runner_up():
    clf = FewShotClassifier.fit(["only"], np.stack([unit(1, 0)]))
    d = decide(clf.scores(np.array([[1.0, 1.0]], dtype=np.float32)), 0.5)
    assert d.second.tolist() == [-1]
    assert d.margin[0] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert d.labels(clf.classes) == ["only"]


def test_zero_vectors_score_zero_not_nan():
    clf = FewShotClassifier.fit(["a"], np.zeros((1, 3), dtype=np.float32))
    assert clf.scores(np.zeros((1, 3), dtype=np.float32)).tolist() == [[0.0]]


def test_fit_refuses_mismatched_inputs_and_unknown_modes():
    with pytest.raises(ValueError, match="one label per support vector"):
        FewShotClassifier.fit(["a"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mode"):
        FewShotClassifier.fit(["a"], np.zeros((1, 3)), "median")  # type: ignore[arg-type]
