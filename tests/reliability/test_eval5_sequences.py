"""Sequences of commands around `bbuvl eval` and `viz`: predict, a step that changes what predict read, then eval.

Real files throughout: the tiny trained checkpoint predicts a dataset of the test's own, the dataset is changed on
disk, and what eval and viz then say is run as they say it.
"""

from __future__ import annotations

import re
import shlex

import pytest
from PIL import Image, ImageDraw

from tests.reliability.test_eval4_predictions_judged_by_their_own_checkpoint import invoke, text
from tests.reliability.test_eval5_metrics_name_their_model import evaluate, predicted, run  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_changed_since_predict_is_named_as_changed_and_the_command_named_predicts_it_again(run):
    photo = run["gt"].parent / "images" / "val_00000.jpg"
    image = Image.open(photo).convert("RGB")
    ImageDraw.Draw(image).rectangle([0, 0, 40, 40], fill=(255, 0, 0))  # retouched in place, same name and size
    image.save(photo)
    r = evaluate(run, run["pred"], "m.json", "--report", run["pred"].with_name("report"))
    said = text(r)
    # Before: "predicted on other photos (another dataset, or photos changed since); predict on the ground truth's own
    # photos (bbuvl predict -i GT)", which predict refused: the output holds the lines of another input.
    assert r.exit_code == 2 and f"photo images/val_00000.jpg ({photo}) changed since it was predicted" in said, r.output
    assert not run["pred"].with_name("m.json").exists() and not run["pred"].with_name("report").exists()
    v = invoke(["viz", run["pred"], run["pred"].with_name("pictures")])
    assert v.exit_code == 2 and "predict again, with the options it was made with" in text(v), v.output
    command = re.search(r"\(bbuvl predict (.*? --overwrite)\)", said)
    assert command is not None and command.group(0) in text(v)
    p = invoke(["predict", *shlex.split(command.group(1)), "--device", "cpu"])
    assert p.exit_code == 0, p.output
    r = evaluate(run, run["pred"], "m.json", "--report", run["pred"].with_name("report"))
    assert r.exit_code == 0, r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predictions_read_through_a_link_are_judged_and_drawn_by_the_manifest_beside_the_file(run, tmp_path):
    import json
    import os

    latest = tmp_path / "latest"
    latest.mkdir()
    link = latest / "latest.jsonl"  # `ln -s ../pred.jsonl latest/latest.jsonl`, a name that stays while runs change
    os.symlink(os.path.relpath(run["pred"], latest), link)
    r = invoke(["eval", "--pred", link, "--gt", run["gt"], "--out", tmp_path / "m.json"])
    assert r.exit_code == 0, r.output
    # Before: judged by the config's defaults without a word, no sizes in tokens, no model recorded.
    assert f"thresholds: {run['ckpt'] / 'bbuvl.yaml'}" in text(r) and "not at hand" not in text(r)
    predictions = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["settings"]["predictions"]
    assert predictions["checkpoint"] == str(run["ckpt"]) and predictions["mode"] == "head"
    v = invoke(["viz", link, tmp_path / "pictures"])
    assert v.exit_code == 0 and "drew 2 photo(s)" in text(v), v.output  # it looked for the photos beside the link
