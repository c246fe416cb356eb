"""Tiles and zoom: regions cover the photo, boxes come back in stored pixels, merging finds each object once."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.scale import TrainingScale
from bbuvl.data.schema import read_records
from bbuvl.data.families import FAMILIES
from bbuvl.data.labels import label_at_level
from bbuvl.data.regions import grid_regions, parse_grid, strided_regions
from bbuvl.infer.options import PredictOptions
from bbuvl.infer.tiles import (
    TiledDetection,
    TilePlan,
    answering,
    auto_grid,
    check_containers,
    container_regions,
    crop_region,
    intersection_over_smaller,
    merge_detections,
    part_zoom,
    plan_cost,
    predict_regions,
    predict_tiled,
    region_zoom,
    to_photo,
    zoomed_size,
)
from bbuvl.model.vlm import core_model

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"
BBU = "bbu基带处理单元/华为"


@pytest.mark.parametrize("size, cols, rows, overlap", [((448, 336), 2, 2, 24), ((4032, 3024), 4, 3, 100), ((100, 90), 3, 1, 0),
                                                        ((640, 480), 1, 1, 50)])
def test_grid_tiles_cover_the_photo_with_the_asked_overlap(size, cols, rows, overlap):
    tiles = grid_regions(size, cols, rows, overlap)
    assert len(tiles) == cols * rows
    covered = [[False] * size[0] for _ in range(0, size[1], 7)]
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]
        for yi, y in enumerate(range(0, size[1], 7)):
            if y1 <= y < y2:
                covered[yi][x1:x2] = [True] * (x2 - x1)
    assert all(all(row) for row in covered)
    xs = sorted({(t[0], t[2]) for t in tiles})
    for (a1, a2), (b1, b2) in zip(xs, xs[1:]):
        assert a2 - b1 >= overlap - 1  # neighbours share at least the overlap (rounding takes at most a pixel)


def test_a_bad_grid_is_refused_with_its_text():
    with pytest.raises(ValueError, match="COLSxROWS.*'two'"):
        parse_grid("two")
    with pytest.raises(ValueError, match="1..16"):
        parse_grid("0x2")
    assert parse_grid("3X2") == (3, 2)
    assert parse_grid(" 02x2 ") == (2, 2)
    # int() took each of these as a number
    for text in ("1_0x1", "+2x2", "\uff13x2", "2.0x2", "2x2x2"):
        with pytest.raises(ValueError, match="COLSxROWS"):
            parse_grid(text)


def tiled(box, label=SCREW, score=0.9, zoom=2.0, cut=False, whole=False):
    return TiledDetection(list(map(float, box)), label, score, zoom, cut, whole)


def test_an_object_cut_by_a_tile_border_is_found_once_with_its_whole_box():
    # Tile A holds the screw whole; tile B (overlapping) sees its left part, which ends at B's inner edge.
    whole, part = tiled((200, 100, 224, 124), score=0.8), tiled((200, 100, 212, 124), score=0.95, cut=True)
    merged = merge_detections([part, whole])
    assert [(d.bbox_2d, d.score, d.cut) for d in merged] == [([200, 100, 224, 124], 0.95, False)]


def test_two_neighbouring_objects_of_one_label_stay_two_and_other_labels_never_merge():
    a, b = tiled((0, 0, 20, 20)), tiled((22, 0, 42, 20))
    other = tiled((0, 0, 20, 20), label=BBU)
    assert len(merge_detections([a, b, other])) == 3


def test_a_zero_area_box_is_kept_once_and_does_not_break_the_merge():
    # A head box clipped to a region's edge can have no width: it overlaps nothing, not even itself.
    flat, cut_flat = tiled((30, 10, 30, 40)), tiled((50, 10, 50, 40), cut=True)
    merged = merge_detections([tiled((0, 0, 20, 20)), flat, cut_flat])
    assert sorted(d.bbox_2d for d in merged) == [[0, 0, 20, 20], [30, 10, 30, 40], [50, 10, 50, 40]]


def test_a_photo_sized_object_cut_by_every_tile_is_kept_as_the_union_of_its_parts():
    parts = [tiled(r, label=BBU, cut=True) for r in [(10, 10, 250, 190), (200, 10, 440, 190), (10, 150, 250, 330),
                                                       (200, 150, 440, 330)]]
    merged = merge_detections(parts)
    assert [d.bbox_2d for d in merged] == [[10, 10, 440, 330]]
    whole = tiled((12, 8, 436, 332), label=BBU, score=0.5, zoom=1.0)  # a whole-photo pass saw it complete
    assert [d.bbox_2d for d in merge_detections([*parts, whole])] == [[12, 8, 436, 332]]


def test_of_two_complete_boxes_the_more_magnified_one_wins():
    coarse, fine = tiled((100, 100, 130, 130), score=0.9, zoom=1.0), tiled((102, 101, 126, 125), score=0.6, zoom=2.0)
    assert [d.bbox_2d for d in merge_detections([coarse, fine])] == [[102, 101, 126, 125]]


def _merge_pair_by_pair(found, min_overlap=0.6):
    """merge_detections as a pair-by-pair rule: parts joined by union-find over every pair, then groups read off an
    N x N matrix of overlaps and labels."""
    parts = [d for d in found if d.cut]
    parent = list(range(len(parts)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            a, b = np.array(parts[i].bbox_2d), np.array(parts[j].bbox_2d)
            ox, oy = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            if parts[i].label == parts[j].label and ox > 0 and oy > 0 and max(
                    ox / max(1e-9, min(a[2] - a[0], b[2] - b[0])), oy / max(1e-9, min(a[3] - a[1], b[3] - b[1]))) >= min_overlap:
                parent[root(i)] = root(j)
    groups = {}
    for i in range(len(parts)):
        groups.setdefault(root(i), []).append(parts[i])
    found = [d for d in found if not d.cut] + [
        TiledDetection([min(d.bbox_2d[0] for d in g), min(d.bbox_2d[1] for d in g), max(d.bbox_2d[2] for d in g),
                        max(d.bbox_2d[3] for d in g)], g[0].label, max(d.score for d in g), max(d.zoom for d in g), True)
        for g in groups.values()]
    order = sorted(range(len(found)), key=lambda i: -found[i].score)
    boxes = np.array([found[i].bbox_2d for i in order]).reshape(-1, 4)
    same = np.array([[found[i].label == found[j].label for j in order] for i in order], dtype=bool).reshape(len(order), len(order))
    linked = ((intersection_over_smaller(boxes, boxes) >= min_overlap) & same) | np.eye(len(order), dtype=bool)
    taken = np.zeros(len(order), dtype=bool)
    merged = []
    for i in range(len(order)):
        if not taken[i]:
            members = np.flatnonzero(linked[i] & ~taken)
            taken[members] = True
            group = [found[order[m]] for m in members]
            complete = [d for d in group if not d.cut]
            box = (list(max(complete, key=lambda d: (round(d.zoom, 6), d.score)).bbox_2d) if complete else
                   [min(d.bbox_2d[0] for d in group), min(d.bbox_2d[1] for d in group),
                    max(d.bbox_2d[2] for d in group), max(d.bbox_2d[3] for d in group)])
            merged.append(TiledDetection(box, group[0].label, group[0].score, max(d.zoom for d in group), not complete))
    return merged


@pytest.mark.parametrize("seed", range(30))
def test_merging_groups_and_joins_as_the_pair_by_pair_rule_with_ties_and_empty_boxes(seed):
    # Each group's overlaps are read one row at a time among the free boxes of its label, where an N x N matrix of
    # overlaps and of labels took 0.7 s for 2,000 boxes
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(int(rng.integers(0, 80))):
        x, y = rng.integers(0, 12, 2) * 5.0
        w, h = rng.integers(0, 5, 2) * 5.0  # some empty, many equal
        found.append(TiledDetection([x, y, x + w, y + h], ["a", "b", "c"][rng.integers(0, 3)],
                                    float(rng.integers(0, 4)) / 4, float(rng.choice([1.0, 2.0, 2.0000001])),
                                    bool(rng.random() < 0.5)))
    for min_overlap in (0.5, 0.6, 0.75):  # on a grid of 5 pixels, overlaps of 0.5 and 0.75 are common
        assert merge_detections(found, min_overlap) == _merge_pair_by_pair(found, min_overlap)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_boxes_from_tiles_come_back_in_stored_pixels_within_one_model_cell(family):
    rng = random.Random(family)
    for _ in range(200):
        contract = CoordinateContract(min_pixels=rng.choice([3136, 12544]), max_pixels=rng.choice([50176, 200704, 1003520]),
                                      family=family)
        size = (rng.randint(64, 4032), rng.randint(64, 3024))
        plan = TilePlan(grid=(rng.randint(1, 4), rng.randint(1, 4)), overlap=rng.random() * 0.3)
        fw, _ = contract.model_size(size)
        cell = contract.factor * size[0] / fw  # one cell of the whole photo's frame, in stored pixels
        for region in plan.tiles(size, contract) or [(0, 0, *size)]:
            crop = Image.new("RGB", zoomed_size(region, size, contract))  # what crop_region resizes the region to
            x1, y1 = rng.uniform(region[0], region[2] - 1), rng.uniform(region[1], region[3] - 1)
            box = [x1, y1, rng.uniform(x1 + 1, region[2]), rng.uniform(y1 + 1, region[3])]
            sx, sy = crop.size[0] / (region[2] - region[0]), crop.size[1] / (region[3] - region[1])
            in_crop = [(box[0] - region[0]) * sx, (box[1] - region[1]) * sy, (box[2] - region[0]) * sx, (box[3] - region[1]) * sy]
            answer = contract.to_model(in_crop, crop.size)  # what the model writes for it in the tile's frame
            back = to_photo(contract.to_stored(answer, crop.size), region, crop.size)
            assert max(abs(a - b) for a, b in zip(back, box)) <= cell, (family, size, region, box, back)


def test_auto_grid_shows_a_wide_photo_at_the_scale_the_checkpoint_trained_at():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    assert auto_grid((448, 336), contract, scale=1.0) == (1, 1)  # shown at full size already
    assert auto_grid((1792, 1344), contract, scale=1.0) == (4, 4)  # 4x the frame's side
    assert auto_grid((1792, 1344), contract, scale=0.5) == (2, 2)


@pytest.mark.parametrize("size, frame", [((640, 480), dict(min_pixels=50176, max_pixels=50176, max_vision_tokens=64)),
                                         ((1792, 1344), {})])
def test_auto_grid_cuts_no_tiles_of_a_photo_of_the_training_photos_own_size(size, frame):
    from bbuvl.data.schema import ImageRecord
    from bbuvl.data.scale import photo_scale

    contract = CoordinateContract(**frame)  # frames of another aspect than the photo: 252x168, 1148x840
    trained = photo_scale(ImageRecord(images=["p.jpg"], width=size[0], height=size[1], objects=[]), contract)
    assert auto_grid(size, contract, trained) == (1, 1)


@pytest.mark.parametrize("size", [(320, 240), (300, 200), (448, 336), (333, 444), (4032, 3024)])
def test_auto_grid_cuts_no_tiles_of_the_training_photos_own_size_at_the_scale_read_back(tmp_path, size):
    # training_scale.json rounds the scale to 4 decimals: 320x240 close-ups, shown at 1.0052985 in their 308x252
    # frame, are written 1.0053, and a photo of their own size was cut 2x2 (3x3 strided, 10x one pass).
    from bbuvl.data.scale import TrainingScale
    from bbuvl.data.schema import ImageRecord

    contract = CoordinateContract(min_pixels=12544, max_pixels=150528, max_vision_tokens=192)  # configs/demo.yaml's
    TrainingScale.of([ImageRecord(images=["p.jpg"], width=size[0], height=size[1], objects=[])], contract).save(tmp_path)
    read_back = TrainingScale.load(tmp_path).median
    assert auto_grid(size, contract, read_back) == (1, 1)
    assert auto_grid((size[0] * 2, size[1] * 2), contract, read_back) == (2, 2)
    # Its one pass is the whole photo at its own frame, as without tiles: not rounded into another (336x252 for 308x252)
    whole = (0, 0, *size)
    assert zoomed_size(whole, size, contract) == contract.model_size(size)
    assert region_zoom(whole, size, contract) == 1.0
    assert plan_cost(size, TilePlan(auto=True, train_scale=read_back), contract) == contract.vision_tokens(size)


def test_tiles_a_stride_apart_keep_the_grids_size_and_show_each_part_whole_twice():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    size = (1792, 1344)
    grid = TilePlan(grid=(3, 3)).tiles(size, contract)
    strided = TilePlan(grid=(3, 3), stride=0.6).tiles(size, contract)
    side = (grid[0][2] - grid[0][0], grid[0][3] - grid[0][1])
    assert len(grid) == 9 and len(strided) == 16  # 4x4: the 3x3 grid's tiles, starting 0.6 of a side apart or less
    assert {(r[2] - r[0], r[3] - r[1]) for r in strided} == {side}
    xs, ys = sorted({r[0] for r in strided}), sorted({r[1] for r in strided})
    assert xs[0] == ys[0] == 0 and xs[-1] + side[0] == size[0] and ys[-1] + side[1] == size[1]
    assert all(b - a <= 0.6 * side[0] for a, b in zip(xs, xs[1:])) and all(b - a <= 0.6 * side[1] for a, b in zip(ys, ys[1:]))
    # A part up to 0.4 of a tile wide lies whole in some tile wherever it is (in the grid, only up to its overlap),
    # and a screw-sized one (a tenth) in two tiles over a third of the photo's width (the grid: a few pixels).
    def holding(regions: list, x: int, w: int) -> int:
        return sum(1 for r in regions if r[1] == 0 and r[0] <= x and x + w <= r[2])

    wide, screw = int(0.4 * side[0]) - 1, side[0] // 10
    assert all(holding(strided, x, wide) >= 1 for x in range(size[0] - wide))
    assert not all(holding(grid, x, wide) >= 1 for x in range(size[0] - wide))
    twice = [holding(strided, x, screw) >= 2 for x in range(size[0] - screw)]
    assert sum(twice) / len(twice) > 1 / 3
    assert sum(holding(grid, x, screw) >= 2 for x in range(size[0] - screw)) / len(twice) < 0.01
    # A stride the grid already meets adds nothing; auto strides the grid its scale picks.
    assert TilePlan(grid=(3, 3), stride=1.0).tiles(size, contract) == grid
    assert TilePlan(auto=True, train_scale=0.75, stride=0.6).tiles(size, contract) == strided
    assert TilePlan(grid=(1, 1), stride=0.5).tiles(size, contract) == []  # one tile is the whole photo: none


@pytest.mark.parametrize("stride", [0.0, -0.5, 1.5])
def test_a_stride_outside_a_tiles_side_is_refused(stride):
    with pytest.raises(ValueError, match=f"tile stride.*got {stride}"):
        strided_regions((1792, 1344), (642, 493), stride)


def test_zoom_regions_surround_the_containers_only():
    found = [tiled((100, 50, 300, 150), label=BBU, zoom=1.0), tiled((10, 10, 20, 20), zoom=1.0)]
    assert container_regions(found, ["bbu基带处理单元"], (448, 336), margin=0.1) == [(80, 40, 320, 160)]


def regions_of(predictor, mode):
    """Crops in, each crop's boxes (in its own pixels) and raw answer out: what `predict_tiled` calls."""
    return lambda crops, tiles: [([(d.bbox_2d, d.label, d.score) for d in r.objects], r.raw)
                                 for r in predictor.predict(crops, mode)]


def test_the_whole_photo_and_the_tiles_are_predicted_apart_and_answered_in_region_order():
    photo = Image.new("RGB", (400, 300))
    regions = [(0, 0, 200, 150), (0, 0, 400, 300), (200, 150, 400, 300)]
    calls = []

    def predict(crops, tiles):  # each crop answers one box as wide as itself, named after the call
        calls.append((len(crops), tiles))
        return [([([0.0, 0.0, float(c.size[0]), 10.0], "tile" if tiles else "whole", 0.5)], None) for c in crops]

    found, _ = predict_regions(predict, photo, regions, CoordinateContract(min_pixels=3136, max_pixels=448 * 336))
    assert calls == [(1, False), (2, True)]
    assert [(d.label, d.bbox_2d[0], d.bbox_2d[2]) for d in found] == [("tile", 0, 200), ("whole", 0, 400),
                                                                         ("tile", 200, 400)]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tile_queries_run_fewer_of_the_heads_queries_in_each_tile_and_all_in_the_whole_photo(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    every = dict(objectness_threshold=0.0, nms_iou=None, part_nms=None, labels_per_box=1, score_threshold=0.0)
    queries = predictor.model.detection_head.num_queries
    assert len(predictor.predict([photo], "head", queries=2, **every)[0].objects) == 2
    assert len(predictor.predict([photo], "head", **every)[0].objects) == queries
    seen = []

    def regions(crops, tiles):
        opts = predictor.options(tile_queries=2, **every).one_pass(tiles)
        found = predictor.predict(crops, "head", **{k: v for k, v in opts.model_dump().items() if k in every or k == "queries"})
        seen.append((tiles, [len(r.objects) for r in found]))
        return [([(d.bbox_2d, d.label, d.score) for d in r.objects], r.raw) for r in found]

    predict_tiled(regions, photo, TilePlan(grid=(2, 2), whole=True), predictor.contract)
    assert seen == [(False, [queries]), (True, [2, 2, 2, 2])]
    # Through `predict` itself: four tiles of one query each leave at most four objects after the merge
    tiled = dict(tiles="2x2", tile_whole=False, **every)
    assert len(predictor.predict([photo], "head", tile_queries=1, **tiled)[0].objects) <= 4
    assert len(predictor.predict([photo], "head", **tiled)[0].objects) > 4
    with pytest.raises(ValueError, match="'tile_queries'.*at most its"):
        predictor.options(tile_queries=queries + 1)


def test_a_single_whole_photo_region_predicts_what_predict_does(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    plain = predictor.predict([photo], "head")[0]
    found, cost = predict_regions(regions_of(predictor, "head"), photo, [(0, 0, *photo.size)], predictor.contract)
    assert [(d.bbox_2d, d.label, d.score) for d in found] == [(d.bbox_2d, d.label, d.score) for d in plain.objects]
    assert cost.vision_tokens == predictor.contract.vision_tokens(photo.size)


def test_a_tiled_pass_reports_its_regions_and_their_vision_tokens(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    result = predict_tiled(regions_of(predictor, "head"), photo, TilePlan(grid=(2, 2), whole=True), predictor.contract)
    assert len(result.regions) == 5 and result.regions[0] == (0, 0, *photo.size)
    assert result.vision_tokens == sum(predictor.contract.vision_tokens(crop_region(photo, r, predictor.contract).size)
                                       for r in result.regions)
    for d in result.objects:
        assert 0 <= d.bbox_2d[0] <= d.bbox_2d[2] <= photo.size[0] and 0 <= d.bbox_2d[1] <= d.bbox_2d[3] <= photo.size[1]


@pytest.mark.parametrize("mode", ["head", "name", "generate"])
def test_every_mode_predicts_with_tiles_and_zoom_through_the_one_api(predictor, small_dataset, mode):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    [tiled] = predictor.predict([photo], mode, tiles="2x2", tile_whole=True, zoom_containers=["机柜空间"],
                                max_new_tokens=24, objectness_threshold=0.3)
    [plain] = predictor.predict([photo], mode, max_new_tokens=24)
    assert (tiled.width, tiled.height) == photo.size
    assert tiled.vision_tokens >= 4 * plain.vision_tokens  # four tiles and the whole photo, each about one frame
    assert tiled.parse_ok is not None
    for d in tiled.objects:
        assert 0 <= d.bbox_2d[0] <= d.bbox_2d[2] <= photo.size[0] and 0 <= d.bbox_2d[1] <= d.bbox_2d[3] <= photo.size[1]


def test_a_misspelt_or_bad_tile_option_is_an_error(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    with pytest.raises(ValueError, match="tile_zoom"):
        predictor.predict([photo], "head", tile_zom=2)
    with pytest.raises(ValueError, match="COLSxROWS") as bad:
        predictor.predict([photo], "head", tiles="two")
    assert str(bad.value).count("'two'") == 1  # the value named once
    with pytest.raises(ValueError, match="tile_overlap.*got -0.5$"):  # pydantic's own message gets the value
        predictor.predict([photo], "head", tile_overlap=-0.5)
    for stride in (0.1, 1.2):
        with pytest.raises(ValueError, match=f"tile_stride.*got {stride}$"):
            predictor.predict([photo], "head", tile_stride=stride)


def test_auto_tiles_reuse_the_scale_the_checkpoint_trained_at(predictor, trained_checkpoint, small_dataset):
    saved = TrainingScale.load(trained_checkpoint)
    assert saved is not None and predictor.train_scale == saved.median
    assert saved == TrainingScale.of(read_records(small_dataset / "train.jsonl"), predictor.contract)
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    big = photo.resize((photo.width * 3, photo.height * 3))
    [tiled] = predictor.predict([big], "head", tiles="auto", tile_whole=False)
    plan = TilePlan(auto=True, whole=False, train_scale=saved.median)
    assert auto_grid(big.size, predictor.contract, saved.median) != (1, 1)
    assert tiled.vision_tokens == plan_cost(big.size, plan, predictor.contract)
    # An explicit tile_zoom is the scale the user asks for, over the checkpoint's.
    asked = TilePlan(auto=True, whole=False, zoom=0.25, train_scale=0.25)
    assert predictor.predict([big], "head", tiles="auto", tile_whole=False, tile_zoom=0.25)[0].vision_tokens == \
        plan_cost(big.size, asked, predictor.contract)
    assert PredictOptions.of(predictor.cfg.inference, tiles="auto").plan(1.5).train_scale == 1.5
    assert PredictOptions.of(predictor.cfg.inference, tiles="auto", tile_zoom=0.5).plan(1.5).train_scale == 0.5
    assert PredictOptions.of(predictor.cfg.inference, tiles="auto").plan(None).train_scale == 1.0


def test_the_whole_pass_answers_for_parts_a_tile_cannot_hold_and_the_tiles_for_the_rest():
    tile = (500, 400)
    whole_bbu = tiled((0, 0, 400, 80), label=BBU, zoom=1.0, whole=True)  # 0.8 of a tile's width
    whole_screw = tiled((10, 10, 30, 30), zoom=1.0, whole=True)
    tile_bbu_part = tiled((0, 0, 300, 80), label=BBU)  # a tile saw part of the BBU: 0.6 of its width
    tile_screw = tiled((12, 12, 31, 31))
    found = [whole_bbu, whole_screw, tile_bbu_part, tile_screw]
    assert answering(found, tile, TilePlan(grid=(2, 2), whole_above=0.5)) == [whole_bbu, tile_screw]
    assert answering(found, tile, TilePlan(grid=(2, 2))) == found  # no rule: everyone answers for everything
    assert answering(found, None, TilePlan(whole_above=0.5)) == found  # no tiles: the whole pass is all there is


def test_with_trained_sizes_the_whole_pass_answers_for_the_big_categories_and_the_tiles_for_the_small_ones():
    tile = (500, 400)
    whole_bbu = tiled((100, 100, 1300, 320), label=BBU, score=0.3, zoom=1.0, whole=True)
    piece = tiled((500, 150, 740, 240), label="bbu基带处理单元/中兴", score=0.2)  # a tile's view of part of it
    elsewhere = tiled((100, 600, 300, 700), label=BBU, score=0.2)  # a small BBU box from a tile
    screw_on_it = tiled((520, 160, 560, 200))
    whole_screws = tiled((500, 140, 900, 260), score=0.2, zoom=1.0, whole=True)  # a wrong big box of screws
    found = [whole_bbu, whole_screws, piece, elsewhere, screw_on_it]
    sides = ((BBU.split("/")[0], 270.0), (SCREW.split("/")[0], 60.0))  # trained: BBUs >= half a 388-px tile, screws not
    plan = TilePlan(grid=(4, 4), whole_above=0.5, whole_sides=sides)
    assert answering(found, tile, plan, 388.0) == [whole_bbu, screw_on_it]
    # At a larger tile frame no category is too big for a tile: the rule by box size alone.
    by_size = [whole_bbu, whole_screws, piece, elsewhere, screw_on_it]
    assert answering(found, tile, plan, 600.0) == by_size
    assert answering(found, tile, TilePlan(grid=(4, 4), whole_above=0.5), 388.0) == by_size  # sizes unknown
    # Without the category rule the merge groups the piece with the whole box and keeps the piece's box, the more magnified.
    assert [d.bbox_2d for d in merge_detections([whole_bbu, tiled(piece.bbox_2d, label=BBU, score=0.2)])] == [piece.bbox_2d]


def test_by_longest_side_a_long_thin_part_is_the_whole_pass_s_though_its_area_is_small():
    baffle = "挡风板/已安装"
    tile = (448, 336)
    whole_baffle = tiled((100, 400, 1330, 470), label=baffle, score=0.4, zoom=1.0, whole=True)
    tile_piece = tiled((0, 400, 200, 470), label=baffle, score=0.3)  # a tile's view of a sixth of it
    screw = tiled((120, 410, 160, 450))
    found = [whole_baffle, tile_piece, screw]
    # Trained in close-ups at 448 x 68 frame px: side 175, under half a 388-px tile, so by side the tiles answer.
    by_side = TilePlan(grid=(4, 4), whole_above=0.5, whole_sides=(("挡风板", 175.0), ("螺丝连接点", 60.0), ("bbu基带处理单元", 270.0)))
    assert answering(found, tile, by_side, 388.0) == [tile_piece, screw]
    # Its longest side, 448, is the tile frame's whole width: no tile holds it, the whole pass answers.
    by_longest = TilePlan(grid=(4, 4), whole_above=0.5, whole_sides=(("挡风板", 448.0), ("螺丝连接点", 70.0), ("bbu基带处理单元", 448.0)),
                          whole_by_longest=True)
    assert answering(found, tile, by_longest, 448.0) == [whole_baffle, screw]


def test_the_predictor_splits_by_longest_side_where_the_checkpoint_has_them():
    from bbuvl.config import InferenceConfig

    options = PredictOptions.of(InferenceConfig(), tiles="auto", tile_whole_above=0.5)
    sides, longest = (("挡风板", 175.0),), (("挡风板", 448.0),)
    assert options.plan(1.0, sides, longest).whole_sides == longest and options.plan(1.0, sides, longest).whole_by_longest
    old = options.plan(1.0, sides)  # a checkpoint written before the longest sides: by side, as it was trained to
    assert old.whole_sides == sides and not old.whole_by_longest


def test_a_box_exactly_one_model_cell_from_an_inner_edge_is_cut_and_one_a_little_further_is_not():
    # "Within one model cell" (docs/tiles.md, "Merging") holds the cell itself. Each 224x168 tile of a 448x336 photo
    # is shown at its own size, so a cell is 28 of its pixels and every number is exact; the photo's own border
    # cuts nothing. Every tile answers a box exactly a cell inside each of its sides, and one half a pixel further in.
    photo, regions = Image.new("RGB", (448, 336)), [(0, 0, 224, 168), (224, 0, 448, 168), (0, 168, 224, 336),
                                                    (224, 168, 448, 336)]

    def predict(crops, tiles):
        return [([([28.0, 28.0, 196.0, 140.0], "at", 0.5), ([28.5, 28.5, 195.5, 139.5], "inside", 0.5)], None)
                for _ in crops]

    found, _ = predict_regions(predict, photo, regions, CoordinateContract(), zoom=1.0)
    assert [(d.label, d.cut, d.cut_across) for d in found] == [("at", True, (True, True)),
                                                               ("inside", False, (False, False))] * 4


def test_a_tile_box_cut_by_its_tiles_inner_edge_is_no_part_when_asked():
    cut, whole_one = tiled((0, 0, 20, 20), cut=True), tiled((40, 40, 60, 60))
    assert answering([cut, whole_one], (500, 400), TilePlan(grid=(2, 2), drop_cut=True)) == [whole_one]
    assert answering([cut, whole_one], (500, 400), TilePlan(grid=(2, 2))) == [cut, whole_one]


def test_auto_zooms_until_the_smallest_trained_parts_come_out_at_their_trained_size():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    size = (1792, 1344)  # the whole frame shows it at 0.25
    sides = (("螺丝连接点", 50.0), ("bbu基带处理单元", 200.0))
    screws = [tiled((0, 0, 80, 80), zoom=1.0, whole=True), tiled((0, 0, 100, 100), zoom=1.0, whole=True)]  # 20, 25 frame px
    bbu = tiled((0, 0, 800, 200), label=BBU, zoom=1.0, whole=True)  # 100 frame px: zoom 2 for the BBUs
    assert part_zoom(screws + [bbu], sides, size, contract) == pytest.approx((50 / 20 + 50 / 25) / 2)
    assert part_zoom([bbu], sides, size, contract) == pytest.approx(2.0)
    unsure = tiled((0, 0, 80, 80), score=0.1, zoom=1.0, whole=True)
    from_a_tile = tiled((0, 0, 80, 80))
    assert part_zoom([unsure, from_a_tile], sides, size, contract) is None


def test_auto_with_part_sides_cuts_the_grid_the_whole_pass_s_screws_ask_for():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    photo = Image.new("RGB", (1792, 1344))  # its whole frame is 448x336: a quarter of its side

    def screws(score):  # every region answers one screw 20 px wide in its own crop's pixels
        return lambda crops, tiles: [([([10.0, 10.0, 30.0, 30.0], SCREW, score)], None) for _ in crops]

    def regions(trained_side, score=0.9):
        plan = TilePlan(auto=True, whole=True, part_sides=(("螺丝连接点", trained_side),))
        return predict_tiled(screws(score), photo, plan, contract).regions

    assert len(regions(50.0)) == 1 + 3 * 3  # zoom 2.5: the photo shown at 0.625, a 3x3 grid
    assert regions(25.0) == [(0, 0, 1792, 1344)]  # zoom 1.25: near the trained size already, no tiles
    assert len(regions(50.0, score=0.1)) == 1 + 4 * 4  # no sure screw: the frame scale's grid (trained at 1.0)


@pytest.mark.parametrize("size", [(20, 4000), (4000, 20), (27, 4000), (3000, 16)])
@pytest.mark.parametrize("grid", [(2, 2), (3, 1), (1, 3), (4, 4)])
def test_a_photo_near_the_aspect_limit_is_cut_only_into_tiles_a_frame_holds(size, grid):
    contract = CoordinateContract(min_pixels=50176, max_pixels=50176, max_vision_tokens=64)
    for plan in (TilePlan(grid=grid), TilePlan(grid=grid, stride=0.6)):
        for region in [(0, 0, *size), *plan.tiles(size, contract)]:
            zoomed_size(region, size, contract)  # raised ValueError ("aspect ratio 200.4 exceeds 200") before
    tiles = TilePlan(grid=grid).tiles(size, contract)
    cols, rows = (len({t[0] for t in tiles}), len({t[1] for t in tiles})) if tiles else (1, 1)
    assert cols <= grid[0] and rows <= grid[1]  # fewer cuts, never more


def test_a_container_thinner_than_a_frame_holds_keeps_its_first_pass_box_and_the_photo_its_answer():
    photo = Image.new("RGB", (448, 336))

    def predict(crops, tiles):  # the whole pass finds a BBU 2 px wide and 330 tall: no region a frame holds
        return [([([100.0, 2.0, 101.0, 332.0], BBU, 0.9)] if not tiles else [], None) for _ in crops]

    plan = TilePlan(containers=("bbu基带处理单元",), container_margin=0.0)
    result = predict_tiled(predict, photo, plan, CoordinateContract(min_pixels=3136, max_pixels=448 * 336))
    assert [d.label for d in result.objects] == [BBU]


@pytest.mark.parametrize("size", [(20, 4000), (4000, 20)])
def test_a_photo_at_the_aspect_limit_is_predicted_through_tiles(predictor, size, tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", size, (90, 90, 200)).save(path)
    line = predictor.predict_lines([str(path)], "head", tiles="2x2")[0]
    assert line["error"] is None and line.get("tiled") is True


@pytest.mark.parametrize("mode", ["head", "generate"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_tiled_photos_regions_are_read_at_most_region_batch_at_a_time(predictor, small_dataset, mode):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    rows: list[int] = []  # the photos each forward pass reads, as the vision tower sees them (one grid_thw row each)
    hook = core_model(predictor.model.vlm).model.visual.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(kwargs.get("grid_thw", args[1] if len(args) > 1 else None).shape[0]),
        with_kwargs=True)
    before = predictor.region_batch
    try:
        results = {}
        for n in (2, 64):
            predictor.region_batch, rows[:] = n, []
            [results[n]] = predictor.predict([photo], mode, tiles="4x4", max_new_tokens=8)
            assert max(rows) <= n and results[n].tiled
    finally:
        predictor.region_batch = before
        hook.remove()
    # Before, all 16 tiles went through one pass whatever --batch-size said; chunked, the answer is the same.
    assert max(rows) == 16 and results[2].vision_tokens == results[64].vision_tokens
    assert [d.label for d in results[2].objects] == [d.label for d in results[64].objects]


def test_a_zoom_container_spelt_another_way_is_the_category_and_is_zoomed_into(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    # The category of the first pass's largest box: which categories a 2-step head names differs by family.
    [first] = predictor.predict([photo], "head", objectness_threshold=0.0)
    largest = max(first.objects, key=lambda d: (d.bbox_2d[2] - d.bbox_2d[0]) * (d.bbox_2d[3] - d.bbox_2d[1]))
    category = label_at_level(largest.label, 1)
    [typed] = predictor.predict([photo], "head", zoom_containers=[category], objectness_threshold=0.0)
    assert typed.tiled  # the first pass found one, and its crop was predicted
    copied = f"{category[0]}\u200b{category[1:]} "  # copied with a zero-width space and a trailing blank: the category
    check_containers([copied], predictor.prompt.labels)
    [pasted] = predictor.predict([photo], "head", zoom_containers=[copied], objectness_threshold=0.0)
    # It matched no box's category, so no crop was ever predicted, without a word.
    assert pasted.tiled and pasted.vision_tokens == typed.vision_tokens
    assert [(d.bbox_2d, d.label) for d in pasted.objects] == [(d.bbox_2d, d.label) for d in typed.objects]


@pytest.mark.parametrize("typed", ["2x2", "2X2", "02x2", " 2 x 2 "])
def test_a_grid_is_spelt_one_way_whatever_way_it_was_typed(predictor, typed):
    # The resume key holds the spelling: '02x2' refused to resume a '2x2' run as another option, and the cost
    # line printed the grid as typed.
    assert PredictOptions.of(predictor.cfg.inference, tiles=typed).tiles == "2x2"


@pytest.mark.parametrize("mode", ["head", "generate"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_on_the_cpu_a_tiled_photos_regions_go_in_one_pass_with_the_same_lines_as_in_batch_size_chunks(
        predictor, small_dataset, mode):
    path = str(next((small_dataset / "images").rglob("*.jpg")))
    rows: list[int] = []
    hook = core_model(predictor.model.vlm).model.visual.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(kwargs.get("grid_thw", args[1] if len(args) > 1 else None).shape[0]),
        with_kwargs=True)
    before = predictor.region_batch
    try:
        assert predictor.device == "cpu" and predictor.cfg.inference.batch_size == 2
        one_pass = predictor.predict_lines([path], mode, tiles="4x4", max_new_tokens=8)
        # Before, the CPU read them --batch-size (2) at a time too: 5-13% slower (docs/tiles.md, "Regions per pass").
        assert max(rows) == 16
        predictor.region_batch = 2
        assert predictor.predict_lines([path], mode, tiles="4x4", max_new_tokens=8) == one_pass
    finally:
        predictor.region_batch = before
        hook.remove()


def test_a_stride_the_grid_cap_cannot_keep_is_said_as_the_step_the_tiles_have(predictor):
    from bbuvl.cli.predictor import describe_tiles
    from bbuvl.infer.tiles import tile_step

    size = (1600, 1200)
    capped = describe_tiles(predictor, predictor.options("head", tiles="16x16", tile_stride=0.25), size)
    assert "not the 0.25 asked" in capped and "at most 0.25" not in capped and "more than 16 tiles a side" in capped
    kept = describe_tiles(predictor, predictor.options("head", tiles="2x2", tile_stride=0.6), size)
    assert "at most 0.6 of a side apart" in kept and "asked" not in kept
    first = grid_regions(size, 2, 2, overlap=0)[0]
    assert tile_step(strided_regions(size, (first[2] - first[0], first[3] - first[1]), 0.6, least=(2, 2))) <= 0.6


def test_auto_tiles_on_a_folder_without_a_training_scale_say_they_show_photos_at_full_size(tiny_model_dir):
    """A plain model folder (a base model, an export of before) records no training scale: `auto` shows photos at
    full size, and says so rather than naming a scale no one trained at."""
    from bbuvl.cli.predictor import describe_tiles
    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.checkpoint import read_model_folder

    predictor = Predictor.load(read_model_folder(tiny_model_dir, ["线缆", "标签贴纸"], "en"), device="cpu")
    assert predictor.train_scale is None and predictor.tile_scale is None
    line = describe_tiles(predictor, predictor.options("generate", tiles="auto"), (1600, 1200))
    assert "at scale 1," in line and "full size: the folder records no training scale" in line, line
    assert "trained at" not in line


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_auto_grid_cuts_a_photo_of_twice_the_training_photos_sides_2x2_in_every_family(family):
    # Qwen2.5-VL frames 640x480 as 252x168 under the shapes demo's bounds: by its height alone a 1280x960 photo needed
    # a third row, and was cut 2x3, although 2x2 tiles are the training photos themselves.
    from bbuvl.data.schema import ImageRecord
    from bbuvl.data.scale import photo_scale

    contract = CoordinateContract(min_pixels=50176, max_pixels=50176, max_vision_tokens=64, family=family)
    trained = photo_scale(ImageRecord(images=["p.jpg"], width=640, height=480, objects=[]), contract)
    assert auto_grid((1280, 960), contract, trained) == (2, 2)
    assert auto_grid((1920, 1440), contract, trained) == (3, 3)


def test_auto_grid_cuts_a_portrait_photo_of_twice_the_landscape_training_photos_sides_2x2(tmp_path):
    # The shapes demo's frame shows its 640x480 training photos as 252x168, and a 960x1280 photo as 168x252: each side
    # of the portrait photo at half the training scale, 2x2 tiles. By the width alone the training scale is 252/640
    # and the portrait photo's 168/960, 2.25 times less: a 3x3 grid at more than twice one pass's cost.
    from bbuvl.data.schema import ImageRecord

    contract = CoordinateContract(min_pixels=50176, max_pixels=50176, max_vision_tokens=64)
    TrainingScale.of([ImageRecord(images=["p.jpg"], width=640, height=480, objects=[])] * 4, contract).save(tmp_path)
    read_back = TrainingScale.load(tmp_path).median
    assert auto_grid((960, 1280), contract, read_back) == (2, 2)
    assert auto_grid((480, 640), contract, read_back) == (1, 1)
