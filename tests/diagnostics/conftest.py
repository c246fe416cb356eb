"""Fixtures for the diagnostics tests: the session's trained tiny checkpoint, loaded for inference."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread while these tests run: on the shared 2-core machine, 2 OpenMP threads competing with other
    processes made a tiny training step ~8 s instead of ~0.15 s (measured 2026-11-21, load average ~4)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def predictor(trained_checkpoint):
    """The trained tiny checkpoint, loaded for inference on CPU (shared: tests must leave it as they found it)."""
    from bbuvl.infer.predictor import Predictor

    return Predictor.load(trained_checkpoint, device="cpu")
