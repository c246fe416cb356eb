"""`bbuvl eval --pred P` judges P by the checkpoint its manifest names (thresholds, hierarchy, frame) only while that
checkpoint is still the model that made P: replaced since (another run copied over it, weights trained again in
place), eval is refused naming the file that changed and what to do; thresholds chosen since are named, not refused.

Real files throughout: a head-mode `bbuvl predict` of the tiny trained checkpoint, then the checkpoint changed on disk,
then `bbuvl eval`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.faults import THRESHOLDS_FILE, TILED_THRESHOLDS_FILE
from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def predicted(trained_checkpoint, small_dataset, tmp_path_factory) -> dict[str, Path]:
    """One head-mode predict run over the two validation photos: its checkpoint, ground truth and output."""
    root = tmp_path_factory.mktemp("eval4")
    ckpt = root / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    out = root / "pred.jsonl"
    r = invoke(["predict", "-c", ckpt, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return {"ckpt": ckpt, "gt": small_dataset / "val.jsonl", "out": out}


@pytest.fixture()
def run(predicted, tmp_path) -> dict[str, Path]:
    """A copy of the predict run for one test to change: the checkpoint copied, the manifest naming the copy."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(predicted["ckpt"], ckpt)
    out = tmp_path / "pred.jsonl"
    copy_predictions(predicted["out"], out, ckpt)
    return {"ckpt": ckpt, "gt": predicted["gt"], "out": out}


def copy_predictions(pred: Path, out: Path, ckpt: Path, gt: Path | None = None) -> None:
    """`pred` and its manifest copied to `out`, the manifest naming the checkpoint copy `ckpt` (and the ground truth
    copy `gt`): the copy's files have their own stats, so the recorded digests name the copy, as predict of it would."""
    from bbuvl.model.identity import identify

    shutil.copy(pred, out)
    manifest = json.loads(Path(f"{pred}.predict.json").read_text(encoding="utf-8"))
    manifest["checkpoint"] = str(ckpt)
    if gt is not None:
        manifest["input"] = str(gt)
    manifest["key"]["checkpoint_files"] = [f.to_json() for f in identify(ckpt).files]
    Path(f"{out}.predict.json").write_text(json.dumps(manifest), encoding="utf-8")


def evaluate(run: dict[str, Path], name: str, *extra) -> object:
    return invoke(["eval", "--pred", run["out"], "--gt", run["gt"], "--out", run["out"].with_name(name), *extra])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_of_predictions_whose_checkpoint_another_run_was_copied_over_is_refused_naming_the_file(
        run, tiny_model_dir):
    first = evaluate(run, "m0.json")
    assert first.exit_code == 0, first.output
    assert "changed since" not in text(first) and "chosen since" not in text(first)
    # `cp -r other_run/. ckpt/`: another model's weights and run config over the folder's own.
    for f in tiny_model_dir.iterdir():
        if f.is_file():
            shutil.copy(f, run["ckpt"] / f.name)
    (run["ckpt"] / "bbuvl.yaml").write_text((run["ckpt"] / "bbuvl.yaml").read_text(encoding="utf-8").replace(
        "verdict_fail: 0.", "verdict_fail: 0.0"), encoding="utf-8")
    r = evaluate(run, "m1.json")
    said = text(r)
    # Before: exit 0, these predictions judged by the new folder's thresholds, hierarchy and frame.
    assert r.exit_code == 2, r.output
    assert f"{run['out']}: predicted by {run['ckpt']} as it was before its" in said
    assert "bbuvl.yaml" in said and "config.json" in said  # found by their sizes: no weights hashed to say so
    assert "predict --overwrite" in said and "--hierarchy, --verdict-review and --verdict-fail" in said
    assert not run["out"].with_name("m1.json").exists()


def test_weights_trained_again_in_place_at_the_same_size_are_found_and_explicit_judging_goes_on(run):
    from safetensors.torch import load_file, save_file

    weights = run["ckpt"] / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0  # another step of training: same shapes, same size, other content
    size = weights.stat().st_size
    save_file(tensors, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size
    r = evaluate(run, "m1.json")
    assert r.exit_code == 2 and "as it was before its model.safetensors changed" in text(r), r.output
    # One threshold given: the checkpoint's other would still judge.
    r = evaluate(run, "m2.json", "--verdict-review", "0.3", "--verdict-fail", "0.7")
    assert r.exit_code == 2 and "--hierarchy, --verdict-review and --verdict-fail" in text(r), r.output
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    r = evaluate(run, "m3.json", "--verdict-review", "0.3", "--verdict-fail", "0.7", "--hierarchy", DEFAULT_HIERARCHY)
    assert r.exit_code == 0, r.output
    details = json.loads(run["out"].with_name("m3.coco.json").read_text(encoding="utf-8"))
    assert details["size_tokens"] is None  # the frame of the model there now sizes nothing
    assert any("changed since" in n and "model.safetensors" in n for n in details["notes"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_thresholds_chosen_since_the_predictions_are_named_not_refused(run):
    ChosenThresholds(VerdictThresholds(0.2, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1, ["x"], "val.jsonl", mode="head").save(
        run["ckpt"])
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0, r.output
    assert f"{run['ckpt'] / THRESHOLDS_FILE} was chosen since these predictions were made: the verdicts" in text(r)
    details = json.loads(run["out"].with_name("m1.coco.json").read_text(encoding="utf-8"))
    assert details["size_tokens"] is not None  # the model is the same: its frame still sizes objects
    # Both thresholds given: the chosen file judges nothing, and nothing is said of it.
    r = evaluate(run, "m2.json", "--verdict-review", "0.3", "--verdict-fail", "0.7")
    assert r.exit_code == 0 and "chosen since" not in text(r), r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_tiled_photos_thresholds_chosen_since_are_named_only_where_a_photo_was_predicted_through_tiles(run):
    # Before: "verdict_thresholds_tiled.json was chosen since ... the verdicts their lines hold were judged without it"
    # over predictions made in one pass, which that file judges none of.
    ChosenThresholds(VerdictThresholds(0.2, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1, ["x"], "wide.jsonl", mode="head",
                     tiled=True).save(run["ckpt"])
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0 and "chosen since" not in text(r), r.output
    lines = [json.loads(line) for line in run["out"].read_text(encoding="utf-8").splitlines()]
    run["out"].write_text("".join(json.dumps({**line, "tiled": i == 0}) + "\n" for i, line in enumerate(lines)),
                          encoding="utf-8")
    r = evaluate(run, "m2.json")
    assert r.exit_code == 0, r.output
    assert f"{run['ckpt'] / TILED_THRESHOLDS_FILE} was chosen since these predictions were made" in text(r)


def test_a_copy_of_the_same_checkpoint_over_it_is_no_change(run, tmp_path):
    """Copied back whole (new inodes, every stat other): hashed, found equal, and judged as before."""
    spare = tmp_path / "spare"
    shutil.copytree(run["ckpt"], spare)
    shutil.rmtree(run["ckpt"])
    time.sleep(0.01)
    shutil.copytree(spare, run["ckpt"])
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0 and "changed since" not in text(r), r.output


def test_a_checkpoint_moved_away_since_is_named(run, tmp_path):
    run["ckpt"].rename(tmp_path / "moved")
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0, r.output
    assert f"{run['ckpt']}, the checkpoint that made {run['out']}, is not there (moved or deleted)" in text(r)


def test_a_tile_scale_chosen_since_predictions_through_tiles_is_named_not_refused(run):
    """`bbuvl choose-tiles` writes tile_scale.json into the checkpoint after predict (the demo runs it while the
    close-ups are scored): eval reads nothing of it, so it refuses nothing, and names it for photos cut into tiles."""
    lines = [json.loads(line) for line in run["out"].read_text(encoding="utf-8").splitlines()]
    run["out"].write_text("".join(json.dumps({**line, "tiled": i == 0}) + "\n" for i, line in enumerate(lines)),
                          encoding="utf-8")
    (run["ckpt"] / "tile_scale.json").write_text('{"scale": 0.75}\n', encoding="utf-8")
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0, r.output
    assert f"{run['ckpt'] / 'tile_scale.json'} was chosen since these predictions were made" in text(r)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_hierarchy_edited_since_the_predictions_is_named(run, tmp_path):
    """The run config names its hierarchy by path: edited in place since predict (a state made a fault), the model is
    the same and eval goes on, saying its fault metrics follow other faults than the lines' verdicts did."""
    from bbuvl.config import dump_config, read_run_config
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    # Predicted by the run config's own hierarchy file, then that file edited in place.
    own = tmp_path / "hierarchy.json"
    shutil.copy(DEFAULT_HIERARCHY, own)
    cfg = read_run_config(run["ckpt"])
    (run["ckpt"] / "bbuvl.yaml").write_text(dump_config(cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"hierarchy": str(own)})})), encoding="utf-8")
    r = invoke(["predict", "-c", run["ckpt"], "-i", run["gt"], "-o", run["out"], "--mode", "head", "--device", "cpu",
                "--overwrite"])
    assert r.exit_code == 0, r.output
    r = evaluate(run, "m0.json")
    assert r.exit_code == 0 and "other content than the one their lines" not in text(r), r.output
    from tests.eval.test_choosing_for_the_model import hierarchy_with_one_more_fault

    hierarchy_with_one_more_fault(own)  # a sound state made a fault, in the file the run config names
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0, r.output
    assert f"the hierarchy these predictions are judged by ({own}) has other content" in text(r)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_hierarchy_given_to_predict_is_named_as_what_judged_the_lines(run, tmp_path):
    """`predict --hierarchy` judged the lines by other faults than the run config's hierarchy, which eval judges by: the
    note named every cause but that one, the commonest."""
    from tests.eval.test_choosing_for_the_model import hierarchy_with_one_more_fault

    own = hierarchy_with_one_more_fault(tmp_path / "hierarchy.json")
    r = invoke(["predict", "-c", run["ckpt"], "-i", run["gt"], "-o", run["out"], "--mode", "head", "--device", "cpu",
                "--hierarchy", own, "--overwrite"])
    assert r.exit_code == 0, r.output
    r = evaluate(run, "m1.json")
    assert r.exit_code == 0, r.output
    assert "(given to predict as --hierarchy, edited since" in text(r)
    assert "give eval the hierarchy predict judged by as --hierarchy to judge as the lines were" in text(r)
    r = evaluate(run, "m2.json", "--hierarchy", own)
    assert r.exit_code == 0 and "other content than the one their lines" not in text(r), r.output


def test_predictions_that_name_no_checkpoint_are_not_judged_by_the_one_in_the_working_folder(run, tmp_path, monkeypatch):
    """`run_predictions` of a library caller records no checkpoint (""): read as a path, that was the folder eval runs
    in, and a run's checkpoint there judged them by its thresholds and frame."""
    from bbuvl.infer.batch import PredictJob, run_predictions

    lines = {json.loads(line)["image"]: json.loads(line) for line in run["out"].read_text(encoding="utf-8").splitlines()}
    out = tmp_path / "library.jsonl"
    job = PredictJob(list(lines), out, mode="head", source=str(run["gt"]), root=run["gt"].parent)
    run_predictions(job, lambda paths: [dict(lines[Path(p).relative_to(run["gt"].parent).as_posix()]) for p in paths])
    ChosenThresholds(VerdictThresholds(0.01, 0.02), 0.9, 0.9, 1.0, 1.0, 2, 1, ["x"], "val.jsonl").save(run["ckpt"])
    monkeypatch.chdir(run["ckpt"])  # a checkpoint's folder, as one works in after training
    r = invoke(["eval", "--pred", out, "--gt", run["gt"], "--out", tmp_path / "m.json"])
    assert r.exit_code == 0, r.output
    # Before: "thresholds: verdict_thresholds.json (chosen on val.jsonl)", the working folder's, and its frame's sizes.
    assert "chosen on val.jsonl" not in text(r) and "the config's defaults" in text(r)
    details = json.loads((tmp_path / "m.coco.json").read_text(encoding="utf-8"))
    assert details["size_tokens"] is None
