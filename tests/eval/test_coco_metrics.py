"""COCO metrics equal pycocotools' on randomly perturbed predictions, empty photos and empty answers included."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.coco_metrics import STAT_NAMES, coco_evaluate

LABELS = [
    "螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误", "螺丝连接点/地排处螺丝/连接正确",
    "bbu基带处理单元/华为", "bbu基带处理单元/中兴", "挡风板/已安装", "标签贴纸",
]


def random_records(rng: np.random.Generator, n: int, empty_share: float = 0.2, max_objects: int = 12) -> list[ImageRecord]:
    records = []
    for i in range(n):
        w, h = int(rng.integers(200, 1200)), int(rng.integers(200, 1200))
        objects = []
        if rng.random() >= empty_share:
            for _ in range(int(rng.integers(1, max_objects + 1))):
                bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)  # sizes span small, medium and large
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                objects.append(ObjectAnn(bbox_2d=[x, y, x + bw, y + bh], desc=str(rng.choice(LABELS))))
        records.append(ImageRecord(images=[f"images/{i:04d}.jpg"], width=w, height=h, objects=objects))
    return records


def perturbed_predictions(rng: np.random.Generator, records: list[ImageRecord], empty_share: float = 0.15) -> list[list[dict]]:
    out = []
    for r in records:
        objects = []
        if rng.random() >= empty_share:
            for o in r.objects:
                if rng.random() < 0.15:
                    continue  # missed
                x1, y1, x2, y2 = o.bbox_2d
                s = rng.normal(0, 0.08 * max(x2 - x1, y2 - y1), 4)
                box = [min(x1 + s[0], x2 + s[2]), min(y1 + s[1], y2 + s[3]), max(x1 + s[0], x2 + s[2]), max(y1 + s[1], y2 + s[3])]
                label = o.desc if rng.random() < 0.8 else str(rng.choice(LABELS))
                objects.append({"bbox_2d": box, "label": label, "score": float(rng.random())})
            for _ in range(int(rng.poisson(1.5))):  # false positives, sometimes with a label absent from the ground truth
                x, y = rng.uniform(0, r.width * 0.8), rng.uniform(0, r.height * 0.8)
                label = str(rng.choice(LABELS + ["线缆"]))
                objects.append({"bbox_2d": [x, y, x + rng.uniform(2, 200), y + rng.uniform(2, 200)], "label": label,
                                "score": float(rng.random())})
        out.append(objects)
    return out


def reference(records: list[ImageRecord], predictions: list[list[dict]], level: int | None, agnostic: bool = False):
    """pycocotools on a COCO dict built here independently of bbuvl's converter (`agnostic`: every label one class)."""
    if agnostic:
        records = [r.model_copy(update={"objects": [o.model_copy(update={"desc": "object"}) for o in r.objects]}) for r in records]
        predictions = [[{**o, "label": "object"} for o in p] for p in predictions]
    names = sorted({label_at_level(o.desc, level) for r in records for o in r.objects})
    cat = {n: i for i, n in enumerate(names, start=1)}
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in cat.items()]}
    dets = []
    for image_id, (r, objects) in enumerate(zip(records, predictions), start=1):
        gt["images"].append({"id": image_id, "width": r.width, "height": r.height, "file_name": r.image})
        for o in r.objects:
            x1, y1, x2, y2 = o.bbox_2d
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id,
                                      "category_id": cat[label_at_level(o.desc, level)], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                      "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for o in objects:
            name = label_at_level(o["label"], level)
            if name not in cat:  # pycocotools ignores categories without ground truth; give them an id anyway
                cat[name] = len(cat) + 1
            x1, y1, x2, y2 = o["bbox_2d"]
            dets.append({"image_id": image_id, "category_id": cat[name], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": o["score"]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = RefCOCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = RefCOCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, cat


def assert_close(ours: float | None, ref: float) -> None:
    if ref < 0:
        assert ours is None
    else:
        assert ours is not None and abs(ours - ref) <= 1e-6, (ours, ref)


@pytest.mark.parametrize(("seed", "n", "level"), [(0, 40, None), (1, 25, None), (2, 60, 1), (3, 30, 2), (4, 5, None)])
def test_ap_equals_pycocotools_on_perturbed_predictions(seed, n, level):
    rng = np.random.default_rng(seed)
    records = random_records(rng, n)
    predictions = perturbed_predictions(rng, records)
    ours = coco_evaluate(records, predictions, level)
    ref, cat = reference(records, predictions, level)
    for name, value in zip(STAT_NAMES, ref.stats):
        assert_close(ours.summary[name], value)
    ref_agnostic, _ = reference(records, predictions, level, agnostic=True)
    for name, value in zip(STAT_NAMES, ref_agnostic.stats):
        assert_close(ours.agnostic[name], value)
    # per category: the mean of pycocotools' valid precisions in that category's column
    precision = ref.eval["precision"]
    for k, cid in enumerate(ref.params.catIds):
        name = next(n for n, i in cat.items() if i == cid)
        column = precision[:, :, k, 0, -1]
        expected = column[column > -1].mean() if (column > -1).any() else -1
        assert_close(ours.per_category[name]["AP"], expected)


def test_photos_without_objects_and_answers_without_boxes_are_counted():
    rng = np.random.default_rng(7)
    records = random_records(rng, 30, empty_share=0.5)
    predictions = perturbed_predictions(rng, records, empty_share=0.5)
    assert any(not r.objects for r in records) and any(not p for p in predictions)
    ours = coco_evaluate(records, predictions)
    ref, _ = reference(records, predictions, None)
    for name in ("AP", "AP50", "AP75"):
        assert_close(ours.summary[name], ref.stats[STAT_NAMES.index(name)])


def test_no_predictions_at_all_gives_zero_ap_not_an_error():
    records = random_records(np.random.default_rng(8), 10, empty_share=0.0)
    ours = coco_evaluate(records, [[] for _ in records])
    assert ours.summary["AP"] == 0.0 and ours.summary["AP50"] == 0.0 and ours.agnostic["AP"] == 0.0


def test_no_ground_truth_objects_gives_undefined_ap():
    records = [ImageRecord(images=["a.jpg"], width=100, height=100)]
    ours = coco_evaluate(records, [[{"bbox_2d": [1, 1, 50, 50], "label": "标签贴纸", "score": 0.9}]])
    # Every statistic a category gets elsewhere, undefined: scripts reading APs or AR100 met a KeyError here
    assert ours.summary["AP"] is None and ours.per_category["标签贴纸"] == {
        "AP": None, "AP50": None, "AP75": None, "APs": None, "APm": None, "APl": None, "AR100": None, "gt": 0, "pred": 1}


def test_perfect_predictions_score_one_and_area_ranges_use_pixels():
    # 20x20 px boxes are "small" (< 32²) whatever the image size; 200x200 px are "large" (> 96²).
    records = [
        ImageRecord(images=["a.jpg"], width=4000, height=3000, objects=[ObjectAnn(bbox_2d=[10, 10, 30, 30], desc="标签贴纸")]),
        ImageRecord(images=["b.jpg"], width=300, height=300, objects=[ObjectAnn(bbox_2d=[50, 50, 250, 250], desc="挡风板/已安装")]),
    ]
    predictions = [[{"bbox_2d": o.bbox_2d, "label": o.desc, "score": 1.0} for o in r.objects] for r in records]
    ours = coco_evaluate(records, predictions)
    assert ours.summary["AP"] == pytest.approx(1.0) and ours.summary["APs"] == pytest.approx(1.0)
    assert ours.summary["APl"] == pytest.approx(1.0) and ours.summary["APm"] is None
    assert ours.per_category["标签贴纸"]["APs"] == pytest.approx(1.0) and ours.per_category["标签贴纸"]["APl"] is None
    assert ours.curves["iou_0.50"]["mean"][-1] == pytest.approx(1.0)


def test_level_merges_categories_into_their_parent():
    records = [ImageRecord(images=["a.jpg"], width=200, height=200, objects=[
        ObjectAnn(bbox_2d=[10, 10, 60, 60], desc="螺丝连接点/BBU安装螺丝/连接正确"),
        ObjectAnn(bbox_2d=[100, 100, 160, 160], desc="螺丝连接点/地排处螺丝/连接错误"),
    ])]
    wrong_state = [[{"bbox_2d": [10, 10, 60, 60], "label": "螺丝连接点/BBU安装螺丝/连接错误", "score": 0.9},
                    {"bbox_2d": [100, 100, 160, 160], "label": "螺丝连接点/地排处螺丝/连接正确", "score": 0.8}]]
    assert coco_evaluate(records, wrong_state, level=None).summary["AP"] == 0.0
    by_category = coco_evaluate(records, wrong_state, level=1)
    assert by_category.summary["AP"] == pytest.approx(1.0)
    assert list(by_category.per_category) == ["螺丝连接点"]
    assert set(coco_evaluate(records, wrong_state, level=2).per_category) == {"螺丝连接点/BBU安装螺丝", "螺丝连接点/地排处螺丝"}


def test_precision_recall_curve_is_the_cocoeval_curve_at_iou_half():
    rng = np.random.default_rng(11)
    records = random_records(rng, 20, empty_share=0.0)
    predictions = perturbed_predictions(rng, records, empty_share=0.0)
    ours = coco_evaluate(records, predictions)
    ref, _ = reference(records, predictions, None)
    p = ref.eval["precision"][0, :, :, 0, -1]
    expected = [col[col > -1].mean() for col in p]
    assert len(ours.curves["recall"]) == 101
    assert np.allclose(ours.curves["iou_0.50"]["mean"], expected, atol=1e-9)


# --- each category's numbers and both curves, where the choices of IoU and detections per photo show -----------------

CROWD, BAFFLE, GHOST = "标签贴纸", "挡风板/已安装", "线缆"  # GHOST is predicted, never in the truth


def _shifted(box: list[float], dx: float, score: float, label: str) -> dict:
    return {"bbox_2d": [box[0] + dx, box[1], box[2] + dx, box[3]], "label": label, "score": score}


def thresholds_that_matter() -> tuple[list[ImageRecord], list[list[dict]]]:
    """Photos whose per-category numbers move with every reading choice: 12 boxes of one category in one photo (more
    than COCO's 10 and 1 detections per photo), boxes found at IoU 0.72 (between the 0.70 and 0.75 thresholds) and
    0.60 (between 0.50 and 0.75), small, medium and large boxes, and false alarms scored among the hits. No two
    scores are equal: COCO ranks ties in photo order, which coco_evaluate sets (eval/order.py) and the reference not."""
    # Photo 1: 12 CROWD boxes of 100x100 (large) and 20x20 (small). Shifting a box of side w by dx keeps IoU
    # (w - dx) / (w + dx): 16 px of 100 is 0.724, 25 px is 0.60; 1 px of 20 is 0.905.
    crowd = [[20.0 + 110 * (k % 6), 20.0 + 120 * (k // 6), 120.0 + 110 * (k % 6), 120.0 + 120 * (k // 6)]
             for k in range(10)] + [[20.0, 300.0, 40.0, 320.0], [60.0, 300.0, 80.0, 320.0]]
    shifts = [0, 16, 25, 0, 16, 16, 25, 0, 16, 25, 1, 0]
    # The two small boxes score lowest: they are the 11th and 12th detections, past COCO's 10 per photo.
    scores = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.2, 0.15]
    first = [_shifted(b, dx, s, CROWD) for b, dx, s in zip(crowd, shifts, scores)]
    first += [{"bbox_2d": [700.0, 400.0, 760.0, 460.0], "label": CROWD, "score": 0.88},  # a false alarm among the hits
              {"bbox_2d": [500.0, 500.0, 540.0, 540.0], "label": GHOST, "score": 0.52}]
    # Photo 2: 3 BAFFLE boxes of 50x50 (medium), found at IoU 0.724 (8 px of 50), 1.0 and 0.60 (12.5 px).
    baffles = [[10.0, 10.0, 60.0, 60.0], [100.0, 10.0, 150.0, 60.0], [10.0, 100.0, 60.0, 150.0]]
    second = [_shifted(baffles[0], 8, 0.92, BAFFLE), _shifted(baffles[1], 0, 0.42, BAFFLE),
              _shifted(baffles[2], 12.5, 0.72, BAFFLE), {"bbox_2d": [200.0, 200.0, 250.0, 250.0], "label": BAFFLE, "score": 0.82},
              _shifted(crowd[0], 0, 0.32, CROWD)]  # a CROWD box on a photo without one
    records = [
        ImageRecord(images=["crowd.jpg"], width=800, height=600, objects=[ObjectAnn(bbox_2d=b, desc=CROWD) for b in crowd]),
        ImageRecord(images=["baffles.jpg"], width=300, height=300, objects=[ObjectAnn(bbox_2d=b, desc=BAFFLE) for b in baffles]),
    ]
    return records, [first, second]


def test_every_number_of_every_category_is_cocos_for_that_category_alone():
    # pycocotools restricted to one category (params.catIds) is that category's own evaluation: its AP, AP50, AP75,
    # APs/m/l (stats 0-5) and AR100 (stat 8) are what METRICS.json's per_category must say.
    records, predictions = thresholds_that_matter()
    ours = coco_evaluate(records, predictions)
    ref, cat = reference(records, predictions, None)
    assert set(ours.per_category) == {CROWD, BAFFLE, GHOST}
    for name, cid in cat.items():
        alone = RefCOCOeval(ref.cocoGt, ref.cocoDt, "bbox")
        alone.params.catIds = [cid]
        with contextlib.redirect_stdout(io.StringIO()):
            alone.evaluate()
            alone.accumulate()
            alone.summarize()
        got = ours.per_category[name]
        for stat in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
            assert_close(got[stat], alone.stats[STAT_NAMES.index(stat)])
    crowd, baffle = ours.per_category[CROWD], ours.per_category[BAFFLE]
    assert (crowd["gt"], crowd["pred"], baffle["gt"], baffle["pred"]) == (12, 14, 3, 4)
    # The case reaches each choice: AP75 is not AP at IoU 0.70, AR100 is not AR1, AP at 100 per photo is not at 10
    t70 = int(np.argmin(np.abs(ref.params.iouThrs - 0.7)))
    k = ref.params.catIds.index(cat[CROWD])
    at_70 = ref.eval["precision"][t70, :, k, 0, -1]
    assert abs(crowd["AP75"] - at_70.mean()) > 0.05
    assert crowd["AR100"] - ref.eval["recall"][:, k, 0, 0].mean() > 0.5
    at_10 = ref.eval["precision"][:, :, k, 0, 1]
    assert crowd["AP"] - at_10.mean() > 0.01


def test_both_precision_recall_curves_are_cocos_at_their_iou_class_aware_and_agnostic():
    records, predictions = thresholds_that_matter()
    ours = coco_evaluate(records, predictions)
    ref, cat = reference(records, predictions, None)
    ref_agnostic, _ = reference(records, predictions, None, agnostic=True)
    names = {cid: name for name, cid in cat.items()}
    for iou in (0.5, 0.75):
        t = int(np.argmin(np.abs(ref.params.iouThrs - iou)))
        curve = ours.curves[f"iou_{iou:.2f}"]
        p = ref.eval["precision"][t, :, :, 0, -1]  # [R, K]
        assert np.allclose(curve["mean"], [col[col > -1].mean() for col in p], atol=1e-9)
        assert np.allclose(curve["agnostic"], ref_agnostic.eval["precision"][t, :, 0, 0, -1], atol=1e-9)
        per_category = {names[cid]: p[:, k] for k, cid in enumerate(ref.params.catIds) if (p[:, k] > -1).any()}
        assert set(curve["per_category"]) == set(per_category) == {CROWD, BAFFLE}
        for name, column in per_category.items():
            assert np.allclose(curve["per_category"][name], column, atol=1e-9)
    # The boxes found at IoU 0.60 and 0.72 make the two curves differ, the agnostic one too
    assert ours.curves["iou_0.50"]["agnostic"] != ours.curves["iou_0.75"]["agnostic"]


def test_evaluating_one_category_at_a_time_gives_cocoevals_one_pass_over_only_the_pairs_holding_boxes():
    """`evaluate_by_category` evaluates each category over the photos that hold it, not every photo for every
    category (their C++ results held 670 MB at 16,000 photos of 19 labels, bench/eval_memory.py): the arrays are the
    one pass's to the bit, and the pairs evaluated are those with a box on either side."""
    from faster_coco_eval import COCO, COCOeval_faster

    from bbuvl.eval.coco_metrics import _quiet, coco_detections, coco_ground_truth, evaluate_by_category

    rng = np.random.default_rng(7)
    records = random_records(rng, 120, max_objects=3)  # a few boxes a photo, as most are
    gt = coco_ground_truth(records)
    dets = coco_detections(gt, perturbed_predictions(rng, records))
    held = {(a["image_id"], a["category_id"]) for a in gt["annotations"]} | {(d["image_id"], d["category_id"]) for d in dets}

    def evaluator() -> COCOeval_faster:
        coco_gt = COCO({**gt, "annotations": [dict(a) for a in gt["annotations"]]}, print_function=_quiet)
        coco_dt = COCO({"images": gt["images"], "categories": gt["categories"],
                        "annotations": [{**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
                                        for i, d in enumerate(dets, start=1)]}, print_function=_quiet)
        return COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_quiet)

    whole, by_category = evaluator(), evaluator()
    whole.evaluate()
    whole.accumulate()
    whole.summarize()
    pairs = evaluate_by_category(by_category)
    by_category.summarize()
    assert len(gt["categories"]) == len(LABELS) + 1  # a label only predicted is a category too
    assert pairs == len(held) < len(gt["images"]) * len(gt["categories"]) / 2
    assert list(by_category.params.catIds) == list(whole.params.catIds)
    assert list(by_category.params.imgIds) == list(whole.params.imgIds)
    for key in ("precision", "recall", "scores"):
        assert by_category.eval[key].shape == whole.eval[key].shape
        assert np.array_equal(by_category.eval[key], whole.eval[key]), key
    assert np.array_equal(by_category.stats, whole.stats)
