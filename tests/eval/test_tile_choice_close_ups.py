"""`bbuvl choose-tiles` on validation photos that every candidate scale shows whole (close-ups at the training photos'
size): nothing is compared, so nothing is written over the scale chosen before, and the user is told why."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_photos_every_candidate_cuts_alike_choose_nothing_and_keep_the_scale_chosen_before(trained_checkpoint,
                                                                                           small_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    gt = small_dataset / "val.jsonl"  # 224x168 photos, the training photos' size: shown whole below the training scale

    def choose(factors, out):
        return CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(out), "--factors",
                                        factors, "--no-refine", "--device", "cpu"], env={"COLUMNS": "300"})

    one = choose("0.75", tmp_path / "first")  # one candidate is the user's own choice: written
    assert one.exit_code == 0, one.output
    earlier = (ckpt / "tile_scale.json").read_bytes()
    result = choose("0.5,0.75", tmp_path / "cands")
    assert result.exit_code == 2, result.output
    # Before: "chose scale ... written to ckpt/tile_scale.json", over the one chosen before, on one prediction.
    said = " ".join(result.output.split())
    assert (f"error: {gt}: every candidate scale (" in said
            and "cuts its 2 photos alike, 1x1 (2) (none of them is cut into tiles), so these photos cannot tell the "
                "scales apart and none is written" in said), said
    assert (ckpt / "tile_scale.json").read_bytes() == earlier
    assert not (tmp_path / "cands").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_candidates_that_all_score_the_same_are_said_to_be_a_tie_broken_by_cost(trained_checkpoint, small_dataset,
                                                                                tmp_path):
    import json

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(small_dataset / "val.jsonl"), "-o",
                                      str(tmp_path / "cands"), "--factors", "1,1.25", "--no-refine", "--device", "cpu"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    written = json.loads((ckpt / "tile_scale.json").read_text(encoding="utf-8"))
    grids = {json.dumps(c["grids"]) for c in written["candidates"]}
    scores = {c["score"] for c in written["candidates"]}
    assert len(grids) == 2 and scores == {0.0}, written  # the 2-step checkpoint finds nothing, whole or in 2x2 tiles
    said = " ".join(result.output.split())
    assert ("note: every candidate scored AP50 0.000 (no object of the categories compared was found at any scale): "
            "these photos do not tell the scales apart, and the cheapest is written as a tie-break") in said, said
