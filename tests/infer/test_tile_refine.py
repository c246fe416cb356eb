"""Thin parts from the tiles: a whole-pass box of a refined category takes its short side and state from the tiles'
pieces that hold that side whole; nothing else moves."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from bbuvl.config import InferenceConfig
from bbuvl.data.coords import CoordinateContract
from bbuvl.infer.options import PredictOptions
from bbuvl.infer.tile_refine import pieces_of, refine_thin, span_iou
from bbuvl.infer.tiles import TiledDetection, TilePlan, predict_regions, predict_tiled

MISSING = "挡风板/未安装"
INSTALLED = "挡风板/已安装"
SCREW = "螺丝连接点/BBU安装螺丝/连接正确"


def det(box, label=MISSING, score=0.5, whole=False, across=(False, False)):
    return TiledDetection(list(map(float, box)), label, score, 1.0 if whole else 2.0, any(across), whole, across)


def test_span_iou_of_two_intervals():
    assert span_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert span_iou((0, 10), (10, 20)) == 0.0
    assert span_iou((3, 3), (3, 3)) == 0.0


def test_a_loose_thin_box_takes_its_pieces_short_side_and_their_state():
    # The whole pass: a baffle 1,000 px long, boxed 160 px tall where it is 90, and surer it is installed.
    loose = [det((100, 370, 1100, 530), MISSING, 0.10, whole=True), det((100, 370, 1100, 530), INSTALLED, 0.30, whole=True)]
    # The tiles: pieces cut along its length (left/right), whole across it, saying it is missing.
    pieces = [det((100, 400, 420, 490), MISSING, 0.6, across=(True, False)),
              det((380, 404, 760, 494), MISSING, 0.6, across=(True, False)),
              det((720, 402, 1100, 492), INSTALLED, 0.2, across=(True, False))]
    out = refine_thin(loose, pieces, ["挡风板"])
    y1 = (400 * 0.6 + 404 * 0.6 + 402 * 0.2) / 1.4  # the pieces' extents, weighted by score
    y2 = (490 * 0.6 + 494 * 0.6 + 492 * 0.2) / 1.4
    for d in out:
        assert d.bbox_2d[0] == 100 and d.bbox_2d[2] == 1100  # the long side stays the whole pass's
        assert d.bbox_2d[1] == pytest.approx(y1, abs=1e-3) and d.bbox_2d[3] == pytest.approx(y2, abs=1e-3)
        assert d.whole
    assert [(d.label, d.score) for d in out] == [(MISSING, 0.6), (INSTALLED, 0.30)]  # a label's best piece, if higher


def test_a_tall_thin_box_is_refined_across_its_width():
    loose = [det((380, 100, 540, 1100), whole=True, score=0.2)]
    piece = det((405, 500, 495, 900), score=0.7, across=(False, True))
    [d] = refine_thin(loose, [piece], ["挡风板"])
    assert d.bbox_2d == pytest.approx([405, 100, 495, 1100]) and d.score == 0.7


def test_pieces_cut_across_far_away_of_another_category_or_barely_overlapping_are_not_used():
    box = [100.0, 370.0, 1100.0, 530.0]  # short side 160: pieces within 80 px of it
    cut_across = det((300, 400, 500, 490), across=(False, True))  # a tile's top or bottom edge cuts its height
    far = det((300, 700, 500, 790))
    other = det((300, 400, 500, 490), label=SCREW)
    sliver = det((300, 360, 500, 392))  # overlaps the box's height by 22 of 170 px
    from_whole = det((300, 400, 500, 490), whole=True)
    good = det((300, 400, 500, 490))
    assert pieces_of(box, "挡风板", [cut_across, far, other, sliver, from_whole, good]) == [good]
    loose = [det(box, whole=True, score=0.2)]
    assert refine_thin(loose, [cut_across, far, other, sliver], ["挡风板"]) == loose  # no piece: as it was


def test_only_the_whole_pass_boxes_of_the_refined_categories_move():
    found = [det((100, 370, 1100, 530), whole=True, score=0.2), det((100, 370, 1100, 530), score=0.2),
             det((120, 380, 180, 440), label=SCREW, whole=True)]
    pieces = [det((100, 400, 420, 490), score=0.6, across=(True, False)),
              det((118, 382, 182, 442), label=SCREW, score=0.9)]
    assert refine_thin(found, pieces, []) == found
    assert refine_thin(found, pieces, ["螺丝连接点"])[:2] == found[:2]  # the screw moves, not the baffle
    out = refine_thin(found, pieces, ["挡风板"])
    assert out[0] != found[0] and out[1:] == found[1:]  # a tile's own baffle box is not the whole pass's


def test_predict_regions_says_which_sides_an_inner_edge_cuts():
    photo = Image.new("RGB", (800, 600))
    regions = [(0, 0, 500, 600), (300, 0, 800, 600)]

    def predict(crops, tiles):  # each tile answers one box reaching its right side, inside its height
        return [([([c.size[0] * 0.5, c.size[1] * 0.4, float(c.size[0]), c.size[1] * 0.6], MISSING, 0.5)], None)
                for c in crops]

    found, _ = predict_regions(predict, photo, regions, CoordinateContract(min_pixels=3136, max_pixels=448 * 336))
    assert [d.cut_across for d in found] == [(True, False), (False, False)]  # the second reaches the photo's border
    assert [d.cut for d in found] == [True, False]


def test_predict_tiled_refines_the_whole_pass_baffle_with_the_tiles_pieces():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    photo = Image.new("RGB", (1344, 1008))  # 3x the frame's side: a 2x2 grid of tiles
    truth = (100, 600, 1244, 660)  # a baffle across the photo, 60 px tall, whole in the lower row of tiles
    regions = TilePlan(grid=(2, 2)).tiles(photo.size, contract)

    def predict(crops, tiles):
        """The whole pass boxes the baffle at its length and twice its height, unsure; each tile holding its height
        boxes its piece exactly, sure it is missing."""
        if not tiles:
            [c] = crops
            sx, sy = c.size[0] / photo.size[0], c.size[1] / photo.size[1]
            return [([([truth[0] * sx, 570 * sy, truth[2] * sx, 690 * sy], MISSING, 0.1)], None)]
        out = []
        for (x1, y1, x2, y2), c in zip(regions, crops):
            sx, sy = c.size[0] / (x2 - x1), c.size[1] / (y2 - y1)
            lo, hi = max(truth[0], x1), min(truth[2], x2)
            inside = truth[1] >= y1 and truth[3] <= y2
            piece = [(lo - x1) * sx, (truth[1] - y1) * sy, (hi - x1) * sx, (truth[3] - y1) * sy]
            out.append(([(piece, MISSING, 0.8)] if inside else [], None))
        return out

    plan = TilePlan(grid=(2, 2), whole=True, whole_above=0.5)
    [plain] = predict_tiled(predict, photo, plan, contract).objects
    [refined] = predict_tiled(predict, photo, replace(plan, refine=("挡风板",)), contract).objects
    assert plain.bbox_2d[1] == pytest.approx(570, abs=1) and plain.score == pytest.approx(0.1, abs=1e-6)
    assert refined.bbox_2d[1] == pytest.approx(truth[1], abs=1) and refined.bbox_2d[3] == pytest.approx(truth[3], abs=1)
    assert refined.bbox_2d[0] == pytest.approx(plain.bbox_2d[0]) and refined.score == pytest.approx(0.8, abs=1e-6)


def test_the_option_falls_back_to_the_checkpoint_s_choice_and_none_turns_it_off():
    chosen = ("挡风板",)
    assert PredictOptions.of(InferenceConfig(), tiles="2x2").plan(chosen_refine=chosen).refine == chosen
    assert PredictOptions.of(InferenceConfig(), tiles="2x2", tile_refine=[]).plan(chosen_refine=chosen).refine == ()
    given = PredictOptions.of(InferenceConfig(), tiles="2x2", tile_refine=["bbu基带处理单元"])
    assert given.plan(chosen_refine=chosen).refine == ("bbu基带处理单元",)
