"""fewshot label's own steps: dropping a box that repeats a better one."""

import numpy as np
import pytest

from bbuvl.data.boxes import box_iou
from bbuvl.data.check import DUPLICATE_IOU
from bbuvl.data.schema import ObjectAnn, sort_objects
from bbuvl.fewshot.label import LabelReport, _dedupe

# Two spellings of one label (full-width letters): data check calls them one label, the dedupe two.
LABELS = ["线缆", "标签贴纸", "cable", "ｃａｂｌｅ"]


def _dedupe_box_by_box(objects: list[tuple[ObjectAnn, float]], where: str, report: LabelReport) -> list[ObjectAnn]:
    """The rule read literally: each box, best score first, against every box kept before it."""
    kept: list[tuple[ObjectAnn, float]] = []
    for obj, score in sorted(objects, key=lambda os_: -os_[1]):
        twin = next((k for k, _ in kept if k.bbox_2d == obj.bbox_2d or
                     (k.desc == obj.desc and float(box_iou(k.bbox_2d, obj.bbox_2d)) > DUPLICATE_IOU)), None)
        if twin is not None:
            report.fixed.append(f"{where}: dropped a duplicate '{obj.desc}' box {obj.bbox_2d} (kept {twin.bbox_2d})")
            if (obj.extra or {}).get("fewshot") == "Unknown":
                report.unknown_flagged -= 1
            else:
                report.labelled -= 1
            continue
        kept.append((obj, score))
    return sort_objects(o for o, _ in kept)


def _crowd(rng: np.random.Generator, n: int) -> list[tuple[ObjectAnn, float]]:
    """`n` boxes around a few objects: exact copies, copies nudged by under a pixel (IoU near 0.95 either side),
    empty boxes, few labels, tied scores."""
    objects = rng.uniform(0, 200, (3, 2))
    sides = rng.uniform(5, 40, (3, 2))
    out = []
    for _ in range(n):
        k = rng.integers(0, 3)
        x, y = objects[k]
        w, h = sides[k] * (rng.random() < 0.9)  # some empty
        box = np.array([x, y, x + w, y + h]) + rng.integers(-2, 3, 4) * rng.choice([0.0, 0.25, 0.5])
        box[2:] = np.maximum(box[2:], box[:2])
        extra = {"fewshot": "Unknown"} if rng.random() < 0.2 else None
        out.append((ObjectAnn(bbox_2d=box.round(2).tolist(), desc=LABELS[rng.integers(0, len(LABELS))], extra=extra),
                    float(rng.integers(0, 5)) / 4))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_dedupe_keeps_and_reports_what_comparing_each_box_with_every_kept_one_did(seed):
    rng = np.random.default_rng(seed)
    objects = _crowd(rng, int(rng.integers(0, 60)))
    mine, theirs = LabelReport(labelled=100, unknown_flagged=100), LabelReport(labelled=100, unknown_flagged=100)
    assert _dedupe(objects, "p.jpg", mine) == _dedupe_box_by_box(objects, "p.jpg", theirs)
    assert (mine.fixed, mine.labelled, mine.unknown_flagged) == (theirs.fixed, theirs.labelled, theirs.unknown_flagged)


def test_a_copy_of_a_dropped_box_is_dropped_by_the_kept_copy_after_it():
    # A: best; B within IoU 0.95 of A (dropped); three copies of B's box under another label: the first kept, the
    # others repeat it (data check names each copy against the first alone, dropped here)
    a, b = [0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 100.0, 101.0]
    objects = [(ObjectAnn(bbox_2d=a, desc="线缆"), 0.9), (ObjectAnn(bbox_2d=b, desc="线缆"), 0.8)]
    objects += [(ObjectAnn(bbox_2d=b, desc="标签贴纸"), s) for s in (0.7, 0.6, 0.5)]
    report = LabelReport()
    kept = _dedupe(objects, "p.jpg", report)
    assert [(o.bbox_2d, o.desc) for o in kept] == [(a, "线缆"), (b, "标签贴纸")]
    assert [f.rsplit("(", 1)[1] for f in report.fixed] == [f"kept {a})", f"kept {b})", f"kept {b})"]
