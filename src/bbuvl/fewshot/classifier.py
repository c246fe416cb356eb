"""The few-shot rule: score each class by cosine similarity, reject weak matches as Unknown, grade the margin.

- score(query, class) = mean cosine similarity to the class's support embeddings (`mean`, the default),
  or cosine similarity to the class prototype, the normalised mean of those embeddings (`prototype`);
- the best class is the answer when its score >= threshold, else `Unknown` (a score equal to the
  threshold is accepted);
- scores and margins are kept at 6 decimals (`SCORE_DECIMALS`, what the results files write): a cosine summed in
  float32 is off by ~1e-7, so a photo identical to its class's one support image scored 0.99999994, was written
  as 1.0 and was Unknown at --threshold 1;
- margin = best - second best score; confidence is `high` when margin > 0.2, `medium` when > 0.1, else
  `low`. With a single class there is no runner-up: it is taken as an unrelated embedding (score 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from bbuvl.fewshot.support import UNKNOWN

Mode = Literal["mean", "prototype"]
MODES = ("mean", "prototype")
HIGH_MARGIN, MEDIUM_MARGIN = 0.2, 0.1
SCORE_DECIMALS = 6


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows of `x` `[n, D]` scaled to unit length (all-zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def confidence_band(margin: float) -> str:
    """`high` (margin > 0.2), `medium` (> 0.1) or `low`."""
    return "high" if margin > HIGH_MARGIN else "medium" if margin > MEDIUM_MARGIN else "low"


@dataclass
class FewShotClassifier:
    """Support embeddings grouped by class; scores queries against them."""

    classes: list[str]
    support: np.ndarray  # [S, D] unit rows
    owner: np.ndarray  # [S] index into classes
    mode: Mode = "mean"

    @classmethod
    def fit(cls, labels: Sequence[str], vectors: np.ndarray, mode: Mode = "mean") -> "FewShotClassifier":
        """A classifier from support `vectors` `[S, D]` and their class `labels` (length S)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
        if len(labels) != len(vectors) or not len(labels):
            raise ValueError(f"need one label per support vector and at least one of each, got {len(labels)} and {len(vectors)}")
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        return cls(classes, normalize(vectors), np.array([index[c] for c in labels]), mode)

    def _membership(self) -> np.ndarray:
        """`[S, C]` with 1 / (class size) where support row s belongs to class c."""
        m = np.zeros((len(self.owner), len(self.classes)), dtype=np.float32)
        m[np.arange(len(self.owner)), self.owner] = 1.0
        return m / m.sum(axis=0, keepdims=True)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """`[N, C]` class scores in [-1, 1] for query embeddings `[N, D]`, float64 at `SCORE_DECIMALS` (a float32 margin
        of 0.2 is 0.20000000298, above the band's 0.2)."""
        q = normalize(queries)
        if self.mode == "prototype":
            prototypes = normalize(self._membership().T @ self.support)  # [C, D]
            s = q @ prototypes.T
        else:
            s = (q @ self.support.T) @ self._membership()  # [N, S] @ [S, C]: mean over each class's rows
        return np.round(np.clip(s.astype(np.float64), -1.0, 1.0), SCORE_DECIMALS)


@dataclass
class Decisions:
    """Per query: best and runner-up class with their scores, margin, and whether the best was accepted."""

    best: np.ndarray  # [N] class index
    best_score: np.ndarray  # [N]
    second: np.ndarray  # [N] class index, -1 when there is a single class
    second_score: np.ndarray  # [N]
    accepted: np.ndarray  # [N] bool: best_score >= threshold

    @property
    def margin(self) -> np.ndarray:
        """`[N]` best - second best score (at `SCORE_DECIMALS`: 0.9 - 0.7 is 0.2, medium, not 0.20000000000000007, high)."""
        return np.round(self.best_score - self.second_score, SCORE_DECIMALS)

    def confidence(self) -> list[str]:
        """Confidence band of every query."""
        return [confidence_band(float(m)) for m in self.margin]

    def labels(self, classes: Sequence[str]) -> list[str]:
        """The answer per query: the best class, or Unknown when rejected."""
        return [classes[b] if ok else UNKNOWN for b, ok in zip(self.best, self.accepted)]


def decide(scores: np.ndarray, threshold: float) -> Decisions:
    """Pick the best class of each row of `scores` `[N, C]`; below `threshold` it is rejected."""
    n, c = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = np.arange(n)
    best = order[:, 0]
    best_score = scores[rows, best]
    if c > 1:
        second = order[:, 1]
        second_score = scores[rows, second]
    else:
        second, second_score = np.full(n, -1), np.zeros(n, dtype=scores.dtype)
    return Decisions(best, best_score, second, second_score, best_score >= threshold)
