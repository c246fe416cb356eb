"""`bbuvl eval --choose-thresholds` writes into the checkpoint its predictions' manifest names: refused when that
checkpoint is no longer the model that made them."""

from __future__ import annotations

from bbuvl.infer.output import Manifest, claim_output, manifest_path
from bbuvl.infer.resume_key import resume_key
from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds
from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import run


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
    run(gt, pred, tmp_path / "m3.json")  # evaluating them without choosing is still allowed


def test_a_tile_scale_chosen_since_predictions_made_through_tiles_is_a_change(files, tmp_path):
    gt, pred, ckpt = files
    keyed(gt, pred, ckpt, tiles="auto")
    ckpt.joinpath("tile_scale.json").write_text("{}", encoding="utf-8")
    output = " ".join(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False).split())
    assert "its tile_scale.json (added) changed" in output and not ckpt.joinpath(THRESHOLDS_FILE).exists()
