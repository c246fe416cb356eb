"""A run started from a checkpoint's folder says when it builds the head and positions there new, leaving them unused."""

from __future__ import annotations

import logging

from bbuvl.train.run_inputs import check_start


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "model.reuse_modules is false" in r.getMessage()]


def test_a_checkpoints_trained_head_left_unused_is_said(run_config, trained_checkpoint, caplog):
    # Before: `model.path=RUN/final` (as a refused resume advises, to go on from its weights) trained a new head from
    # random weights without a word, the checkpoint's trained one unused
    with caplog.at_level(logging.WARNING):
        check_start(run_config(f"model.path={trained_checkpoint}", "model.vision_positions=false"))
    assert notes(caplog) == [f"model.path {trained_checkpoint} holds detection_head.safetensors (its trained detection "
                             "head), and model.reuse_modules is false: this run builds it new and leaves that one unused; "
                             "set model.reuse_modules: true to start from it (what fits the run's labels and queries "
                             "carries over)"]


def test_a_start_reusing_them_or_building_no_head_or_from_a_base_model_says_nothing(run_config, trained_checkpoint,
                                                                                    tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        check_start(run_config(f"model.path={trained_checkpoint}", "model.reuse_modules=true"))
        check_start(run_config(f"model.path={trained_checkpoint}", "detection.enabled=false",
                               "model.vision_positions=false"))
        check_start(run_config(f"model.path={tiny_model_dir}"))
    assert notes(caplog) == []
