"""The jackknife `bbuvl choose-tiles` reads (each validation photo left out in turn), scored afresh vs from one COCO
evaluation (eval/left_out.py), side by side in one run at several numbers of photos.

    python bench/jackknife.py                       # 50, 100 and 200 photos x ~15 boxes
    python bench/jackknife.py --photos 100,400 --boxes 10

Builds random ground truth and perturbed predictions (bench/eval_speed.py's; no image files are needed), then times,
in CPU seconds, what choose-tiles computes for one candidate scale's spread: per-category AP50 at level 1 of every set
of n - 1 photos, once as it was (`evaluate_predictions` on each set: quadratic in the photos) and once from one
matching of all of them (`per_category_left_out`), checks both give the same numbers, and prints the times, their
ratio and how each grows with the photos. Run it with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import time

from eval_speed import GT_PATH, make_data

from bbuvl.data.faults import Faults
from bbuvl.eval.left_out import per_category_left_out
from bbuvl.eval.metrics import evaluate_predictions

KEYS = ("AP", "AP50", "gt", "pred")


def afresh(records: list, lines: list, faults: Faults) -> list[dict]:
    """Each set of n - 1 photos scored by a whole evaluation, as choose-tiles scored them before eval/left_out.py."""
    return [{c: {k: m[k] for k in KEYS} for c, m in evaluate_predictions(
        records[:i] + records[i + 1:], GT_PATH, lines, None, level=1, faults=faults).metrics["per_category"].items()}
        for i in range(len(records))]


def main() -> None:
    """Time both ways at each number of photos; fail when their numbers differ."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="50,100,200", help="comma-separated numbers of validation photos")
    ap.add_argument("--boxes", type=int, default=15, help="mean boxes per photo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(n) for n in args.photos.split(",")]
    if any(n < 2 for n in sizes):
        ap.error(f"--photos must each be at least 2 (one photo has no other to score), got {args.photos}")
    faults = Faults.load()
    print(f"{'photos':>6} {'afresh s':>9} {'one evaluation s':>17} {'ratio':>7}")
    before: tuple[int, float, float] | None = None
    for n in sizes:
        records, lines = make_data(n, args.boxes, args.seed)
        t = time.process_time()
        old = afresh(records, lines, faults)
        old_s = time.process_time() - t
        t = time.process_time()
        new = per_category_left_out(records, GT_PATH, lines, None, 1, faults)
        new_s = time.process_time() - t
        if old != new:
            raise SystemExit(f"{n} photos: the left-out scores differ from scoring each set afresh")
        grows = ""
        if before is not None:
            m, old_m, new_m = before
            grows = f"   x{n / m:g} photos: afresh x{old_s / old_m:.1f}, one evaluation x{new_s / new_m:.1f}"
        print(f"{n:>6} {old_s:>9.2f} {new_s:>17.2f} {old_s / new_s:>6.0f}x{grows}")
        before = (n, old_s, new_s)


if __name__ == "__main__":
    main()
