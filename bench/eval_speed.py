"""Benchmark `bbuvl eval`'s metric computation against pycocotools on the same synthetic data, in one run.

    python bench/eval_speed.py                        # 5,000 photos x ~20 boxes
    python bench/eval_speed.py --images 1000 --boxes 10

Builds random ground-truth records (no image files are needed) and perturbed predictions (jittered
boxes, swapped labels, misses, false positives), then times:
  bbuvl      everything `bbuvl eval` computes after reading its files: pairing by path, COCO AP
             class-aware and class-agnostic (faster-coco-eval), matching, label accuracy, duplicates;
  pycocotools the same two COCO evaluations (class-aware, then every label as one class), as users run it
             (garbage collector on; bbuvl pauses it during an evaluation, eval/collector.py).
Also times bbuvl's COCO part alone (the two evaluations, without pairing, matching and the prior), and
checks that AP, AP50, AP75 and the class-agnostic AP equal pycocotools' exactly. Prints both ratios:
end to end against pycocotools, and the COCO part against pycocotools. Run it with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time
from pathlib import Path

import numpy as np

from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.coco_metrics import coco_detections, coco_evaluate, coco_ground_truth
from bbuvl.eval.collector import collector_paused
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import PredictionLine

LABELS = [
    "螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误", "螺丝连接点/CPRI光缆和BBU连接点/连接正确",
    "螺丝连接点/地排处螺丝/连接正确", "bbu基带处理单元/华为", "bbu基带处理单元/中兴", "挡风板/已安装", "挡风板/未安装",
    "机柜空间/满载", "标签贴纸", "线缆",
]
GT_PATH = Path("/nonexistent/bench/val.jsonl")  # paths are only compared, never opened


def make_data(n_images: int, boxes: int, seed: int) -> tuple[list[ImageRecord], list[PredictionLine]]:
    """Random records with ~`boxes` objects each and perturbed predictions for them."""
    rng = np.random.default_rng(seed)
    records, lines = [], []
    for i in range(n_images):
        w, h = int(rng.integers(640, 1920)), int(rng.integers(480, 1440))
        n = int(rng.poisson(boxes))
        bw, bh = rng.uniform(8, w / 4, n), rng.uniform(8, h / 4, n)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        labels = rng.choice(LABELS, n)
        objects = [ObjectAnn.model_construct(bbox_2d=[x[k], y[k], x[k] + bw[k], y[k] + bh[k]], desc=str(labels[k]), extra=None)
                   for k in range(n)]
        image = f"images/{i:05d}.jpg"
        records.append(ImageRecord.model_construct(images=[image], width=w, height=h, objects=objects, id=None, source=None))

        keep = rng.random(n) > 0.1
        jitter = rng.normal(0, 0.05, (n, 4)) * np.stack([bw, bh, bw, bh], axis=1)
        preds = []
        for k in np.flatnonzero(keep):
            x1, y1, x2, y2 = np.array([x[k], y[k], x[k] + bw[k], y[k] + bh[k]]) + jitter[k]
            label = str(labels[k]) if rng.random() < 0.85 else str(rng.choice(LABELS))
            preds.append({"bbox_2d": [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], "label": label,
                          "score": float(rng.random())})
        for _ in range(int(rng.poisson(2))):
            fx, fy = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            preds.append({"bbox_2d": [fx, fy, fx + rng.uniform(8, 200), fy + rng.uniform(8, 200)],
                          "label": str(rng.choice(LABELS)), "score": float(rng.random())})
        lines.append(PredictionLine(line=i + 1, image=image, width=w, height=h, objects=preds))
    return records, lines


def pycocotools_eval(gt: dict, dets: list[dict]) -> np.ndarray:
    """pycocotools' COCO + loadRes + evaluate + accumulate + summarize; returns the 12 stats."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def one_class(gt: dict, dets: list[dict]) -> tuple[dict, list[dict]]:
    """Every label as one class (what bbuvl's class-agnostic AP evaluates)."""
    gt1 = {**gt, "categories": [{"id": 1, "name": "object"}],
           "annotations": [{**a, "category_id": 1} for a in gt["annotations"]]}
    return gt1, [{**d, "category_id": 1} for d in dets]


def warm_up(records: list[ImageRecord], lines: list[PredictionLine]) -> None:
    """Both sides once on a few photos, untimed: the libraries they import on first use (scikit-learn for the
    verdict's ROC AUC alone took 8-10 s on the shared 2-core machine) are the process's cost, not the evaluation's,
    and were counted in whichever side ran first."""
    few = slice(0, min(50, len(records)))
    evaluate_predictions(records[few], GT_PATH, lines[few], None)
    gt = coco_ground_truth(records[few])
    pycocotools_eval(gt, coco_detections(gt, [p.objects for p in lines[few]]))


def main() -> None:
    """Build the data, time both sides once each, print the times, their ratio and the AP differences."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--boxes", type=int, default=20, help="mean boxes per photo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    records, lines = make_data(args.images, args.boxes, args.seed)
    n_gt = sum(len(r.objects) for r in records)
    n_pred = sum(len(p.objects) for p in lines)
    print(f"data: {len(records)} photos, {n_gt} ground-truth boxes, {n_pred} predictions "
          f"({time.perf_counter() - t:.1f} s to build, not timed)")

    # Inputs for pycocotools, built outside the timed region (as a user would load them from JSON).
    gt = coco_ground_truth(records)
    dets = coco_detections(gt, [p.objects for p in lines])
    gt1, dets1 = one_class(gt, dets)
    warm_up(records, lines)

    t = time.perf_counter()
    evaluation = evaluate_predictions(records, GT_PATH, lines, None)
    bbuvl_full = time.perf_counter() - t

    t = time.perf_counter()
    ref_aware = pycocotools_eval(copy.deepcopy(gt), copy.deepcopy(dets))
    pyc_aware = time.perf_counter() - t
    t = time.perf_counter()
    ref_agnostic = pycocotools_eval(copy.deepcopy(gt1), copy.deepcopy(dets1))
    pyc_both = pyc_aware + time.perf_counter() - t

    t = time.perf_counter()
    with collector_paused():  # as evaluate_predictions runs it
        coco_evaluate(records, [p.objects for p in lines])
    bbuvl_coco = time.perf_counter() - t

    m, agn = evaluation.metrics, evaluation.coco.agnostic
    diffs = {
        "AP": abs(m["AP"] - ref_aware[0]), "AP50": abs(m["AP50"] - ref_aware[1]), "AP75": abs(m["AP75"] - ref_aware[2]),
        "AP_agnostic": abs(agn["AP"] - ref_agnostic[0]),
    }
    print(f"AP {m['AP']:.4f}  AP50 {m['AP50']:.4f}  AP75 {m['AP75']:.4f}  AP_agnostic {agn['AP']:.4f}")
    print("max |bbuvl - pycocotools|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print(f"bbuvl eval, end to end (pairing, COCO aware & agnostic, matching, prior): {bbuvl_full:7.2f} s")
    print(f"bbuvl eval, COCO part alone (aware & agnostic):                         {bbuvl_coco:7.2f} s")
    print(f"pycocotools (COCO aware & agnostic):                                    {pyc_both:7.2f} s"
          f"  (class-aware only {pyc_aware:.2f} s)")
    print(f"ratio pycocotools / bbuvl eval end to end:                              {pyc_both / bbuvl_full:7.2f} x")
    print(f"ratio pycocotools / bbuvl COCO part:                                    {pyc_both / bbuvl_coco:7.2f} x")
    print(f"everything but COCO (pairing, matching, faults, prior): {bbuvl_full - bbuvl_coco:.2f} s, "
          f"{100 * (bbuvl_full - bbuvl_coco) / bbuvl_coco:.0f}% of the COCO part")
    if max(diffs.values()) != 0:
        raise SystemExit("AP differs from pycocotools")

if __name__ == "__main__":
    main()
