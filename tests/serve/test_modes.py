"""The mode a server answers in, and the thresholds each answer is judged by."""

from __future__ import annotations

import shutil

import pytest


def test_an_answer_in_another_mode_than_the_servers_is_judged_by_the_thresholds_chosen_in_its_own(trained_checkpoint,
                                                                                                tmp_path):
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds
    from bbuvl.serve.engine import Engine

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.0, 0.0), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl", mode="head").save(ckpt)
    predictor = Predictor.load(ckpt, device="cpu")
    config = VerdictThresholds(predictor.cfg.inference.verdict_review, predictor.cfg.inference.verdict_fail)
    engine = Engine(predictor, "head", "ckpt", overrides={"tiles": "2x2"})
    assert engine.options_for("head").thresholds() == VerdictThresholds(0.0, 0.0)
    # The chat route's generate-mode answers were judged by the head's thresholds before, whose scores are on another scale
    assert engine.options_for("generate").thresholds() == config != VerdictThresholds(0.0, 0.0)
    assert engine.options_for("generate").tiles == engine.options.tiles == "2x2"  # the server's own settings still
    default = Engine(predictor, None, "ckpt", overrides={"tiles": "2x2"})  # no mode asked: the checkpoint's, resolved once
    assert default.mode == predictor.cfg.inference.mode
    assert default.options == predictor.options(default.mode, tiles="2x2")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bbuvl_serve_says_when_the_checkpoints_thresholds_were_chosen_for_other_faults(trained_checkpoint, tmp_path):
    from bbuvl.data.faults import Faults
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds, VerdictThresholds

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    judged = sorted(Faults.load(Predictor.load(ckpt, device="cpu").cfg.data.hierarchy).labels)
    chosen = ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, judged[1:], "val.jsonl", mode="head")
    chosen.save(ckpt)  # chosen when the hierarchy marked one fault fewer
    notes = Predictor.load(ckpt, device="cpu").threshold_notes("name")
    # serve judged by the run config's thresholds, as predict, but said nothing of why; nor that the mode differs
    assert any(f"{THRESHOLDS_FILE} was chosen when the hierarchy marked other faults" in n for n in notes), notes
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, judged, "val.jsonl", mode="head").save(ckpt)
    notes = Predictor.load(ckpt, device="cpu").threshold_notes("name")
    assert len(notes) == 1 and "head mode's predictions, not name mode's" in notes[0], notes
    assert Predictor.load(ckpt, device="cpu").threshold_notes("head") == []
