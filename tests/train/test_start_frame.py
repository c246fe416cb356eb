"""A run started from a fine-tuned folder (a `bbuvl model export`, a checkpoint) whose frame is not the run config's
trained in the config's frame without a word: the model saw every photo, and wrote every box, at another scale than it
learnt. The start now says, once, which frame wins."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bbuvl.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

SAID = "the run's frame wins"


@pytest.fixture(scope="module")
def exported(trained_checkpoint, tmp_path_factory) -> Path:
    """The session's trained checkpoint (12544..50176 pixels) exported, its vision positions dropped."""
    from bbuvl.model.export import PartCost, Scores, export_checkpoint
    from bbuvl.model.checkpoint import POSITIONS_FILE

    out = tmp_path_factory.mktemp("export") / "exported"
    same = Scores(0.0, 0.0, 0.0)
    export_checkpoint(trained_checkpoint, out, [PartCost(POSITIONS_FILE, "val.jsonl", 1, same, same, 0)])
    return out


def started(run_config, start: Path, caplog, *overrides: str) -> list[str]:
    """The warnings of a 1-step run from `start`."""
    cfg = run_config(f"model.path={start}", "training.max_steps=1", "data.val=null", *overrides)
    with caplog.at_level(logging.WARNING):
        train(cfg, progress=False)
    return [r.getMessage() for r in caplog.records if SAID in r.getMessage()]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_from_an_export_at_another_frame_says_once_that_its_own_frame_wins(run_config, exported, caplog):
    said = started(run_config, exported, caplog, "model.min_pixels=3136", "model.max_pixels=200704")
    assert len(said) == 1, said
    assert (f"model.path {exported} learned its boxes at 12544..50176 pixels a photo ({exported / 'preprocessor_config.json'}"
            ", as `bbuvl model export` wrote it), and this run trains at 3136..200704") in said[0]
    assert "set model.min_pixels: 12544 and model.max_pixels: 50176" in said[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_from_a_checkpoint_at_another_frame_says_so_naming_its_contract(run_config, trained_checkpoint, caplog):
    said = started(run_config, trained_checkpoint, caplog, "model.max_pixels=100352")
    assert len(said) == 1 and str(trained_checkpoint / "coordinate_contract.json") in said[0], said
    assert "this run trains at 12544..100352" in said[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_in_the_frame_its_start_learnt_or_from_a_base_model_says_nothing(run_config, exported, tiny_model_dir,
                                                                             tmp_path, caplog):
    assert started(run_config, exported, caplog) == []
    # A base model learnt no frame: its processor's are Qwen's defaults, which a run's config sets aside on purpose.
    assert started(run_config, tiny_model_dir, caplog, "model.max_pixels=100352",
                   f"training.output_dir={tmp_path / 'base-run'}") == []


def test_a_grpo_run_from_a_checkpoint_keeps_the_checkpoints_frame_and_says_nothing_of_its_own(run_config,
                                                                                            trained_checkpoint):
    from bbuvl.train.run_inputs import frame_note

    assert SAID in frame_note(run_config(f"model.path={trained_checkpoint}", "model.max_pixels=100352"))
    # GRPO answers in its starting checkpoint's frame (a config setting another is refused there, rl/trainer.py).
    assert frame_note(run_config(f"model.path={trained_checkpoint}", "model.max_pixels=100352",
                                 "training.method=grpo")) is None
