"""`bbuvl choose-tiles`: each candidate scale predicted once, scored on the judged parts the tiles answer for, the best
written into the checkpoint, and `tiles: auto` following it."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.scale import TILE_SCALE_FILE, TrainingScale
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.eval.faults import CannotChoose, choose_thresholds
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.data.labels import label_at_level
from bbuvl.eval.tile_choice import (best_candidate, category_score, chosen_predictions, jackknife_spread, judged_tiled,
                                   prediction_file, refined_file, tiled_categories, whole_categories, with_categories,
                                   zoom_wins)
from bbuvl.infer.predictor import Predictor
from bbuvl.infer.tile_scale import REFINE_WITHIN, Candidate, ChosenTileScale
from bbuvl.infer.tiles import TilePlan, auto_grid, plan_cost
from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

runner = CliRunner()


def run(*args: str):
    """`bbuvl choose-tiles ARGS` through the real CLI (which records what each command wrote)."""
    return runner.invoke(app, ["choose-tiles", *args])


def test_the_cheapest_within_half_a_standard_error_of_the_best_wins_then_the_training_scale():
    c = lambda scale, score, passes, spread=None: Candidate(scale, {}, score, passes, spread)  # noqa: E731
    # Without a measured spread only equal scores tie: the cheaper, then the nearer the training scale
    assert best_candidate([c(0.5, 0.2, 5), c(0.75, 0.7, 10), c(1.0, 0.6, 17)], 1.0).scale == 0.75
    assert best_candidate([c(0.5, 0.7, 5), c(0.75, 0.7, 10), c(1.0, 0.7, 17)], 1.0).scale == 0.5
    assert best_candidate([c(0.75, 0.7, 10), c(1.25, 0.7, 10)], 1.0).scale == 0.75  # equally cheap: nearer 1
    assert best_candidate([c(0.5, None, 5), c(1.0, None, 17)], 1.0).scale == 1.0  # nothing scored: the training scale
    assert best_candidate([c(0.5, None, 5), c(1.0, 0.0, 17)], 1.0).scale == 1.0  # 0 is a score, None is not
    # 3x3 scores 0.016 under 4x4, within the 0.158 the grids differ by chance: the cheaper 3x3; 2x2 is 0.249 under,
    # beyond its 0.161
    grids = [c(0.5, 0.361, 40, 0.161), c(0.75, 0.594, 80, 0.158), c(1.0, 0.610, 136, 0.0)]
    assert best_candidate(grids, 1.0).scale == 0.75
    assert best_candidate([*grids[:2], c(1.0, 0.9, 136, 0.158)], 1.0).scale == 1.0  # far better: worth its passes
    # 2x2 scored 0.056 under 3x3 on 16 cabinets, 0.73 errors of 0.076: 3x3 (2x2 lost 0.3 of the screws' AP on unseen
    # cabinets); a whole error, the rule of model selection, would take 2x2
    close = [c(0.5, 0.523, 80, 0.076), c(0.75, 0.579, 160, 0.0)]
    assert best_candidate(close, 1.0).scale == 0.75
    assert best_candidate(close, 1.0, within=1.0).scale == 0.5


def test_the_spread_is_the_jackknife_standard_error_of_the_difference():
    # Differences with each photo left out: 0.1, 0.2, 0.3 -> mean 0.2, sqrt(2/3 * 0.02) = 0.11547
    assert jackknife_spread([0.5, 0.6, 0.7], [0.4, 0.4, 0.4]) == pytest.approx(math.sqrt(2 / 3 * 0.02))
    assert jackknife_spread([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]) == pytest.approx(0.0)  # always 0.1 apart: no chance
    assert jackknife_spread([0.5, 0.6], [0.5, 0.6]) == 0.0  # a candidate against itself
    assert jackknife_spread([0.5], [0.4]) is None  # one photo: nothing to leave out
    assert jackknife_spread([0.5, None], [0.4, 0.3]) is None  # a replicate with nothing to score


def test_the_score_is_read_on_the_judged_categories_the_tiles_answer_for():
    per = {"螺丝": {"AP50": 0.8, "gt": 10}, "标签": {"AP50": 0.2, "gt": 4}, "挡风板": {"AP50": 0.4, "gt": 3},
           "线缆": {"AP50": None, "gt": 0}}
    judged = {"螺丝", "挡风板"}
    assert judged_tiled({"螺丝", "标签"}, judged) == {"螺丝"}  # the baffles are the whole pass's
    assert judged_tiled({"标签"}, judged) == {"标签"}  # no judged category among the tiles': all the tiles' ones
    assert judged_tiled(None, judged) == judged  # no split: both passes answer for the judged ones
    assert judged_tiled(None, set()) is None
    assert category_score(per, "AP50", {"螺丝"}) == 0.8
    assert category_score(per, "AP50", {"螺丝", "标签"}) == pytest.approx(0.5)
    assert category_score(per, "AP50", None) == pytest.approx((0.8 + 0.2 + 0.4) / 3)  # no ground truth: not averaged
    assert category_score(per, "AP50", {"线缆"}) is None


@pytest.fixture()
def wide_val(small_dataset, tmp_path):
    """The small dataset's validation photos at 3x their side (boxes scaled with them): photos `auto` tiles."""
    src = small_dataset / "val.jsonl"
    (tmp_path / "images").mkdir()
    records = []
    for r in read_records(src):
        photo = Image.open(resolve_image(src, r.image)).convert("RGB")
        name = f"images/{r.image.rsplit('/', 1)[-1]}"
        photo.resize((photo.width * 3, photo.height * 3)).save(tmp_path / name)
        objects = [o.model_copy(update={"bbox_2d": [v * 3 for v in o.bbox_2d]}) for o in r.objects]
        records.append(r.model_copy(update={"images": [name], "width": photo.width * 3, "height": photo.height * 3,
                                            "objects": objects}))
    write_dataset(tmp_path / "val.jsonl", records)
    return tmp_path / "val.jsonl"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_scores_every_grid_once_and_auto_follows_the_chosen_scale(trained_checkpoint, wide_val, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    trained = TrainingScale.load(ckpt).median
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"),
                                 "--factors", "0.5,1,0.75,0.5")
    assert result.exit_code == 0, result.output
    chosen = ChosenTileScale.load(ckpt)
    assert chosen is not None and chosen.train_scale == trained and chosen.photos == len(read_records(wide_val))
    assert [c.scale for c in chosen.candidates] == sorted({round(trained * f, 4) for f in (0.5, 0.75, 1.0)})
    predictor = Predictor.load(ckpt, device="cpu")
    records = read_records(wide_val)
    judged = {label_at_level(kind, 1) for kind in predictor.faults.kinds}
    scored_on = judged_tiled(tiled_categories(predictor, records[0].size), judged)
    assert scored_on and "螺丝连接点" in scored_on  # the screws, whatever the split
    scored = {}
    for c in sorted(chosen.candidates, key=lambda c: (abs(c.scale / trained - 1.0), c.scale)):  # the order tried in
        grids = [auto_grid(r.size, predictor.contract, c.scale) for r in records]
        assert sum(c.grids.values()) == len(records) and set(c.grids) == {f"{g[0]}x{g[1]}" for g in grids}
        pred = tmp_path / "cands" / f"pred_scale_{c.scale:g}.jsonl"
        if tuple(grids) in scored:  # the same grids as a scale already predicted: scored once, not predicted again
            assert not pred.exists() and c.score == scored[tuple(grids)]
            continue
        found = evaluate_predictions(records, wide_val, read_predictions(pred), pred, level=1, faults=predictor.faults)
        assert c.score == category_score(found.metrics["per_category"], "AP50", scored_on)
        scored[tuple(grids)] = c.score
    # Each candidate's spread: the jackknife over the photos of the best score minus its own
    def left_out(scale: float) -> list:
        grids = tuple(auto_grid(r.size, predictor.contract, scale) for r in records)
        same = [x.scale for x in chosen.candidates
                if tuple(auto_grid(r.size, predictor.contract, x.scale) for r in records) == grids]
        [pred] = [p for x in same if (p := tmp_path / "cands" / f"pred_scale_{x:g}.jsonl").exists()]  # predicted once
        return [category_score(evaluate_predictions(records[:i] + records[i + 1:], wide_val, read_predictions(pred), pred,
                                                    level=1, faults=predictor.faults).metrics["per_category"], "AP50",
                               scored_on) for i in range(len(records))]
    top = max((c for c in chosen.candidates if c.score is not None), key=lambda c: c.score)
    for c in chosen.candidates:
        assert c.spread == pytest.approx(jackknife_spread(left_out(top.scale), left_out(c.scale)))
    assert chosen.scale == best_candidate(chosen.candidates, trained).scale
    # The chosen scale is what `auto` cuts new photos at, in place of the training scale; tile_zoom still wins.
    assert predictor.train_scale == chosen.scale
    big = Image.open(resolve_image(wide_val, records[0].image)).convert("RGB")
    [tiled] = predictor.predict([big], "head", tiles="auto", tile_whole=False)
    assert tiled.vision_tokens == plan_cost(big.size, TilePlan(auto=True, whole=False, train_scale=chosen.scale),
                                            predictor.contract)
    # Choosing again starts from the training scale, not from the scale chosen before.
    again = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1")
    assert again.exit_code == 0, again.output
    assert ChosenTileScale.load(ckpt).scale == trained
    # ... and its folder holds that run's candidates only, none of the first run's other scales
    assert {p.name.removeprefix(f"pred_scale_{trained:g}").split(".")[0] for p in (tmp_path / "cands").iterdir()
            if not p.name.startswith(".")} <= {"", "_refined", "_refine_all"}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_matches_the_photos_once_for_a_scale_whatever_their_number(trained_checkpoint, wide_val, tmp_path,
                                                                             monkeypatch):
    # Its jackknife scored each set of n - 1 photos afresh, COCO matching them all twice each time: 89 s of CPU a scale
    # for 200 validation photos, 350 s for 400 (eval/left_out.py).
    from faster_coco_eval import COCOeval_faster

    evaluated = []
    original = COCOeval_faster.evaluate
    monkeypatch.setattr(COCOeval_faster, "evaluate", lambda self: evaluated.append(1) or original(self))
    records = read_records(wide_val)
    more = [r.model_copy(update={"images": [f"images/again_{r.image.rsplit('/', 1)[-1]}"]}) for r in records]
    for r, again in zip(records, more):
        shutil.copy(resolve_image(wide_val, r.image), resolve_image(wide_val, again.image))
    write_dataset(tmp_path / "val4.jsonl", records + more)
    counts = []
    for val in (wide_val, tmp_path / "val4.jsonl"):
        ckpt = tmp_path / f"ckpt_{val.stem}"
        shutil.copytree(trained_checkpoint, ckpt)
        evaluated.clear()
        result = run("-c", str(ckpt), "--gt", str(val), "-o", str(tmp_path / f"cands_{val.stem}"), "--factors", "1",
                     "--no-refine")
        assert result.exit_code == 0, result.output
        assert ChosenTileScale.load(ckpt).photos == len(read_records(val))
        counts.append(len(evaluated))
    assert counts[0] == counts[1], counts


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_says_a_checkpoint_whose_tile_zoom_is_set_never_uses_the_scale_it_chooses(
        trained_checkpoint, wide_val, tmp_path):
    import yaml

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    cfg = yaml.safe_load((ckpt / "bbuvl.yaml").read_text(encoding="utf-8"))
    cfg["inference"]["tile_zoom"] = 0.5
    (ckpt / "bbuvl.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1.5",
                 "--no-refine", "--device", "cpu")
    assert result.exit_code == 0, result.output
    chosen = ChosenTileScale.load(ckpt)
    # Before: "chose scale 1.5 ... written to tile_scale.json" alone, a scale predict never cut at
    note = (f"the checkpoint's inference.tile_zoom (0.5) wins over the chosen scale: `tiles: auto` in predict and serve "
            f"shows every tile at 0.5 frame pixels per stored pixel and cuts its grid for that, never at {chosen.scale:g}")
    assert note in " ".join(result.output.split()) and any(n.startswith(note) for n in chosen.notes)
    # ... as predict does: `auto` at the zoom, not at the scale written
    predictor = Predictor.load(ckpt, device="cpu")
    record = read_records(wide_val)[0]
    big = Image.open(resolve_image(wide_val, record.image)).convert("RGB")
    [tiled] = predictor.predict([big], "head", tiles="auto", tile_whole=False)
    assert chosen.scale != 0.5 and tiled.vision_tokens == plan_cost(
        big.size, TilePlan(auto=True, whole=False, zoom=0.5, train_scale=0.5), predictor.contract)
    assert zoom_wins(None, chosen.scale) == []


def test_choose_tiles_never_rewrites_the_checkpoint_as_its_candidates_folder(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    from PIL import Image

    # A sound --gt, so that what is refused is the output over the checkpoint (choose-tiles checks --gt first).
    Image.new("RGB", (32, 24), (9, 9, 9)).save(tmp_path / "p.png")
    gt = tmp_path / "val.jsonl"
    gt.write_text('{"images": ["p.png"], "width": 32, "height": 24, "objects": []}\n', encoding="utf-8")
    for out in (ckpt, tmp_path, ckpt / "cands"):
        result = run("-c", str(ckpt), "--gt", str(gt), "-o", str(out), "--overwrite")
        assert result.exit_code == 2 and "--checkpoint" in result.output, result.output
        assert sorted(p.name for p in ckpt.iterdir()) == ["config.json"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_cuts_each_candidate_a_stride_apart_when_the_checkpoint_asks(trained_checkpoint, wide_val, tmp_path):
    import yaml

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    cfg = yaml.safe_load((ckpt / "bbuvl.yaml").read_text(encoding="utf-8"))
    cfg["inference"]["tile_stride"] = 0.5
    (ckpt / "bbuvl.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1")
    assert result.exit_code == 0, result.output
    [c] = ChosenTileScale.load(ckpt).candidates
    predictor = Predictor.load(ckpt, device="cpu")
    records = read_records(wide_val)
    plan = TilePlan(auto=True, train_scale=c.scale, stride=0.5)
    cut = [plan.tiles(r.size, predictor.contract) for r in records]
    # The candidate names the grid the stride cuts and counts its passes (the whole photo and each tile).
    assert c.grids == {f"{len({t[0] for t in cut[0]})}x{len({t[1] for t in cut[0]})}": len(records)}
    assert c.passes == sum(1 + len(t) for t in cut)
    assert c.passes > sum(1 + len(TilePlan(auto=True, train_scale=c.scale).tiles(r.size, predictor.contract)) for r in records)


def test_a_damaged_tile_scale_is_an_error_naming_it_and_bad_factors_are_refused(trained_checkpoint, wide_val, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    for body in ('{"tool": "bbuvl choose-tiles", "scale": -1, "metric": "AP50", "train_scale": 1, "candidates": [], '
                 '"photos": 1, "chosen_on": "v"}', '{"scale": 0.5}', "[1, 2",
                 '{"tool": "bbuvl choose-tiles", "scale": 0.5, "metric": "AP50", "train_scale": 1, "candidates": [], '
                 '"photos": 1, "chosen_on": "v", "refine": "挡风板"}',
                 '{"tool": "bbuvl choose-tiles", "scale": 0.5, "metric": "AP50", "train_scale": 1, "candidates": [], '
                 '"photos": 1, "chosen_on": "v", "refine_scores": [1]}'):
        (ckpt / TILE_SCALE_FILE).write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=str(ckpt / TILE_SCALE_FILE)):
            Predictor.load(ckpt, device="cpu")
    (ckpt / TILE_SCALE_FILE).unlink()
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "c"), "--factors", "0.5,x")
    assert result.exit_code != 0 and "'x' is not a number" in result.output
    assert not (ckpt / TILE_SCALE_FILE).exists()
    body = json.dumps({"tool": "bbuvl choose-tiles", "scale": 0.5, "metric": "AP50", "train_scale": 1.0,
                       "candidates": [{"scale": 0.5, "grids": {"2x2": 1}, "score": 0.1, "passes": 5}], "photos": 1,
                       "chosen_on": "v"})
    (ckpt / TILE_SCALE_FILE).write_text(body, encoding="utf-8")
    assert ChosenTileScale.load(ckpt).candidates[0] == Candidate(0.5, {"2x2": 1}, 0.1, 5)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_chooses_the_tiled_photos_verdict_thresholds_only_where_its_photos_can_decide_them(
        trained_checkpoint, wide_val, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1",
                 "--choose-thresholds", "--target-recall", "0.8", "--target-precision", "0.8")
    assert result.exit_code == 0, result.output
    chosen = ChosenTileScale.load(ckpt)
    pred = tmp_path / "cands" / f"pred_scale_{chosen.scale:g}.jsonl"
    lines = read_predictions(pred)
    assert lines and all(line.tiled for line in lines)  # every photo 3x the frame's side: cut into tiles
    predictor = Predictor.load(ckpt, device="cpu")
    f = evaluate_predictions(read_records(wide_val), wide_val, lines, pred, faults=predictor.faults).faults
    # Both photos hold a fault: no clean photo to measure a fail threshold's precision on, so none is chosen (the
    # pair chosen on tiled photos that can decide it: test_choose_tiles_writes.py).
    with pytest.raises(CannotChoose, match="every one of the 2 photos holds a fault"):
        choose_thresholds(f.photo_faulty, f.photo_scores, 0.8, 0.8)
    assert ChosenThresholds.load(ckpt, tiled=True) is None
    assert ChosenThresholds.load(ckpt) is None  # the one-pass photos' pair is not touched
    assert "their verdict thresholds are not chosen" in " ".join(result.output.split())
    # Choosing the scale again without them leaves a pair chosen before, at the scale chosen again: kept as fit.
    chosen_at = ChosenTileScale.load(ckpt).scale
    ChosenThresholds(VerdictThresholds(0.3, 0.7), 0.8, 0.8, 1.0, 1.0, 4, 2, ["x"], "v", tiled=True,
                     tile_scale=chosen_at).save(ckpt)
    again = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands2"), "--factors", "1", "--overwrite")
    said = " ".join(again.output.split())
    assert again.exit_code == 0 and "is kept: it was chosen at this scale" in said, said
    assert ChosenThresholds.load(ckpt, tiled=True).thresholds == VerdictThresholds(0.3, 0.7)


def _whole_above(trained_checkpoint, tmp_path):
    """A copy of the checkpoint whose whole pass answers for the categories trained at half a tile's side or more."""
    import yaml

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    cfg = yaml.safe_load((ckpt / "bbuvl.yaml").read_text(encoding="utf-8"))
    cfg["inference"]["tile_whole_above"] = 0.5
    (ckpt / "bbuvl.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return ckpt


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_scores_each_whole_pass_category_with_and_without_the_tiles_refinement(
        trained_checkpoint, wide_val, tmp_path):
    ckpt = _whole_above(trained_checkpoint, tmp_path)
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1")
    assert result.exit_code == 0, result.output
    chosen = ChosenTileScale.load(ckpt)
    predictor = Predictor.load(ckpt, device="cpu")
    records = read_records(wide_val)
    held = {label_at_level(o.desc, 1) for r in records for o in r.objects}
    expected = [c for c in whole_categories(predictor, records[0].size, chosen.scale) if c in held]
    assert expected and [r.category for r in chosen.refine_scores] == expected
    base, every = prediction_file(tmp_path / "cands", chosen.scale), refined_file(tmp_path / "cands", chosen.scale, True)
    scores = [evaluate_predictions(records, wide_val, read_predictions(p), p, level=1,
                                   faults=predictor.faults).metrics["per_category"] for p in (base, every)]
    for r in chosen.refine_scores:
        assert (r.without, r.refined) == (scores[0][r.category]["AP50"], scores[1][r.category]["AP50"])
        gain = r.refined - r.without
        assert r.kept == (gain > 0 and (r.spread is None or gain > REFINE_WITHIN * r.spread))
        assert f"refine {r.category} by the tiles" in result.output
    assert chosen.refine == [r.category for r in chosen.refine_scores if r.kept]
    assert predictor.tile_refine == tuple(chosen.refine)
    assert chosen_predictions(tmp_path / "cands", chosen) == (refined_file(tmp_path / "cands", chosen.scale)
                                                              if chosen.refine else base)
    # --refine-within 0 keeps every category that gains at all.
    loose = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "c0"), "--factors", "1", "--refine-within",
                "0", "--overwrite")
    assert loose.exit_code == 0, loose.output
    assert [r.kept for r in ChosenTileScale.load(ckpt).refine_scores] == [
        r.refined is not None and r.without is not None and r.refined > r.without for r in chosen.refine_scores]
    # --no-refine chooses the scale alone, and leaves the refinement off.
    again = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "c2"), "--factors", "1", "--no-refine",
                "--overwrite")
    assert again.exit_code == 0 and ChosenTileScale.load(ckpt).refine_scores == [] and "refine" not in again.output



def test_the_refinement_reads_the_chosen_scales_scores_from_the_choice_and_scores_only_the_refined_predictions(
        trained_checkpoint, wide_val, tmp_path, monkeypatch):
    """choose_refine scored the chosen scale's predictions a second time, on all the photos and each left out, after
    the choice had (`scores_of`; bench/jackknife.py): the left-out scores are now made once a prediction file, and the
    spreads are those of scoring both files afresh."""
    from faster_coco_eval import COCOeval_faster

    from bbuvl.eval.left_out import per_category_left_out

    left_out_runs = []
    original = COCOeval_faster.evaluate
    monkeypatch.setattr(COCOeval_faster, "evaluate",
                        lambda self: (left_out_runs.append(1) if self.separate_eval else None) or original(self))
    ckpt = _whole_above(trained_checkpoint, tmp_path)
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1")
    assert result.exit_code == 0, result.output
    chosen = ChosenTileScale.load(ckpt)
    assert chosen.refine_scores and len(left_out_runs) == 2  # the scale's file and its refined one; 3 before
    monkeypatch.undo()
    records, faults = read_records(wide_val), Predictor.load(ckpt, device="cpu").faults
    base, every = prediction_file(tmp_path / "cands", chosen.scale), refined_file(tmp_path / "cands", chosen.scale, True)
    left = [per_category_left_out(records, wide_val, read_predictions(p), p, 1, faults) for p in (base, every)]
    for r in chosen.refine_scores:
        assert r.spread == jackknife_spread([s[r.category]["AP50"] if r.category in s else None for s in left[1]],
                                            [s[r.category]["AP50"] if r.category in s else None for s in left[0]])

def test_a_category_s_objects_from_the_refined_prediction_are_what_refining_it_alone_predicts(trained_checkpoint):
    from dataclasses import replace

    from bbuvl.data.coords import CoordinateContract
    from bbuvl.infer.predictor import Detection, ImageResult
    from bbuvl.infer.tiles import predict_tiled

    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    photo = Image.new("RGB", (1344, 1008))
    plan = TilePlan(grid=(2, 2), whole=True, whole_above=0.5)
    regions = plan.tiles(photo.size, contract)
    parts = {"挡风板/未安装": (100, 600, 1244, 660), "bbu基带处理单元/华为": (100, 700, 1244, 820)}

    def predict(crops, tiles):
        """The whole pass boxes both long parts too tall; the tiles box their pieces exactly."""
        if not tiles:
            [c] = crops
            sx, sy = c.size[0] / photo.size[0], c.size[1] / photo.size[1]
            return [([([b[0] * sx, (b[1] - 30) * sy, b[2] * sx, (b[3] + 30) * sy], label, 0.1)
                      for label, b in parts.items()], None)]
        out = []
        for (x1, y1, x2, y2), c in zip(regions, crops):
            sx, sy = c.size[0] / (x2 - x1), c.size[1] / (y2 - y1)
            out.append(([([(max(b[0], x1) - x1) * sx, (b[1] - y1) * sy, (min(b[2], x2) - x1) * sx, (b[3] - y1) * sy],
                          label, 0.8) for label, b in parts.items() if b[1] >= y1 and b[3] <= y2], None))
        return out

    def line(categories: tuple) -> dict:
        objects = predict_tiled(predict, photo, replace(plan, refine=categories), contract).objects
        return {"image": "p.jpg", "width": 1344, "height": 1008, "raw": None, "error": None, "tiled": True,
                "objects": [{"bbox_2d": d.bbox_2d, "label": d.label, "score": d.score} for d in objects]}

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    base, every = line(()), line(("挡风板", "bbu基带处理单元"))
    assert base["objects"] != every["objects"]
    for one in ("挡风板", "bbu基带处理单元"):
        alone = line((one,))
        got = with_categories(predictor, base, every, {one}, predictor.options(tiles="auto", tile_refine=[one]))
        key = lambda o: (o["label"], o["bbox_2d"], o["score"])  # noqa: E731
        assert sorted(map(key, got["objects"])) == sorted(map(key, alone["objects"]))
        result = ImageResult([Detection(o["bbox_2d"], o["label"], o["score"]) for o in alone["objects"]], None, 1344,
                             1008, tiled=True)
        assert got["verdict"] == predictor.verdict(result, predictor.options(tiles="auto")).to_dict()
