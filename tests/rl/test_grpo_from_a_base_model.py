"""configs/grpo.yaml from a base model's folder (rl/start_notes.py `plain_start`): the model and detection defaults a
plain folder's run builds with are said at the start and by `bbuvl config check`, and the checkpoint exports; from a
checkpoint, the checkpoint's own settings are kept."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import load_config, read_run_config
from bbuvl.rl.trainer import train_grpo

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = Path(__file__).resolve().parents[2] / "configs"
# The shipped file's 3B-sized settings made tiny and CPU-only, as a user trying it first would
TINY = ["model.dtype=float32", "training.max_steps=1", "training.logging_steps=1", "training.bf16=false",
        "training.use_cpu=true", "training.gradient_checkpointing=false", "training.per_device_batch_size=2",
        "training.gradient_accumulation_steps=1", "grpo.group_size=2", "grpo.max_new_tokens=24", "data.num_workers=0"]


def invoke(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return r.exit_code, " ".join(r.output.split())


def grpo(model: Path, data: Path, out: Path, caplog, *overrides: str) -> tuple[Path, str]:
    """(final/, what the run warned) of configs/grpo.yaml from `model` for one step."""
    cfg = load_config(SHIPPED / "grpo.yaml", [f"model.path={model}", f"data.train={data / 'train.jsonl'}",
                                              f"training.output_dir={out}", *TINY, *overrides])
    with caplog.at_level(logging.WARNING, logger="bbuvl.rl.trainer"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        final = Path(train_grpo(cfg, progress=False)["final"])
    # float() of the loss that requires grad warned on every micro-batch of every run
    assert not [w for w in caught if "requires_grad" in str(w.message)], [str(w.message) for w in caught]
    return final, " ".join(r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_shipped_grpo_config_from_a_base_model_trains_a_checkpoint_that_exports(tiny_model_dir, small_dataset,
                                                                                    tmp_path, caplog):
    # Before: config.py's defaults trained vision positions and an untrained head, unsaid, and `model export` refused
    final, said = grpo(tiny_model_dir, small_dataset, tmp_path / "grpo", caplog)
    assert "the config leaves detection.enabled to its default, true: GRPO never trains a detection head" in said, said
    assert "vision_positions" not in said, said  # the shipped config sets it
    saved = read_run_config(final)
    assert not saved.model.vision_positions and not saved.detection.enabled
    assert not (final / "vision_positions.safetensors").exists() and not (final / "detection_head.safetensors").exists()
    code, out = invoke("model", "export", final, tmp_path / "export")
    assert code == 0 and "left out: nothing" in out, out


def test_a_grpo_config_that_leaves_vision_positions_out_says_so_at_the_start_and_in_config_check(
        tiny_model_dir, small_dataset, tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text((SHIPPED / "grpo.yaml").read_text("utf-8").replace("  vision_positions: false\n", ""), "utf-8")
    code, said = invoke("config", "check", config, f"model.path={tiny_model_dir}",
                        f"data.train={small_dataset / 'train.jsonl'}", "training.max_steps=3")
    assert code == 0 and "leaves model.vision_positions to its default, true" in said, said
    assert "leaves detection.enabled to its default" in said, said
    # What grpo_ignores says at the start, config check said for SFT's notes alone
    assert "training.method grpo ignores training.logging_steps (5): the run stops at training.max_steps (3)" in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_shipped_grpo_config_from_a_checkpoint_keeps_its_vision_positions_and_head(trained_checkpoint,
                                                                                       small_dataset, tmp_path, caplog):
    assert read_run_config(trained_checkpoint).model.vision_positions  # trained at config.py's default
    final, said = grpo(trained_checkpoint, small_dataset, tmp_path / "grpo", caplog, "model.min_pixels=12544",
                       "model.max_pixels=50176")
    assert "model.vision_positions False (the checkpoint's: True)" in said, said
    saved = read_run_config(final)
    assert saved.model.vision_positions and saved.detection.enabled
    assert (final / "vision_positions.safetensors").exists() and (final / "detection_head.safetensors").exists()
