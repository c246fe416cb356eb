"""`bbuvl eval --choose-thresholds` writes into the checkpoint its predictions' manifest names: refused when that
checkpoint is no longer the model that made them, or on other faults than it judges by; thresholds chosen for other
faults judge no photo."""

from __future__ import annotations

import json

import pytest

from bbuvl.config import Config, dump_config
from bbuvl.eval.judging import verdict_setup
from bbuvl.infer.output import Manifest, claim_output, manifest_path
from bbuvl.infer.resume_key import resume_key
from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds, VerdictThresholds
from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import OK, run


def keyed(gt, pred, ckpt, tiles: str = "off") -> None:
    """Give the predictions the manifest `bbuvl predict` writes: what decided them, the checkpoint's files by content."""
    ckpt.joinpath("model.safetensors").write_bytes(b"weights of the model that predicted")
    key = resume_key([(n, gt.parent / n) for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")], ckpt, None, "head",
                     {"tiles": tiles})
    lines = pred.read_text(encoding="utf-8")
    pred.unlink()
    manifest_path(pred).unlink()
    claim_output(pred, Manifest(input=str(gt), checkpoint=str(ckpt), mode="head", key=key))
    pred.write_text(lines, encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_retrained_since_the_predictions_gets_no_thresholds_chosen_on_them(files, tmp_path):
    gt, pred, ckpt = files
    keyed(gt, pred, ckpt)
    run(gt, pred, tmp_path / "m1.json", "--choose-thresholds")
    # Its own choice, and a tile scale chosen since, change no score of photos predicted with tiles off.
    ckpt.joinpath("tile_scale.json").write_text("{}", encoding="utf-8")
    run(gt, pred, tmp_path / "m2.json", "--choose-thresholds", "--target-recall", "1", "--overwrite")
    assert ChosenThresholds.load(ckpt).target_recall == 1.0
    before = ckpt.joinpath(THRESHOLDS_FILE).read_bytes()

    ckpt.joinpath("model.safetensors").write_bytes(b"weights trained again in the same folder")
    ckpt.joinpath("head.safetensors").write_bytes(b"a file the model did not have")
    output = " ".join(run(gt, pred, tmp_path / "m3.json", "--choose-thresholds", "--overwrite", ok=False).split())
    # Before: chosen on the old model's scores and written into the new model's folder.
    assert (f"error: {pred}: predicted by {ckpt} as it was before its head.safetensors (added), model.safetensors "
            "changed") in output
    assert ckpt.joinpath(THRESHOLDS_FILE).read_bytes() == before
    # Evaluating them is refused too unless the command line gives all that judges them (the checkpoint's is another's)
    assert "--hierarchy, --verdict-review and --verdict-fail" in " ".join(run(gt, pred, tmp_path / "m3.json",
                                                                              ok=False).split())
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    run(gt, pred, tmp_path / "m3.json", "--hierarchy", str(DEFAULT_HIERARCHY), "--verdict-review", "0.4",
        "--verdict-fail", "0.9")


def test_a_tile_scale_chosen_since_predictions_made_through_tiles_is_a_change(files, tmp_path):
    gt, pred, ckpt = files
    lines = [json.loads(line) for line in pred.read_text(encoding="utf-8").splitlines()]
    pred.write_text("".join(json.dumps({**line, **({"tiled": True} if i == 0 else {})}) + "\n"
                            for i, line in enumerate(lines)), encoding="utf-8")
    keyed(gt, pred, ckpt, tiles="auto")
    ckpt.joinpath("tile_scale.json").write_text("{}", encoding="utf-8")
    output = " ".join(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False).split())
    assert "its tile_scale.json (added) changed" in output and not ckpt.joinpath(THRESHOLDS_FILE).exists()


def test_a_tile_scale_chosen_since_under_tiles_auto_that_cut_no_photo_is_no_change(files, tmp_path):
    """Close-ups under `tiles: auto` get no tile: the scale `bbuvl choose-tiles` writes meanwhile (the demo runs both
    choosers on one checkpoint at once) decides none of their scores, and must not stop their thresholds."""
    gt, pred, ckpt = files
    keyed(gt, pred, ckpt, tiles="auto")
    ckpt.joinpath("tile_scale.json").write_text("{}", encoding="utf-8")
    run(gt, pred, tmp_path / "m.json", "--choose-thresholds")
    assert ckpt.joinpath(THRESHOLDS_FILE).exists()


def hierarchy_with_one_more_fault(path):
    """The shipped hierarchy with a sound state of the first judged kind made a fault, written to `path`."""
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    cat, attr, sound = OK.split("/") if OK.count("/") == 2 else (*OK.split("/"), None)
    if sound is not None:
        raw["categories"][cat]["attributes"][attr]["states"][sound] = {"gloss": "now a fault", "fault": True}
    else:
        raw["categories"][cat]["attributes"][attr]["fault"] = True
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return path


def test_thresholds_are_not_chosen_on_other_faults_than_the_checkpoint_judges_by(files, tmp_path):
    gt, pred, ckpt = files
    other = hierarchy_with_one_more_fault(tmp_path / "other.json")
    output = " ".join(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", "--hierarchy", str(other),
                          ok=False).split())
    # Before: chosen with OK a fault, written, and then judging the checkpoint's photos, where OK is sound.
    assert f"error: {other}: marks other faults than the hierarchy of {ckpt} (added: {OK})" in output
    assert not ckpt.joinpath(THRESHOLDS_FILE).exists()


def test_thresholds_chosen_for_other_faults_judge_no_photo_and_say_so(files, tmp_path):
    from bbuvl.config import load_config

    gt, pred, ckpt = files
    run(gt, pred, tmp_path / "m1.json", "--choose-thresholds", "--target-recall", "1", "--target-precision", "1")
    assert verdict_setup(pred).thresholds.whole == VerdictThresholds(0.4, 0.9)
    # The checkpoint's hierarchy file is edited since: OK is now a fault too, and the photos' fault scores with it.
    own = hierarchy_with_one_more_fault(tmp_path / "own.json")
    cfg = load_config(ckpt / "bbuvl.yaml", [f"data.hierarchy={own}"])
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    setup = verdict_setup(pred)
    # Before: judged at 0.4 / 0.9, chosen when OK was sound, as if chosen for these faults.
    assert setup.thresholds.whole == VerdictThresholds(Config().inference.verdict_review,
                                                       Config().inference.verdict_fail)
    assert f"{THRESHOLDS_FILE} was chosen when the hierarchy marked other faults (added: {OK})" in setup.source
    said = " ".join(run(gt, pred, tmp_path / "m2.json").split())
    assert "was chosen when the hierarchy marked other faults" in said
