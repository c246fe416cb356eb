"""Peak memory of `bbuvl eval`'s scoring at many photos: COCO evaluated in one pass over every photo and category
pair, the evaluator held through the next evaluation (as before), against one category at a time over the photos
holding it, keeping only the arrays the numbers are read from (eval/coco_metrics.py, `evaluate_by_category` and
`CocoRun`), each side in a fresh process, in one run.

    .venv/bin/python bench/eval_memory.py                       # 16,000 photos x ~3.5 boxes of 19 labels
    .venv/bin/python bench/eval_memory.py --images 4000 --labels 6

Each child builds the same random ground truth and predictions (bench/eval_speed.py's), runs everything
`evaluate_predictions` computes, and reports its peak RSS, before and after scoring, and the time it took; "old"
puts the former `run_cocoeval` back, and the prior's search in chunks of 256 candidates whatever the photos
(eval/prior.py; a bench may swap them, a test may not). The parent prints both side by side with their ratios and refuses numbers that differ.
Run it with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def old_run_cocoeval(gt: dict, dets: list[dict], one_class: bool = False):
    """eval/coco_metrics.py's `run_cocoeval` as it was: the class-agnostic copy made apart, then copied again; every
    photo and category pair evaluated in one pass; the whole evaluator returned, and held through the next one."""
    from faster_coco_eval import COCO, COCOeval_faster

    from bbuvl.eval.coco_metrics import _quiet

    if one_class:
        one = [{"id": 1, "name": "object", "supercategory": "object"}]
        gt = {"images": gt["images"], "categories": one,
              "annotations": [{**a, "category_id": 1} for a in gt["annotations"]]}
        dets = [{**d, "category_id": 1} for d in dets]
    annotations = [{**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(dets, start=1)]
    gt_copy = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
    coco_gt = COCO(gt_copy, print_function=_quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": annotations},
                   print_function=_quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_quiet)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def child(side: str, images: int, boxes: float, labels: int, seed: int) -> None:
    """Score one side and print its measurements as one JSON line."""
    sys.path.insert(0, str(Path(__file__).parent))
    import eval_speed

    from bbuvl.data.labels import Hierarchy
    from bbuvl.eval import coco_metrics, prior
    from bbuvl.eval.metrics import evaluate_predictions

    eval_speed.LABELS = list(Hierarchy.load().labels())[:labels]
    records, lines = eval_speed.make_data(images, boxes, seed)
    if side == "old":
        coco_metrics.run_cocoeval = old_run_cocoeval
        prior._CHUNK_CELLS = 1 << 62  # the constant box's search in chunks of 256 candidates, whatever the photos
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    ev = evaluate_predictions(records, eval_speed.GT_PATH, lines, None)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    numbers = {"prior": ev.metrics["prior"], "coco": ev.coco.summary, "agnostic": ev.coco.agnostic, "per_category": ev.coco.per_category,
               "curves": ev.coco.curves}
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": seconds, "numbers": numbers,
                      "boxes": sum(len(r.objects) for r in records), "labels": len(ev.coco.per_category)}))


def main() -> None:
    """Run both sides in children, print peak RSS and time side by side."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--boxes", type=float, default=3.5, help="mean boxes per photo")
    ap.add_argument("--labels", type=int, default=19, help="how many of the shipped hierarchy's labels to draw from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", choices=("old", "new"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        child(args.side, args.images, args.boxes, args.labels, args.seed)
        return
    found = {}
    for side in ("old", "new"):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--images", str(args.images), "--boxes",
                              str(args.boxes), "--labels", str(args.labels), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True).stdout
        found[side] = json.loads(out.strip().splitlines()[-1])
    old, new = found["old"], found["new"]
    print(f"{args.images} photos, {new['boxes']} ground-truth boxes, {new['labels']} categories")
    print(f"{'':34s} {'old':>16s} {'new':>18s} {'old / new':>10s}")
    print(f"{'peak RSS, MB':34s} {old['peak_mb']:16.0f} {new['peak_mb']:18.0f} {old['peak_mb'] / new['peak_mb']:10.2f}")
    grew = [f["peak_mb"] - f["before_mb"] for f in (old, new)]
    print(f"{'peak RSS added by scoring, MB':34s} {grew[0]:16.0f} {grew[1]:18.0f} {grew[0] / grew[1]:10.2f}")
    print(f"{'scoring time, s':34s} {old['seconds']:16.2f} {new['seconds']:18.2f} {old['seconds'] / new['seconds']:10.2f}")
    if old["numbers"] != new["numbers"]:
        raise SystemExit("the numbers differ between the two sides")
    print("numbers (COCO summary, class-agnostic, per category, curves; the prior): identical")


if __name__ == "__main__":
    main()
