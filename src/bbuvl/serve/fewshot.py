"""Few-shot re-scoring of served boxes: each box's crop against a support set; a weak best match flags it `unknown`.

The rule is `bbuvl fewshot classify`'s (fewshot/classifier.py): mean cosine similarity to each class's support
embeddings, the best class accepted at or above the threshold. The detector's own label and score are kept;
the few-shot answer travels beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bbuvl.data.coords import box_is_degenerate
from bbuvl.fewshot.backbones import Backbone, load_backbone
from bbuvl.fewshot.batch import fit_support
from bbuvl.fewshot.classifier import FewShotClassifier, decide
from bbuvl.fewshot.embed import EmbedReport, crop_box
from bbuvl.fewshot.support import read_support
from bbuvl.serve.names import served_name


@dataclass
class FewShotRescorer:
    """A support set's classifier, its backbone and the acceptance threshold."""

    classifier: FewShotClassifier
    backbone: Backbone
    threshold: float
    support: str  # the support folder's name, for the model info
    # the support photos left out (unreadable, too large), each with why, and what else it warned of (files of no
    # photo type): `bbuvl serve` prints them at start, as `bbuvl fewshot classify` does, where a class served from
    # fewer photos than its folder holds was never said
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, support_dir: str | Path, backbone: str, threshold: float, device: str = "auto") -> "FewShotRescorer":
        """Embed every support image once (no cache: a server embeds them at start only)."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"few-shot threshold must be in [-1, 1] (a cosine similarity), got {threshold}")
        bb = load_backbone(backbone, device)
        support_set, report = read_support(support_dir), EmbedReport()
        fitted, warnings = fit_support(support_set, [None], 0, bb, None, 32, report)
        notes = [note for note in [support_set.left_out] if note] + list(warnings)
        return cls(fitted[0].classifier, bb, threshold, served_name(support_dir), report.skipped, notes)

    def info(self) -> dict[str, Any]:
        """What the model info of a response says about the few-shot step."""
        return {"support": self.support, "classes": list(self.classifier.classes), "backbone": self.backbone.kind,
                "threshold": self.threshold}

    def rescore(self, image: Image.Image, objects: list[dict[str, Any]]) -> None:
        """Add `fewshot: {label, score}` and `unknown` to each object dict in place (an empty crop is unknown)."""
        crops, where = [], []
        for i, o in enumerate(objects):
            box = crop_box(o["bbox_2d"], 0.0, image.size)
            if box_is_degenerate(box):
                o["unknown"], o["fewshot"] = True, None
                continue
            crops.append(image.crop(tuple(int(round(v)) for v in box)))
            where.append(i)
        if not crops:
            return
        scores = self.classifier.scores(self.backbone.embed(crops))
        d = decide(scores, self.threshold)
        for k, i in enumerate(where):
            objects[i]["fewshot"] = {"label": self.classifier.classes[d.best[k]], "score": round(float(d.best_score[k]), 5)}
            objects[i]["unknown"] = not bool(d.accepted[k])
