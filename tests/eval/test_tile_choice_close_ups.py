"""`bbuvl choose-tiles` on validation photos that every candidate scale shows whole (close-ups at the training photos'
size): nothing is compared, so nothing is written over the scale chosen before, and the user is told why."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from bbuvl.cli import app


def test_photos_every_candidate_cuts_alike_choose_nothing_and_keep_the_scale_chosen_before(trained_checkpoint,
                                                                                           small_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    gt = small_dataset / "val.jsonl"  # 224x168 photos, the training photos' size: shown whole at every scale up to 1

    def choose(factors, out):
        return CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(out), "--factors",
                                        factors, "--no-refine", "--device", "cpu"], env={"COLUMNS": "300"})

    one = choose("0.75", tmp_path / "first")  # one candidate is the user's own choice: written
    assert one.exit_code == 0, one.output
    earlier = (ckpt / "tile_scale.json").read_bytes()
    result = choose("0.5,0.75,1", tmp_path / "cands")
    assert result.exit_code == 2, result.output
    # Before: "chose scale 1 ... written to ckpt/tile_scale.json", over the one chosen before, on one prediction.
    said = " ".join(result.output.split())
    assert (f"error: {gt}: every candidate scale (" in said
            and "cuts its 2 photos alike, 1x1 (2) (none of them is cut into tiles), so these photos cannot tell the "
                "scales apart and none is written" in said), said
    assert (ckpt / "tile_scale.json").read_bytes() == earlier
    assert not (tmp_path / "cands").exists()
