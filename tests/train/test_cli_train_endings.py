"""What `bbuvl train` prints at its end: a run the non-finite guard stops is one `error:` line naming the step and
health.json, not a traceback; and the loss table's columns are the terms of either of its rows, so the head's terms,
frozen for the first epoch (training.detection_freeze_epochs), are not left out of a run that trained them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


def common(tiny_model_dir, small_dataset, out) -> list[str]:
    """A tiny CPU run's config file and overrides, logging every step."""
    config = out.parent / "run.yaml"
    config.write_text("{}  # every key from the command line\n", encoding="utf-8")
    return [str(config), f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
            f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
            f"training.output_dir={out}", "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1",
            "training.logging_steps=1", "training.save_steps=100", "training.bf16=false",
            "training.gradient_checkpointing=false", "training.use_cpu=true", "monitor.enabled=false",
            "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
            "detection.decoder_layers=1"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_the_non_finite_guard_stops_ends_in_one_error_line(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *common(tiny_model_dir, small_dataset, out),
                                 "training.max_steps=12", "training.max_consecutive_nan=2", "training.lr.llm=1e30",
                                 "training.lr.detection=1e30", "training.lr.adapter=1e30", "training.warmup_ratio=0"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "consecutive steps with non-finite loss or gradients" in text and "health.json" in text, r.output
    assert "Traceback" not in r.output and not (out / "final").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_loss_table_shows_the_head_terms_a_first_epoch_froze(tiny_model_dir, small_dataset, tmp_path):
    r = CliRunner().invoke(app, ["train", *common(tiny_model_dir, small_dataset, tmp_path / "run"),
                                 "training.max_steps=6", "training.detection_freeze_epochs=1"])
    assert r.exit_code == 0, r.output
    table = r.output[r.output.index("training loss (first, last)"):]
    assert "loss_bbox" in table or "loss_…" in table, table  # a head term is a column
    first = next(line for line in table.splitlines() if line.strip("│ ").startswith("1 "))
    assert "-" in [cell.strip() for cell in first.split("│")], table  # the first row had no head term: '-' there
