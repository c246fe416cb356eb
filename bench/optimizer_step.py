"""AdamW's step on the CPU: torch's default (one tensor at a time), its multi-tensor path and the fused kernel.

    .venv/bin/python bench/optimizer_step.py [--steps 50] [--threads 1]

For `make demo`'s two recipes (configs/demo_shapes.yaml, configs/demo.yaml) it builds the tiny Qwen2.5-VL with its
head, groups the parameters as training does (train/param_groups.py), gives every parameter a random gradient and
alternates the three optimizers' steps, so machine noise hits all alike. It prints milliseconds per step, the
ratio to the default, and the largest weight difference from the default after the steps (fused and the default
are the same update to float rounding). Training uses fused on the CPU (train/param_groups.py, `fused_on_cpu`).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from bbuvl.config import load_config
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.param_groups import optimizer_groups
from bbuvl.train.trainer import build_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def recipe(config: str, steps: int) -> dict[str, float]:
    """Seconds per AdamW step of each arm on the recipe's model, and each arm's largest weight difference."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize_shapes(tmp / "data", 4, 2, seed=5, size=(224, 224))
        build_tiny_model(tmp / "model", seed=0)
        cfg = load_config(CONFIGS / config, [
            f"model.path={tmp / 'model'}", f"data.train={tmp / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={tmp / 'run'}", "monitor.enabled=false", "model.reuse_modules=false"])
        base = build_run(cfg).model
    models = {arm: copy.deepcopy(base) for arm in ARMS}
    optimizers = {}
    for arm, kwargs in ARMS.items():
        groups = optimizer_groups(models[arm], cfg.training.lr, cfg.training.weight_decay)
        optimizers[arm] = torch.optim.AdamW(groups, **kwargs)
    gen = torch.Generator().manual_seed(0)
    seconds = dict.fromkeys(ARMS, 0.0)
    for step in range(steps + 1):
        grads = [torch.randn(p.shape, generator=gen) for p in base.parameters()]
        for arm in (list(ARMS) if step % 2 == 0 else list(reversed(ARMS))):
            for p, g in zip(models[arm].parameters(), grads):
                p.grad = g.clone() if p.requires_grad else None
            t0 = time.perf_counter()
            optimizers[arm].step()
            seconds[arm] += time.perf_counter() - t0 if step > 0 else 0.0  # the first round warms up
    out = {arm: s / steps for arm, s in seconds.items()}
    out["params"] = float(sum(p.numel() for p in base.parameters() if p.requires_grad))
    for arm in ARMS:
        out[f"diff {arm}"] = max(float((a - b).detach().abs().max()) for a, b in
                                 zip(models[arm].parameters(), models["default"].parameters()))
    return out


def main() -> None:
    """Run both recipes and print milliseconds per optimizer step and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); milliseconds per AdamW step, {args.steps} steps")
    print(f"{'recipe':<22} {'params':>9} " + " ".join(f"{a:>9}" for a in ARMS) + f" {'fused x':>8} {'max diff':>9}")
    for config in ("demo_shapes.yaml", "demo.yaml"):
        r = recipe(config, args.steps)
        print(f"{config:<22} {r['params']:9.0f} " + " ".join(f"{r[a] * 1e3:9.2f}" for a in ARMS)
              + f" {r['default'] / r['fused']:7.2f}x {r['diff fused']:9.1e}")


if __name__ == "__main__":
    main()
