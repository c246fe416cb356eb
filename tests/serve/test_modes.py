"""The mode a server answers in, and the thresholds each answer is judged by."""

from __future__ import annotations

import shutil


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
