"""Vision attention with one SDPA call per window (transformers) vs one per window length (model/window_attention.py),
measured side by side.

    .venv/bin/python bench/window_attention.py [--steps 4] [--threads 2] [--layers 2] [--device cpu]
    python bench/window_attention.py --device cuda --layers 32 --steps 10          # on a lent GPU, bf16

Forward + backward of a randomly initialised vision tower of a real architecture (bench/architectures/, widths and
heads as published, depth cut to --layers with the last block attending over whole images as in the real tower),
each form in turn on the same input, so machine noise hits both alike:
- Qwen2.5-VL-3B's tower (windows of 8 x 8 patches) on one 1148 x 868 photo (the base config's 1280-token frame)
  and on a batch of 8 close-ups at 448 x 336 (the demo's size);
- Qwen3-VL-4B's tower (attention within each image) on the same batch of 8.
It prints milliseconds and the ratio (about 10 minutes on 2 cores). On the CPUs here the two forms take the same time (docs/design.md, "Vision
windows in one call"): the attention calls' overhead is lost in the blocks' arithmetic. The change is for a GPU,
where the arithmetic is fast and each small call costs kernel launches (docs/gpu.md, "Measured on an H200").
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from gpu_model import ARCHITECTURES, cut_depth, read_architecture
from transformers import AutoConfig, AutoModel

from bbuvl.model.window_attention import use_batched_window_attention


def vision_tower(name: str, layers: int, device: str) -> torch.nn.Module:
    """The randomly initialised vision tower of `bench/architectures/<name>.json`, `layers` blocks deep (bf16 on a GPU)."""
    arch = cut_depth(read_architecture(ARCHITECTURES / f"{name}.json"), layers)
    vision = AutoConfig.for_model(**arch).vision_config
    vision._attn_implementation = "sdpa"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModel.from_config(vision, dtype=dtype).to(device).train()


def photos(tower: torch.nn.Module, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patches `[P, C]` and grid `[N, 3]` for photos of `sizes` (width, height), as the processor makes them."""
    cfg = tower.config
    cell = cfg.patch_size * cfg.spatial_merge_size
    grid = torch.tensor([[1, (h // cell) * cfg.spatial_merge_size, (w // cell) * cfg.spatial_merge_size] for w, h in sizes])
    per_patch = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
    weight = next(tower.parameters())
    pixels = torch.randn(int(grid.prod(dim=1).sum()), per_patch, device=weight.device, dtype=weight.dtype)
    return pixels, grid.to(weight.device)


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def side_by_side(tower: torch.nn.Module, pixels: torch.Tensor, grid: torch.Tensor, steps: int) -> dict[str, float]:
    """Mean seconds of forward + backward per form, alternating which runs first."""
    batched = copy.deepcopy(tower)
    assert use_batched_window_attention(batched) == tower.config.depth
    forms = {"per window": tower, "per length": batched}
    seconds = {name: 0.0 for name in forms}
    for i in range(steps + 1):
        for name, module in (forms.items() if i % 2 == 0 else reversed(forms.items())):
            _sync(pixels)
            t0 = time.perf_counter()
            out = module(pixels, grid_thw=grid)
            out = getattr(out, "pooler_output", out)
            out = torch.cat(list(out)) if isinstance(out, (list, tuple)) else out
            out.square().mean().backward()
            module.zero_grad(set_to_none=True)
            _sync(pixels)
            seconds[name] += time.perf_counter() - t0 if i > 0 else 0.0  # the first round warms up
    return {name: s / steps for name, s in seconds.items()}


def main() -> None:
    """Run each case and print milliseconds and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2, help="vision blocks (the real towers: 32 and 24)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no GPU here")
    for name in ("steps", "threads", "layers"):
        if getattr(args, name) < (2 if name == "layers" else 1):
            ap.error(f"--{name} is too small")
    torch.set_num_threads(args.threads)
    cases = [("Qwen2.5-VL-3B-Instruct", "1 photo 1148x868", [(1148, 868)]),
             ("Qwen2.5-VL-3B-Instruct", "8 photos 448x336", [(448, 336)] * 8),
             ("Qwen3-VL-4B-Instruct", "8 photos 448x336", [(448, 336)] * 8)]
    where = f"{args.threads} thread(s)" if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"{where}, {args.layers} vision blocks; milliseconds, forward + backward")
    print(f"{'tower and input':<46} {'per window':>11} {'per length':>11} {'ratio':>7}")
    for arch, what, sizes in cases:
        tower = vision_tower(arch, args.layers, args.device)
        pixels, grid = photos(tower, sizes)
        s = side_by_side(tower, pixels, grid, args.steps)
        label = f"{arch.removesuffix('-Instruct')}, {what}"
        print(f"{label:<46} {s['per window'] * 1e3:11.1f} {s['per length'] * 1e3:11.1f} "
              f"{s['per window'] / s['per length']:6.2f}x")


if __name__ == "__main__":
    main()
