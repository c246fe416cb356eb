"""What `bbuvl choose-tiles` leaves in the checkpoint it writes into while it runs, and when it cannot choose the tiled
photos' verdict thresholds."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bbuvl.data.faults import Faults
from bbuvl.data.scale import TILE_SCALE_FILE, TrainingScale
from bbuvl.eval.judging import choose_tiled_verdict
from bbuvl.infer.tile_scale import Candidate, ChosenTileScale
from bbuvl.infer.verdict import TILED_THRESHOLDS_FILE, ChosenThresholds, FramedThresholds, VerdictThresholds
from tests.eval.test_judging import BAD, BOX, OK
from tests.eval.test_tile_choice import run, wide_val as wide_val  # noqa: F401 - the fixture

EARLIER = ChosenTileScale(scale=0.5, metric="AP50", train_scale=1.0, candidates=[Candidate(0.5, {"2x2": 2}, 0.1, 5)],
                          photos=2, chosen_on="earlier.jsonl")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_reader_of_the_checkpoint_finds_a_chosen_scale_all_through_a_run(trained_checkpoint, wide_val, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    EARLIER.save(ckpt)
    results, seen = [], []
    worker = threading.Thread(target=lambda: results.append(run(
        "-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1,1.25", "--no-refine",
        "--device", "cpu", "--overwrite")))
    worker.start()
    while worker.is_alive():  # as `bbuvl serve` or `predict` loading the checkpoint meanwhile would
        seen.append(ChosenTileScale.load(ckpt))
        time.sleep(0.01)
    worker.join()
    assert results[0].exit_code == 0, results[0].output
    # Before: tile_scale.json was set aside for the whole run (and lost with it when the run was killed), so a
    # server started meanwhile tiled at the training scale.
    assert len(seen) > 10 and None not in seen
    assert replace(seen[0], model=None) == EARLIER and ChosenTileScale.load(ckpt).chosen_on == str(wide_val)


@pytest.mark.parametrize("scale_before", [None, EARLIER])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiled_thresholds_that_cannot_be_chosen_again_are_kept_and_said_so(trained_checkpoint, wide_val, tmp_path,
                                                                          scale_before):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    trained = TrainingScale.load(ckpt).median  # each family its own: 1 on a 28-px grid, 0.9759 on a 32-px one
    if scale_before is not None:
        scale_before.save(ckpt)
    # The pair records the scale it was chosen at: the one before this run's (the training scale when none was chosen)
    at = trained if scale_before is None else scale_before.scale
    earlier = ChosenThresholds(VerdictThresholds(0.3, 0.7), 0.8, 0.9, 1.0, 1.0, 4, 2, ["x"], "earlier.jsonl", tiled=True,
                               tile_scale=at)
    earlier.save(ckpt)
    before = (ckpt / TILED_THRESHOLDS_FILE).read_bytes()
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1",
                 "--no-refine", "--device", "cpu", "--choose-thresholds", "--overwrite")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    # Both photos hold a fault (and the tiny model predicts none): before, review 1 and fail 1 were written.
    assert "the 2 photos cut into tiles: every one of the 2 photos holds a fault" in said and "their verdict thresholds are not chosen" in said
    # Before: the earlier file was set aside with the scale and removed when the run succeeded.
    assert (ckpt / TILED_THRESHOLDS_FILE).read_bytes() == before
    if scale_before is None:  # the training scale, which factor 1 chooses again: the kept thresholds fit it
        assert f"{ckpt / TILED_THRESHOLDS_FILE} is kept: it was chosen at this scale ({trained:g})" in said
    else:  # before: "the scale before this one" whether or not the scale changed
        assert (f"{ckpt / TILED_THRESHOLDS_FILE} is kept, chosen on photos cut at scale 0.5; "
                "choose it again on validation photos that can decide them") in said
    assert (ckpt / TILE_SCALE_FILE).is_file()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiled_thresholds_kept_at_their_scale_with_another_refinement_are_said_to_need_choosing_again(
        trained_checkpoint, wide_val, tmp_path):
    # Before: "kept: it was chosen at this scale", where the tiles now refined other categories and the fault scores
    # the pair was chosen on were no longer the checkpoint's
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    trained = TrainingScale.load(ckpt).median
    ChosenThresholds(VerdictThresholds(0.3, 0.7), 0.8, 0.9, 1.0, 1.0, 4, 2, ["x"], "earlier.jsonl", tiled=True,
                     tile_scale=trained, tile_refine=["线缆"]).save(ckpt)
    result = run("-c", str(ckpt), "--gt", str(wide_val), "-o", str(tmp_path / "cands"), "--factors", "1",
                 "--no-refine", "--device", "cpu")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (f"{ckpt / TILED_THRESHOLDS_FILE} is kept, chosen at this scale ({trained:g}) with the tiles refining 线缆, "
            "where they now refine no category; choose it again (--choose-thresholds)") in said, said
    assert ChosenThresholds.load(ckpt, tiled=True).tile_refine == ["线缆"]


def test_the_tiled_photos_thresholds_are_chosen_on_the_photos_cut_into_tiles_alone(tmp_path):
    # Four cabinets cut into tiles (two faulty: faults scored 0.7, 0.65; two clean: 0.3, 0.2) and a close-up
    # predicted in one pass, which the tiled pair leaves out.
    photos = [("e.jpg", BAD, 0.7, True), ("f.jpg", BAD, 0.65, True), ("g.jpg", OK, 0.3, True), ("h.jpg", OK, 0.2, True),
              ("a.jpg", OK, 0.95, False)]
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps({"images": [n], "width": 100, "height": 100,
                                      "objects": [{"bbox_2d": BOX, "desc": t}]}, ensure_ascii=False) + "\n"
                          for n, t, _, _ in photos), encoding="utf-8")
    pred.write_text("".join(json.dumps({"image": n, "width": 100, "height": 100, "raw": None, "error": None,
                                        "tiled": tiled, "objects": [{"bbox_2d": BOX, "label": BAD, "score": s}]},
                                       ensure_ascii=False) + "\n" for n, _, s, tiled in photos), encoding="utf-8")
    default = FramedThresholds(VerdictThresholds(0.25, 0.5))
    chosen, why_not = choose_tiled_verdict(pred, gt, Faults.load(), default, 1.0, 1.0, "head")
    assert why_not is None and chosen.tiled and chosen.mode == "head"
    assert (chosen.thresholds, chosen.photos, chosen.faulty_photos) == (VerdictThresholds(0.65, 0.65), 4, 2)
    assert (chosen.recall, chosen.precision) == (1.0, 1.0)


def test_a_scale_copied_from_another_model_is_left_for_the_training_scale_and_said_so(trained_checkpoint, tmp_path,
                                                                                       caplog):
    from safetensors.torch import load_file, save_file

    from bbuvl.data.scale import TrainingScale
    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.checkpoint import HEAD_FILE
    from bbuvl.model.identity import record_digests

    chosen_for, other = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained_checkpoint, chosen_for)
    shutil.copytree(trained_checkpoint, other)
    head = {k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(other / HEAD_FILE).items()}
    save_file(head, other / HEAD_FILE, metadata={"format": "pt"})
    record_digests(other)  # another run's save
    EARLIER.save(chosen_for)
    assert Predictor.load(chosen_for, device="cpu").train_scale == 0.5
    shutil.copy2(chosen_for / TILE_SCALE_FILE, other / TILE_SCALE_FILE)
    p = Predictor.load(other, device="cpu")
    # Before: the other model's grids cut these photos, unnoticed.
    assert p.tile_scale is None and p.train_scale == TrainingScale.load(other).median
    assert f"{other / TILE_SCALE_FILE} was chosen for another model" in caplog.text


def test_the_thresholds_record_the_ground_truth_they_were_chosen_on_as_an_absolute_path(tmp_path, monkeypatch):
    # Before: "chosen_on": "val.jsonl" as typed, quoted later ("chosen on val.jsonl") from any other folder
    photos = [("e.jpg", BAD, 0.7), ("f.jpg", BAD, 0.65), ("g.jpg", OK, 0.3), ("h.jpg", OK, 0.2)]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps({"images": [n], "width": 100, "height": 100, "objects": [
        {"bbox_2d": BOX, "desc": t}]}, ensure_ascii=False) + "\n" for n, t, _ in photos), encoding="utf-8")
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps({
        "image": n, "width": 100, "height": 100, "raw": None, "error": None, "tiled": True,
        "objects": [{"bbox_2d": BOX, "label": BAD, "score": s}]}, ensure_ascii=False) + "\n" for n, _, s in photos),
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    chosen, _ = choose_tiled_verdict("pred.jsonl", "val.jsonl", Faults.load(), FramedThresholds(VerdictThresholds(0.25, 0.5)),
                                     1.0, 1.0, "head")
    (tmp_path / "ckpt").mkdir()
    chosen.save(tmp_path / "ckpt")
    written = json.loads((tmp_path / "ckpt" / TILED_THRESHOLDS_FILE).read_text(encoding="utf-8"))
    assert written["chosen_on"] == str((tmp_path / "val.jsonl").resolve())
    # A file written before, of the path as typed, is still read
    written["chosen_on"] = "val.jsonl"
    (tmp_path / "ckpt" / TILED_THRESHOLDS_FILE).write_text(json.dumps(written), encoding="utf-8")
    assert ChosenThresholds.load(tmp_path / "ckpt", tiled=True).chosen_on == "val.jsonl"


def _pair(ckpt, review: float, fail: float, scale: float) -> tuple[ChosenTileScale, ChosenThresholds]:
    """A tile scale and the tiled photos' pair chosen with it, for the faults `ckpt`'s hierarchy marks."""
    from bbuvl.config import read_run_config

    faults = sorted(Faults.load(read_run_config(ckpt).data.hierarchy).labels)
    verdict = ChosenThresholds(VerdictThresholds(review, fail), 0.8, 0.9, 1.0, 1.0, 4, 2, faults, "val.jsonl",
                               tiled=True, tile_scale=scale, tile_refine=[])
    return replace(EARLIER, scale=scale), verdict


def test_a_tiled_pair_written_with_another_tile_scale_than_the_one_there_is_left_out_and_said(trained_checkpoint,
                                                                                              tmp_path):
    # What a `choose-tiles --choose-thresholds` killed between its two files leaves: its pair beside the scale of the
    # run before. It judged fault scores of a scale it was not chosen at (predict only noted the scales differ).
    from bbuvl.cli.choose_tiles import save_choices
    from bbuvl.infer.verdict import checkpoint_verdict

    ckpt = shutil.copytree(trained_checkpoint, tmp_path / "ckpt")
    save_choices(ckpt, *_pair(ckpt, 0.3, 0.5, 0.5))
    assert checkpoint_verdict(ckpt)[0].tiled == VerdictThresholds(0.3, 0.5)  # one run's pair, as written
    before = (ckpt / TILE_SCALE_FILE).read_bytes()
    save_choices(ckpt, *_pair(ckpt, 0.1, 0.3, 0.75))
    (ckpt / TILE_SCALE_FILE).write_bytes(before)  # the second run's scale never written
    framed, _, source = checkpoint_verdict(ckpt)
    assert framed.tiled != VerdictThresholds(0.1, 0.3), source
    assert f"{TILED_THRESHOLDS_FILE} was written with a {TILE_SCALE_FILE} other than the one there now" in source
    from bbuvl.infer.predictor import Predictor

    p = Predictor.load(ckpt, device="cpu")  # predict and serve
    assert p.options("head").thresholds(tiled=True) != VerdictThresholds(0.1, 0.3)
    [note] = [n for n in p.threshold_notes("head") if TILED_THRESHOLDS_FILE in n]
    assert "other than the one there now" in note and "eval --choose-thresholds" not in note, note


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_choose_tiles_killed_between_its_two_files_leaves_no_pair_judging_another_runs_scale(trained_checkpoint,
                                                                                              tmp_path):
    # SIGKILL at the second of the two files `choose-tiles --choose-thresholds` writes into the checkpoint: before, the
    # new tile_scale.json stood beside the old run's verdict_thresholds_tiled.json, which judged its photos.
    import os
    import signal
    import subprocess
    import sys

    from bbuvl.cli.choose_tiles import save_choices
    from bbuvl.infer.verdict import checkpoint_verdict

    ckpt = shutil.copytree(trained_checkpoint, tmp_path / "ckpt")
    own = checkpoint_verdict(ckpt)[0].tiled  # the run config's, which judges when no pair does
    save_choices(ckpt, *_pair(ckpt, 0.3, 0.5, 0.5))
    script = f"""
import os, signal
from bbuvl.cli.choose_tiles import save_choices
from tests.eval.test_choose_tiles_writes import _pair
ckpt, replace, written = {str(ckpt)!r}, os.replace, []
def killed_at_the_second(src, dst):
    if os.path.dirname(os.path.abspath(dst)) == ckpt:
        written.append(dst)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return replace(src, dst)
os.replace = killed_at_the_second
save_choices(__import__("pathlib").Path(ckpt), *_pair(__import__("pathlib").Path(ckpt), 0.1, 0.3, 0.75))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    scale = ChosenTileScale.load(ckpt).scale
    tiled = checkpoint_verdict(ckpt)[0].tiled
    # Both of one run, or the scale without a pair: never one run's pair judging the other's scale
    assert (scale, tiled) in ((0.5, VerdictThresholds(0.3, 0.5)), (0.75, VerdictThresholds(0.1, 0.3)), (0.5, own)), \
        (scale, tiled)
