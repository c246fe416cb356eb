"""AdamW on the CPU: the fused kernel, the same update as torch's default loop (train/param_groups.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from bbuvl.config import LearningRates
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.param_groups import fused_on_cpu, optimizer_groups
from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[2] / "bench" / "optimizer_step.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_fused_adamw_gives_the_default_update_to_float_rounding(tmp_path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(build_tiny_model(tmp_path / "tiny", seed=0))
    lr = LearningRates(vision=1e-3, merger=1e-3, llm=3e-3, detection=1e-3, adapter=1e-3)
    start = [p.detach().clone() for p in model.parameters()]
    copies = {"default": model, "fused": copy.deepcopy(model)}
    optimizers = {}
    for arm, m in copies.items():
        groups = optimizer_groups(m, lr, 0.01)
        optimizers[arm] = torch.optim.AdamW(groups, fused=fused_on_cpu(groups) if arm == "fused" else None)
    assert optimizers["fused"].defaults["fused"] and not optimizers["default"].defaults["fused"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen) for p in model.parameters()]
        for arm, m in copies.items():
            for p, g in zip(m.parameters(), grads):
                p.grad = g.clone()
            optimizers[arm].step()
    moved = max(float((a.detach() - b).abs().max()) for a, b in zip(model.parameters(), start))
    assert moved > 1e-3  # the steps changed the weights, so equal weights below mean equal updates
    for a, b in zip(copies["default"].parameters(), copies["fused"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_only_float_parameters_on_the_cpu_get_the_fused_kernel():
    assert fused_on_cpu([{"params": [torch.nn.Parameter(torch.zeros(2))]}]) is True
    assert fused_on_cpu([{"params": [torch.zeros(2, dtype=torch.int64)]}]) is None
    assert fused_on_cpu([{"params": []}]) is None


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bench_prints_both_recipes_with_the_fused_ratio():
    code, out, err = run_bench_in_process(BENCH, ["--steps", "2"])
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("demo")]
    assert [r.split()[0] for r in rows] == ["demo_shapes.yaml", "demo.yaml"], out
    for r in rows:
        ratio, diff = r.split()[-2:]
        assert float(ratio.rstrip("x")) > 0 and float(diff) < 1e-5, r
