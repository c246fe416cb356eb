"""Shared fixtures: a tiny offline Qwen2.5-VL (built once per session) and small synthetic images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL checkpoint saved with save_pretrained (same loading path as a real one)."""
    from bbuvl.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, processor) loaded through bbuvl's one loading path, in eval mode, fp32."""
    from bbuvl.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")
    model.eval()
    return model, processor
