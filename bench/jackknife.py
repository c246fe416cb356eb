"""The jackknife `bbuvl choose-tiles` reads (each validation photo left out in turn): accumulated again in C++ for
each photo left out vs ranked once in numpy (eval/left_out.py), and optionally scored afresh, side by side in one run
at several numbers of photos.

    .venv/bin/python bench/jackknife.py                       # 50, 100 and 200 photos x ~15 boxes
    .venv/bin/python bench/jackknife.py --photos 100,400 --boxes 10
    .venv/bin/python bench/jackknife.py --photos 50 --afresh  # also each set of n - 1 photos scored afresh (slow)

Builds random ground truth and perturbed predictions (bench/eval_speed.py's; no image files are needed), then times,
in CPU seconds, what choose-tiles computes for one candidate scale's spread: per-category AP50 at level 1 of every set
of n - 1 photos. "re-accumulated": `per_category_left_out` as it was, the photos matched once and faster-coco-eval's
accumulation handed every other photo's matches for each photo left out. "ranked once": as it is, the matches read
out once, each category's detections ranked once and a photo's own dropped from the ranking, only the categories it
holds accumulated again. `--afresh`: `evaluate_predictions` on each set (quadratic in the photos, the way before
eval/left_out.py). Checks every way gives the same numbers, and prints the times, their ratios and how each grows
with the photos. Then times what `choose-tiles` scored twice for the chosen scale, once for the choice and again for
its refinement (eval/tile_choice.py, `scores_of`: the whole evaluation and the left-out scores of one prediction
file), which it now scores once. Run it with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import faster_coco_eval.faster_eval_api_cpp as coco_cpp
import numpy as np
from eval_speed import GT_PATH, make_data
from faster_coco_eval import COCO, COCOeval_faster

from bbuvl.data.faults import Faults
from bbuvl.eval import left_out
from bbuvl.eval.left_out import per_category_left_out
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.tile_choice import scores_of

KEYS = ("AP", "AP50", "gt", "pred")


def afresh(records: list, lines: list, faults: Faults) -> list[dict]:
    """Each set of n - 1 photos scored by a whole evaluation, as choose-tiles scored them before eval/left_out.py."""
    return [{c: {k: m[k] for k in KEYS} for c, m in evaluate_predictions(
        records[:i] + records[i + 1:], GT_PATH, lines, None, level=1, faults=faults).metrics["per_category"].items()}
        for i in range(len(records))]


def reaccumulating(gt: dict[str, Any], dets: list[dict[str, Any]]) -> Any:
    """eval/left_out.py's `_accumulator` as it was: every other photo's matches handed to faster-coco-eval's
    accumulation again for each photo left out, every category accumulated."""
    annotations = [{**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(dets, start=1)]
    coco_gt = COCO({**gt, "annotations": [dict(a) for a in gt["annotations"]]}, print_function=left_out._quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": annotations},
                   print_function=left_out._quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=left_out._quiet, separate_eval=True)
    ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = ev.params.areaRng[:1], ev.params.areaRngLbl[:1], [100]
    ev.evaluate()
    params, evaluated = ev._paramsEval, ev._evalImgs_cpp
    photos, cat_ids = len(params.imgIds), list(params.catIds)
    t50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))

    def accumulate(position: int) -> dict[int, dict[str, float | None]]:
        others = copy.copy(params)
        others.imgIds = params.imgIds[:position] + params.imgIds[position + 1:]
        kept = [e for start in range(0, len(evaluated), photos)
                for e in (*evaluated[start:start + position], *evaluated[start + position + 1:start + photos])]
        precision = np.asarray(coco_cpp.COCOevalAccumulate(others, kept)["precision"])[:, :, :, 0, -1]
        return {c: {"AP": left_out._mean_valid(precision[:, :, k]), "AP50": left_out._mean_valid(precision[t50, :, k])}
                for k, c in enumerate(cat_ids)}

    return accumulate


def timed(run: Any) -> tuple[Any, float]:
    """`run()`'s answer and the CPU seconds it took."""
    t = time.process_time()
    answer = run()
    return answer, time.process_time() - t


def main() -> None:
    """Time each way at each number of photos; fail when their numbers differ."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="50,100,200", help="comma-separated numbers of validation photos")
    ap.add_argument("--boxes", type=int, default=15, help="mean boxes per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--afresh", action="store_true", help="also score each set of n - 1 photos afresh (slow)")
    args = ap.parse_args()
    sizes = [int(n) for n in args.photos.split(",")]
    if any(n < 2 for n in sizes):
        ap.error(f"--photos must each be at least 2 (one photo has no other to score), got {args.photos}")
    faults = Faults.load()
    ranked_once = left_out._accumulator
    print(f"{'photos':>6} {'re-accumulated s':>17} {'ranked once s':>14} {'ratio':>7}" + (f" {'afresh s':>9}" if args.afresh else ""))
    before: tuple[int, float, float] | None = None
    for n in sizes:
        records, lines = make_data(n, args.boxes, args.seed)
        per_category_left_out(records[:3], GT_PATH, lines[:3], None, 1, faults)  # imports and first calls, untimed
        left_out._accumulator = reaccumulating
        try:
            old, old_s = timed(lambda: per_category_left_out(records, GT_PATH, lines, None, 1, faults))
        finally:
            left_out._accumulator = ranked_once
        new, new_s = timed(lambda: per_category_left_out(records, GT_PATH, lines, None, 1, faults))
        if old != new:
            raise SystemExit(f"{n} photos: ranked once, the left-out scores differ from accumulating them again")
        fresh = ""
        if args.afresh:
            scored, fresh_s = timed(lambda: afresh(records, lines, faults))
            if scored != new:
                raise SystemExit(f"{n} photos: the left-out scores differ from scoring each set afresh")
            fresh = f" {fresh_s:>9.2f}"
        grows = ""
        if before is not None:
            m, old_m, new_m = before
            grows = f"   x{n / m:g} photos: re-accumulated x{old_s / old_m:.1f}, ranked once x{new_s / new_m:.1f}"
        print(f"{n:>6} {old_s:>17.2f} {new_s:>14.2f} {old_s / new_s:>6.1f}x{fresh}{grows}")
        before = (n, old_s, new_s)
    print("numbers: identical" + (" (and to scoring afresh)" if args.afresh else ""))
    n = sizes[-1]
    records, lines = make_data(n, args.boxes, args.seed)
    # The constant-box prior is searched once a process for the same photos (eval/metrics.py), by the first candidate
    evaluate_predictions(records, GT_PATH, lines, None, level=1, faults=faults)
    _, once = timed(lambda: scores_of(records, GT_PATH, None, lines, faults))
    print(f"choose-tiles with --refine, scoring the chosen scale's predictions on {n} photos (CPU s): "
          f"before 2 x {once:.2f} = {2 * once:.2f}, now {once:.2f}")


if __name__ == "__main__":
    main()
