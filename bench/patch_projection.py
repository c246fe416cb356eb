"""The vision tower's patch embedding as a 3-D convolution vs as a matrix product, measured side by side.

    .venv/bin/python bench/patch_projection.py [--steps 12] [--threads 1]

Two measurements, each alternating the two forms on the same inputs so machine noise hits both alike:
1. the patch embedding alone, forward and backward, at the tiny model's width (64) and at Qwen2.5-VL-3B's (1,280),
   for the patches of one stage-A batch (8 photos at 224x224: 2,048 patches);
2. whole training steps (forward + backward, no optimizer step) of `make demo`'s stage A recipe
   (configs/demo_shapes.yaml: tiny Qwen2.5-VL with its head, batch 8) on the same batches.
It prints milliseconds for each and the convolution / matrix-product ratio (model/patch_projection.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bbuvl.config import load_config
from bbuvl.encode.collate import PaddedCollator
from bbuvl.model.patch_projection import LinearPatchProjection
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import build_run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
FORMS = {"convolution": nn.Conv3d, "matrix product": LinearPatchProjection}


def _time(fn, reps: int) -> float:
    """Mean seconds of `fn()` over `reps` calls."""
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def embedding_alone(width: int, patches: int, steps: int) -> dict[str, float]:
    """Seconds per forward + backward of a 3x2x14x14 -> `width` patch embedding over `patches` patches, per form."""
    torch.manual_seed(0)
    module = nn.Conv3d(3, width, kernel_size=(2, 14, 14), stride=(2, 14, 14), bias=False)
    x = torch.randn(patches, 3, 2, 14, 14)

    def step() -> None:
        module(x).square().mean().backward()
        module.zero_grad(set_to_none=True)

    seconds = {name: 0.0 for name in FORMS}
    for i in range(steps + 1):
        for name, cls in (FORMS.items() if i % 2 == 0 else reversed(FORMS.items())):
            module.__class__ = cls
            took = _time(step, 3)
            seconds[name] += took if i > 0 else 0.0  # the first round warms up
    return {name: s / steps for name, s in seconds.items()}


def training_steps(steps: int) -> dict[str, float]:
    """Seconds per stage-A training step (forward + backward), per form of the patch embedding."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize_shapes(tmp / "data", 8 * steps, 2, seed=5, size=(224, 224), min_objects=1, max_objects=1)
        build_tiny_model(tmp / "model", seed=0)
        cfg = load_config(CONFIG, [f"model.path={tmp / 'model'}", f"data.train={tmp / 'data' / 'train.jsonl'}",
                                   "data.val=null", f"training.output_dir={tmp / 'run'}", "monitor.enabled=false"])
        run = build_run(cfg)
        proj = next(m for m in run.model.modules() if isinstance(m, nn.Conv3d))
        tok = run.processor.tokenizer
        collate = PaddedCollator(pad_token_id=tok.pad_token_id, image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
        batches = [collate([run.train_dataset[s * 8 + i] for i in range(8)]) for s in range(steps)]
        run.model.train()
        seconds = {name: 0.0 for name in FORMS}
        for i, batch in enumerate(batches):
            for name, cls in (FORMS.items() if i % 2 == 0 else reversed(FORMS.items())):
                proj.__class__ = cls
                t0 = time.perf_counter()
                run.model(batch).loss.backward()
                run.model.zero_grad(set_to_none=True)
                seconds[name] += time.perf_counter() - t0 if i > 0 else 0.0
        return {name: s / (steps - 1) for name, s in seconds.items()}


def main() -> None:
    """Run both measurements and print milliseconds and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); milliseconds, forward + backward")
    print(f"{'what':<48} {'convolution':>12} {'matrix product':>15} {'ratio':>7}")
    for width in (64, 1280):
        s = embedding_alone(width, 2048, args.steps)
        print(f"{f'patch embedding alone, 2,048 patches -> {width}':<48} {s['convolution'] * 1e3:12.1f} "
              f"{s['matrix product'] * 1e3:15.1f} {s['convolution'] / s['matrix product']:6.2f}x")
    s = training_steps(args.steps)
    print(f"{'stage-A training step (batch 8, tiny model + head)':<48} {s['convolution'] * 1e3:12.1f} "
          f"{s['matrix product'] * 1e3:15.1f} {s['convolution'] / s['matrix product']:6.2f}x")


if __name__ == "__main__":
    main()
