"""One order for the photos and boxes an evaluation scores, whatever order their files list them in.

Rankings break ties by position: COCO ranks detections of equal score in photo order, and a greedy match gives a
ground-truth box to the first of two equal predictions. So the order of the lines of `--gt` and of the predictions
file, and of the boxes inside a line, decided numbers: the constant-box prior (every photo's box scores 1) moved
by 0.03 on 8 photos when the ground truth's lines were reversed. Every number `bbuvl eval` writes is computed on
the order given here instead (docs/eval.md, "Ties"): photos by name, a photo's ground-truth boxes by label then
corners, its predictions by score (highest first), then label, then corners.
"""

from __future__ import annotations

from typing import Any, Sequence

from bbuvl.data.schema import ImageRecord, ObjectAnn

GtKey = tuple[str, tuple[float, ...]]
PredKey = tuple[float, str, tuple[float, ...]]


def gt_key(o: ObjectAnn) -> GtKey:
    """Where a ground-truth box sits among its photo's: by label, then corners."""
    return o.desc, tuple(o.bbox_2d)


def prediction_key(o: dict[str, Any]) -> PredKey:
    """Where a predicted box sits among its photo's: by score (highest first), then label, then corners."""
    return -float(o["score"]), str(o["label"]), tuple(float(v) for v in o["bbox_2d"])


def sorted_gt(record: ImageRecord) -> ImageRecord:
    """`record` with its boxes in `gt_key` order (the record itself when they already are)."""
    objects = sorted(record.objects, key=gt_key)
    if all(a is b for a, b in zip(objects, record.objects)):
        return record
    return record.model_copy(update={"objects": objects})


def sorted_predictions(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predicted boxes in `prediction_key` order."""
    return sorted(objects, key=prediction_key)


def photo_order(records: Sequence[ImageRecord], predictions: Sequence[Sequence[dict[str, Any]]] | None = None) -> list[int]:
    """Indices of `records` by photo name, then size, then boxes (and the predictions paired with each, when given),
    so that equal photos listed in any order come out in one order."""
    def key(i: int) -> tuple[Any, ...]:
        r = records[i]
        photo = (r.image, r.width, r.height, tuple(sorted(map(gt_key, r.objects))))
        return photo if predictions is None else (*photo, tuple(sorted(map(prediction_key, predictions[i]))))

    return sorted(range(len(records)), key=key)
