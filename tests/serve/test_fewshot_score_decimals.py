"""`--fewshot`: a box's served few-shot score is the one its `unknown` was decided on, as `fewshot classify` writes it."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _photo(seed: int, size: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_a_served_score_is_written_at_the_decimals_unknown_was_decided_on(tmp_path):
    from bbuvl.fewshot.classifier import SCORE_DECIMALS, decide
    from bbuvl.serve.fewshot import FewShotRescorer

    for label, seeds in (("cable", (1, 2)), ("label", (3, 4))):
        (tmp_path / label).mkdir()
        for seed in seeds:
            _photo(seed).save(tmp_path / label / f"{seed}.png")
    queries = [_photo(seed, 32) for seed in range(10, 30)]
    rescorer = FewShotRescorer.load(tmp_path, "pixels:8", 0.0, "cpu", watch_s=0)
    decided = decide(rescorer.classifier.scores(rescorer.backbone.embed(queries)), 0.0).best_score
    assert any(round(float(s), 5) != float(s) for s in decided)  # a score its 6th decimal tells apart
    for query, score in zip(queries, decided):
        # A threshold just above the score: the box is unknown, and its score must read below the threshold
        threshold = round(float(score) + 10 ** -SCORE_DECIMALS, SCORE_DECIMALS)
        served = FewShotRescorer(rescorer.watcher, rescorer.backbone, threshold, rescorer.support)
        objects = [{"bbox_2d": [0, 0, 32, 32]}]
        served.rescore(query, objects)
        assert objects[0]["fewshot"]["score"] == float(score)  # what `fewshot classify` writes for this crop
        assert objects[0]["unknown"] is True and objects[0]["fewshot"]["score"] < threshold
