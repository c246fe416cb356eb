"""Fixtures for the training tests: training configs derived from the session's trained tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbuvl.config import Config, load_config
from bbuvl.train.param_groups import GROUPS
from tests.diagnostics.conftest import one_thread  # noqa: F401 - training runs here too: one torch thread


@pytest.fixture(scope="session")
def monitor_config(trained_checkpoint, small_dataset):
    """`make(output_dir, *overrides)`: the trained checkpoint's run config with validation, LR 1e-3, a log per step
    and no gradient accumulation (the checkpoint's run used the default 8)."""

    def make(out: Path, *overrides: str) -> Config:
        return load_config(trained_checkpoint / "bbuvl.yaml", [
            f"training.output_dir={out}", f"data.val={small_dataset / 'val.jsonl'}", "training.logging_steps=1",
            "training.gradient_accumulation_steps=1", "training.warmup_ratio=0", "detection.dropout=0.0",
            *(f"training.lr.{g}=1e-3" for g in GROUPS), *overrides,
        ])

    return make
