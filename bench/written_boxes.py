"""Where a predictions file's boxes of one category land, against the nearest labelled box of that category.

    .venv/bin/python bench/written_boxes.py --pred runs/pred_generate.jsonl --gt held/val.jsonl
    .venv/bin/python bench/written_boxes.py --pred runs/pred_generate.jsonl --gt held/val.jsonl --category 挡风板

AP50 says how many boxes score; this says by how much the others miss, which tells a place that is almost right
(a few pixels off, more steps may close it) from one that is not yet a place at all (a vision token or more away,
another size). For each box written with a label of `--category` (hierarchy level 1, as `bbuvl eval --level 1`
reads it), the labelled box of that category on the same photo whose centre is nearest its centre is found; printed:
- boxes written, and labelled, of the category;
- the share of written boxes whose centre lies inside that nearest labelled box;
- the distance between the two centres, in pixels of the photo (quartiles);
- the written box's side over the labelled one's (median; a side is the mean of width and height);
- the share of written boxes at IoU >= 0.5 with some labelled box of the category (what AP50 can count);
- the same by the box's place among the category's boxes in its answer (1st, 2nd, ...): whether the first one
  written, with nothing before it to count past, is placed better than the later ones.
docs/grpo.md ("Where the written screws land") has the measured rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from bbuvl.data.boxes import box_iou
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import read_records
from bbuvl.eval.predictions import align_predictions, read_predictions

SCREWS = "螺丝连接点"


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[..., :2] + box[..., 2:]) / 2


def _side(box: np.ndarray) -> np.ndarray:
    return ((box[..., 2] - box[..., 0]) + (box[..., 3] - box[..., 1])) / 2


def written_rows(pred: Path, gt: Path, category: str) -> tuple[list[dict[str, float]], int]:
    """One row per written box of `category` (its place in the answer, the nearest labelled box's measures), and
    the number of labelled boxes of the category."""
    records = read_records(gt)
    alignment = align_predictions(records, gt, read_predictions(pred), pred)
    rows: list[dict[str, float]] = []
    labelled = 0
    for record, line in zip(records, alignment.predictions):
        truth = np.array([o.bbox_2d for o in record.objects if label_at_level(o.desc, 1) == category], dtype=np.float64)
        labelled += len(truth)
        if line is None:
            continue
        written = [o["bbox_2d"] for o in line.objects if label_at_level(o["label"], 1) == category]
        for place, box in enumerate(np.array(written, dtype=np.float64).reshape(-1, 4)):
            if len(truth) == 0:
                rows.append({"place": place, "inside": 0.0, "distance": float("nan"), "ratio": float("nan"), "hit": 0.0})
                continue
            distances = np.linalg.norm(_centre(truth) - _centre(box), axis=-1)
            nearest = truth[int(distances.argmin())]
            x, y = _centre(box)
            rows.append({
                "place": place,
                "inside": float(nearest[0] <= x <= nearest[2] and nearest[1] <= y <= nearest[3]),
                "distance": float(distances.min()),
                "ratio": float(_side(box) / max(float(_side(nearest)), 1e-6)),
                "hit": float(box_iou(box[None], truth).max() >= 0.5),
            })
    return rows, labelled


def summary(rows: list[dict[str, float]]) -> str:
    """One line: written, centre inside, centre distance quartiles, side ratio, share at IoU >= 0.5."""
    if not rows:
        return "none written"
    placed = [r for r in rows if not np.isnan(r["distance"])]  # NaN: a photo with none of the category
    quartiles = statistics.quantiles([r["distance"] for r in placed], n=4, method="inclusive") if len(placed) > 1 else [float("nan")] * 3
    ratio = statistics.median(r["ratio"] for r in placed) if placed else float("nan")
    return (f"{len(rows)} written; centre inside {np.mean([r['inside'] for r in rows]):.2f}; centre to the nearest "
            f"{quartiles[0]:.0f} / {quartiles[1]:.0f} / {quartiles[2]:.0f} px; side ratio {ratio:.2f}; "
            f"IoU >= 0.5 {np.mean([r['hit'] for r in rows]):.2f}")


def main() -> None:
    """Print where the written boxes of one category land."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", type=Path, required=True, help="a predictions JSONL (bbuvl predict, any mode)")
    ap.add_argument("--gt", type=Path, required=True, help="the ground-truth JSONL it was predicted on")
    ap.add_argument("--category", default=SCREWS, help="hierarchy level 1 of the labels to measure")
    args = ap.parse_args()
    try:
        rows, labelled = written_rows(args.pred, args.gt, args.category)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{args.category}: {labelled} labelled; {summary(rows)}")
    for place in sorted({int(r["place"]) for r in rows})[:5]:
        print(f"  {place + 1}. in the answer: {summary([r for r in rows if r['place'] == place])}")


if __name__ == "__main__":
    main()
