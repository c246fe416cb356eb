"""The mean reward of a checkpoint's greedy answers on held-out photos: what GRPO is meant to raise."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from bbuvl.config import RewardWeights
from bbuvl.data.images import ImageError
from bbuvl.data.labels import Hierarchy
from bbuvl.infer.predictor import Predictor, Prepared
from bbuvl.rl.rewards import LabelledBox, RewardScorer
from bbuvl.rl.rollouts import Photo, prepared_photo, read_photos, where

log = logging.getLogger(__name__)


def heldout_reward(predictor: Predictor, jsonl: str | Path, weights: RewardWeights | None = None,
                   hierarchy: Hierarchy | None = None, batch_size: int = 8) -> dict[str, float]:
    """Each reward term and the weighted total, averaged over the photos of `jsonl`, for generate mode's answers
    (greedy, constrained as the checkpoint's inference config says), as `bbuvl predict` would write them."""
    weights = weights or predictor.cfg.grpo.rewards
    scorer = RewardScorer.from_config(weights, hierarchy or Hierarchy.load(predictor.cfg.data.hierarchy),
                                      predictor.prompt.labels)
    return photos_reward(predictor, read_photos(str(jsonl)), scorer, batch_size)


def photos_reward(predictor: Predictor, photos: Sequence[Photo], scorer: RewardScorer, batch_size: int = 8,
                  unreadable: list[str] | None = None) -> dict[str, float]:
    """`heldout_reward` over photos already read, scored by `scorer` (`reward_sums`, averaged)."""
    sums, scored = reward_sums(predictor, photos, scorer, batch_size, unreadable)
    return {k: v / max(scored, 1) for k, v in sums.items()}


def reward_sums(predictor: Predictor, photos: Sequence[Photo], scorer: RewardScorer, batch_size: int = 8,
                unreadable: list[str] | None = None) -> tuple[dict[str, float], int]:
    """Each reward term and the weighted total summed over `photos`' greedy answers, and the photos scored: GRPO's
    validation pass on a rank's share of `data.val` (rl/trainer.py sums the ranks').

    A photo that cannot be read now (cut short, deleted, or replaced by one of another size since the start) is left out
    of the means, named in a warning by the rank that met it and in `unreadable` (`file:line: why`)."""
    # It ended the run at its first validation pass, the steps since the last checkpoint lost; replaced by a photo of
    # another size, its answer was scored in the new file's pixels against the record's truth.
    opts = predictor.options("generate")
    sums: dict[str, float] = {}
    scored = 0
    for start in range(0, len(photos), batch_size):
        chunk: list[tuple[Photo, Prepared]] = []
        for photo in photos[start:start + batch_size]:
            try:
                chunk.append((photo, prepared_photo(predictor, photo, keep_stored=opts.plan() is not None)))
            except ImageError as e:
                if unreadable is not None:
                    unreadable.append(f"{where(photo)}: {e}")
                log.warning("%s: this validation photo cannot be read (%s): left out of eval_reward; fix or remove it",
                            where(photo), e)
        if not chunk:
            continue
        for (photo, _), result in zip(chunk, predictor.predict_each([p for _, p in chunk], "generate", opts)):
            if isinstance(result, Exception):
                raise result
            answer = [LabelledBox(tuple(d.bbox_2d), d.label) for d in result.objects]
            for k, v in scorer.score(list(photo.truth), answer, result.error is None).items():
                sums[k] = sums.get(k, 0.0) + v
            scored += 1
    return sums, scored
