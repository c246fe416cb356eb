"""Few-shot re-scoring of served boxes: each box's crop against a support set; a weak best match flags it `unknown`.

The rule is `bbuvl fewshot classify`'s (fewshot/classifier.py): mean cosine similarity to each class's support
embeddings, the best class accepted at or above the threshold. The detector's own label and score are kept;
the few-shot answer travels beside them. The support set follows its folder while the server runs
(serve/support_watch.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bbuvl.data.coords import box_is_degenerate
from bbuvl.data.images import stored_crop
from bbuvl.fewshot.backbones import Backbone, load_backbone
from bbuvl.fewshot.classifier import SCORE_DECIMALS, FewShotClassifier, decide
from bbuvl.fewshot.embed import crop_box
from bbuvl.serve.names import served_name
from bbuvl.serve.support_watch import WATCH_S, ServedSupport, SupportWatcher


@dataclass
class FewShotRescorer:
    """A support set's classifier (kept in step with its folder: serve/support_watch.py), its backbone and the
    acceptance threshold."""

    watcher: SupportWatcher
    backbone: Backbone
    threshold: float
    support: str  # the support folder's name, for the model info

    @classmethod
    def load(cls, support_dir: str | Path, backbone: str, threshold: float, device: str = "auto",
             watch_s: float = WATCH_S) -> "FewShotRescorer":
        """Embed every support image now, then look for changes to the folder every `watch_s` seconds (0: never)."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"few-shot threshold must be in [-1, 1] (a cosine similarity), got {threshold}")
        bb = load_backbone(backbone, device)
        return cls(SupportWatcher(support_dir, bb, watch_s), bb, threshold, served_name(support_dir))

    @property
    def classifier(self) -> FewShotClassifier:
        """The classifier of the support set served now."""
        return self.watcher.current.classifier

    @property
    def skipped(self) -> list[str]:
        """The support photos the served set left out (unreadable, too large), each with why: `bbuvl serve` prints them
        at start, as `bbuvl fewshot classify` does, where a class served from fewer photos than its folder holds was
        never said (a later version's are in the log)."""
        return list(self.watcher.current.skipped)

    @property
    def warnings(self) -> list[str]:
        """What else the served set's folder warned of (files of no photo type, a photo in two classes)."""
        return list(self.watcher.current.warnings)

    def info(self, served: ServedSupport | None = None) -> dict[str, Any]:
        """What the model info of a response says about the few-shot step: the support set's version (`served`, else
        the one served now), its classes and photos, and why the folder as it is now is not served (`stale`, None when
        it is)."""
        served = served or self.watcher.current
        return {"support": self.support, "classes": list(served.photos), "backbone": self.backbone.kind,
                "threshold": self.threshold, "version": served.version, "photos": sum(served.photos.values()),
                "stale": self.watcher.problem}

    def rescore(self, image: Image.Image, objects: list[dict[str, Any]], size: tuple[int, int] | None = None) -> dict[str, Any]:
        """Add `fewshot: {label, score}` and `unknown` to each object dict in place (an empty crop is unknown); returns
        the model info of the support set that scored them (a reload may serve another by the time it is answered).
        `size`: the stored photo's, the boxes' frame, when `image` is it decoded at a reduced scale."""
        served = self.watcher.current  # read once: a reload while the photo is scored swaps the set, not its classes
        crops, where = [], []
        for i, o in enumerate(objects):
            box = crop_box(o["bbox_2d"], 0.0, size or image.size)
            if box_is_degenerate(box):
                o["unknown"], o["fewshot"] = True, None
                continue
            crops.append(stored_crop(image, size or image.size, box))
            where.append(i)
        if crops:
            classifier = served.classifier
            d = decide(classifier.scores(self.backbone.embed(crops)), self.threshold)
            for k, i in enumerate(where):
                # At the decimals it was decided on, as `fewshot classify` writes it: at 5, a score of 0.599996 was
                # served as 0.6 and flagged unknown at --fewshot-threshold 0.6
                objects[i]["fewshot"] = {"label": classifier.classes[d.best[k]],
                                         "score": round(float(d.best_score[k]), SCORE_DECIMALS)}
                objects[i]["unknown"] = not bool(d.accepted[k])
        return self.info(served)
