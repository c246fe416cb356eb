"""The mean reward of a checkpoint's greedy answers on held-out photos: what GRPO is meant to raise."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bbuvl.config import RewardWeights
from bbuvl.data.labels import Hierarchy
from bbuvl.infer.predictor import Predictor
from bbuvl.rl.rewards import LabelledBox, RewardScorer
from bbuvl.rl.rollouts import Photo, read_photos


def heldout_reward(predictor: Predictor, jsonl: str | Path, weights: RewardWeights | None = None,
                   hierarchy: Hierarchy | None = None, batch_size: int = 8) -> dict[str, float]:
    """Each reward term and the weighted total, averaged over the photos of `jsonl`, for generate mode's answers
    (greedy, constrained as the checkpoint's inference config says), as `bbuvl predict` would write them."""
    weights = weights or predictor.cfg.grpo.rewards
    scorer = RewardScorer.from_config(weights, hierarchy or Hierarchy.load(predictor.cfg.data.hierarchy),
                                      predictor.prompt.labels)
    return photos_reward(predictor, read_photos(str(jsonl)), scorer, batch_size)


def photos_reward(predictor: Predictor, photos: Sequence[Photo], scorer: RewardScorer,
                  batch_size: int = 8) -> dict[str, float]:
    """`heldout_reward` over photos already read, scored by `scorer`: GRPO's validation pass on `data.val`."""
    sums: dict[str, float] = {}
    for start in range(0, len(photos), batch_size):
        chunk = photos[start:start + batch_size]
        for photo, result in zip(chunk, predictor.predict([p.path for p in chunk], mode="generate")):
            answer = [LabelledBox(tuple(d.bbox_2d), d.label) for d in result.objects]
            for k, v in scorer.score(list(photo.truth), answer, result.error is None).items():
                sums[k] = sums.get(k, 0.0) + v
    return {k: v / max(len(photos), 1) for k, v in sums.items()}
