"""A METRICS.json says which model and which data it scores, and `eval --baseline` names what differs between the two.

Real files throughout: the tiny trained checkpoint predicts the validation photos (`bbuvl predict`), eval writes
METRICS.json, then a sequence changes one thing (the weights trained again in place, another checkpoint, another mode
or tiles, the ground truth edited) and eval of the new predictions is compared with the first as --baseline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bbuvl.data.digests import file_digest
from bbuvl.model.identity import identify
from bbuvl.versions import software
from tests.reliability.test_eval4_predictions_judged_by_their_own_checkpoint import copy_predictions, invoke, text

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def predicted(trained_checkpoint, small_dataset, tmp_path_factory) -> dict[str, Path]:
    """One head-mode predict of the checkpoint over the validation photos, made once: each test changes a copy."""
    root = tmp_path_factory.mktemp("eval5")
    ckpt, data = root / "ckpt", root / "data"
    shutil.copytree(trained_checkpoint, ckpt)
    shutil.copytree(small_dataset, data)
    paths = {"ckpt": ckpt, "gt": data / "val.jsonl", "pred": root / "pred.jsonl"}
    predict(paths, paths["pred"])
    return paths


@pytest.fixture()
def run(predicted, tmp_path) -> dict[str, Path]:
    """A checkpoint and a dataset of this test's own (it changes them), and the checkpoint's head-mode predictions,
    their manifest naming the copies as a predict of the copies would."""
    ckpt, data = tmp_path / "ckpt", tmp_path / "data"
    shutil.copytree(predicted["ckpt"], ckpt)
    shutil.copytree(predicted["gt"].parent, data)
    paths = {"ckpt": ckpt, "gt": data / "val.jsonl", "pred": tmp_path / "pred.jsonl"}
    copy_predictions(predicted["pred"], paths["pred"], ckpt, paths["gt"])
    return paths


def predict(run: dict[str, Path], out: Path, *extra, ckpt: Path | None = None) -> None:
    r = invoke(["predict", "-c", ckpt or run["ckpt"], "-i", run["gt"], "-o", out, "--mode", "head", "--device", "cpu",
                *extra])
    assert r.exit_code == 0, r.output


def evaluate(run: dict[str, Path], pred: Path, out: str, *extra):
    return invoke(["eval", "--pred", pred, "--gt", run["gt"], "--out", pred.with_name(out), *extra])


def metrics(run: dict[str, Path], pred: Path, out: str, *extra) -> tuple[dict, str]:
    r = evaluate(run, pred, out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(pred.with_name(out).read_text(encoding="utf-8")), text(r)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_metrics_record_the_checkpoint_its_identity_the_mode_the_tiles_and_the_ground_truth(run):
    m, _ = metrics(run, run["pred"], "m.json")
    assert m["settings"]["predictions"] == {"file": str(run["pred"]), "checkpoint": str(run["ckpt"]),
                                "model": identify(run["ckpt"]).digest, "mode": "head", "tiles": "off",
                                "software": software()}
    assert m["settings"]["gt"] == str(run["gt"])
    assert m["settings"]["gt_sha256"] == file_digest(run["gt"], "gt").sha256


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_weights_trained_again_in_place_are_named_against_the_baseline(run):
    from safetensors.torch import load_file, save_file

    base, said = metrics(run, run["pred"], "base.json")
    weights = run["ckpt"] / "model.safetensors"
    tensors = load_file(weights)
    tensors = {k: v + 1.0 if i == 0 else v for i, (k, v) in enumerate(sorted(tensors.items()))}
    save_file(tensors, weights, metadata={"format": "pt"})
    again = run["pred"].with_name("again.jsonl")
    predict(run, again)
    m, said = metrics(run, again, "m.json", "--baseline", run["pred"].with_name("base.json"))
    then, now = base["settings"]["predictions"]["model"], m["settings"]["predictions"]["model"]
    assert then != now
    # Before: nothing told the two models apart, the checkpoint's path being the same.
    assert (f"against the baseline: model: {run['ckpt']} held another model when it made the baseline's predictions "
            f"(identity {then[:12]} then, {now[:12]} here") in said


def baseline_of(run: dict[str, Path]) -> list:
    """The first predictions' METRICS.json, as the --baseline of a later evaluation."""
    metrics(run, run["pred"], "base.json")
    return ["--baseline", run["pred"].with_name("base.json")]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_other_tiles_of_the_same_model_are_named_in_one_line(run):
    base = baseline_of(run)
    tiled = run["pred"].with_name("tiled.jsonl")
    predict(run, tiled, "--tiles", "2x1")
    _, said = metrics(run, tiled, "m1.json", *base)
    assert f"against the baseline: model: the same (identity {identify(run['ckpt']).digest[:12]}, at {run['ckpt']})" in said
    assert "against the baseline: tiles: off in the baseline, 2x1 here" in said and "mode:" not in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_another_mode_of_the_same_model_is_named_in_one_line(run):
    base = baseline_of(run)
    generated = run["pred"].with_name("generated.jsonl")
    predict(run, generated, "--mode", "generate", "--max-new-tokens", "8")
    _, said = metrics(run, generated, "m0.json", *base)
    assert "against the baseline: mode: head in the baseline, generate here" in said and "tiles:" not in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_another_checkpoint_is_named_by_both_folders_and_the_same_model_says_so(run, tmp_path):
    from safetensors.torch import load_file, save_file

    base = baseline_of(run)
    other = tmp_path / "other"  # another run: its weights differ
    shutil.copytree(run["ckpt"], other)
    tensors = load_file(other / "detection_head.safetensors")
    save_file({k: v * 0.5 for k, v in tensors.items()}, other / "detection_head.safetensors", metadata={"format": "pt"})
    by_other = run["pred"].with_name("other.jsonl")
    predict(run, by_other, ckpt=other)
    _, said = metrics(run, by_other, "m2.json", *base)
    assert f"against the baseline: model: {run['ckpt']} (identity " in said and f"in the baseline, {other} (identity " in said

    same = run["pred"].with_name("same.jsonl")
    shutil.copy(run["pred"], same)
    shutil.copy(f"{run['pred']}.predict.json", f"{same}.predict.json")
    _, said = metrics(run, same, "m3.json", *base)
    assert "against the baseline: the same model on both sides" in said and "mode head with tiles off" in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_ground_truth_edited_since_the_baseline_is_refused_unless_asked_and_then_named(run):
    metrics(run, run["pred"], "base.json")
    records = [json.loads(line) for line in run["gt"].read_text(encoding="utf-8").splitlines()]
    records[0]["objects"] = records[0]["objects"][:-1]  # an object taken out of the ground truth, in place
    run["gt"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    base = ["--baseline", run["pred"].with_name("base.json")]
    r = evaluate(run, run["pred"], "m.json", *base)
    # Before: the same message as for another file, and no way to compare all the same.
    assert r.exit_code == 2 and f"ground truth {run['gt']} changed since the baseline was evaluated on it" in text(r)
    assert "give --baseline-other-gt to compare" in text(r) and not run["pred"].with_name("m.json").exists()
    _, said = metrics(run, run["pred"], "m.json", *base, "--baseline-other-gt")
    assert "Against the baseline" in said
    assert (f"against the baseline: ground truth {run['gt']} changed since the baseline was evaluated on it" in said
            and "compared as --baseline-other-gt asks" in said)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_another_ground_truth_file_is_refused_naming_both_and_other_settings_are_not_given_up(run):
    metrics(run, run["pred"], "base.json")
    fewer = run["gt"].with_name("val_fewer.jsonl")
    fewer.write_text(run["gt"].read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    r = invoke(["eval", "--pred", run["pred"], "--gt", fewer, "--out", run["pred"].with_name("m.json"),
                "--baseline", run["pred"].with_name("base.json")])
    assert r.exit_code == 2 and f"ground truth {run['gt']} (sha256 " in text(r) and f"{fewer} (sha256 " in text(r)
    r = invoke(["eval", "--pred", run["pred"], "--gt", fewer, "--out", run["pred"].with_name("m.json"),
                "--baseline", run["pred"].with_name("base.json"), "--baseline-other-gt", "--iou", "0.7"])
    assert r.exit_code == 2 and "matching IoU 0.5 in the baseline, 0.7 here" in text(r)
    assert "give --baseline-other-gt" not in text(r)  # it would not help


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_baseline_written_before_the_model_was_recorded_still_compares_with_a_note(run):
    base, _ = metrics(run, run["pred"], "base.json")
    del base["settings"]["predictions"]
    old = run["pred"].with_name("old.json")
    old.write_text(json.dumps(base), encoding="utf-8")
    _, said = metrics(run, run["pred"], "m.json", "--baseline", old)
    assert "Against the baseline" in said
    assert f"against the baseline: {old} does not record which model made its predictions" in said


def test_baseline_other_gt_without_a_baseline_is_refused(run):
    r = evaluate(run, run["pred"], "m.json", "--baseline-other-gt")
    assert r.exit_code == 2 and "--baseline-other-gt applies only with --baseline" in text(r)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_baseline_of_an_unfinished_predict_names_the_photos_it_left_without_a_line(run):
    cut = run["pred"].with_name("cut.jsonl")  # what a predict killed after its first photo leaves
    cut.write_text(run["pred"].read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    shutil.copy(f"{run['pred']}.predict.json", f"{cut}.predict.json")
    metrics(run, cut, "base.json")
    _, said = metrics(run, run["pred"], "m.json", "--baseline", run["pred"].with_name("base.json"))
    # Before: the same model on both sides, and nothing said the baseline's second photo counted as all missed.
    assert "against the baseline: photos without a predictions line: 1 of 2 in the baseline, 0 of 2 here" in said
