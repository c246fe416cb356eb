"""Grounding attention's memory and step time: eager attention's maps against the supervised rows beside sdpa.

    .venv/bin/python bench/grounding_memory.py                            # tiny and wide, 224-672 px photos
    .venv/bin/python bench/grounding_memory.py --models wide --sizes 224,448,672,896 --steps 3

Arms, each one training step (forward, backward) of `loss.grounding_attention` on the same batch of shapes photos
(1-3 objects each), in a fresh process per row so that one arm's allocations never pad another's:
  eager  the term as it was: eager attention, forward hooks keeping every layer's attention probabilities
         (`[batch, heads, L, L]`, the supervised heads' slices keep the whole map alive) until the loss is computed
  rows   the term as it is (model/grounding_attention.py): sdpa, the supervised rows recomputed from each
         layer's inputs at the positions that write a coordinate
  sdpa   no grounding term: what the model's step costs without it
Per row: the sequence length, the peak resident memory of the step above the memory held before it (VmHWM after
/proc/self/clear_refs, with glibc's mmap threshold low so freed tensors leave the process), the bytes autograd saves
for the backward pass (every saved tensor's storage counted once), and the median step time; then each model's
ratios eager / rows, and the trend of both with the sequence length. Numbers: docs/grpo.md, "Grounding without
eager attention".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from learning_curve import MODEL_SHAPES

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
ARMS = ("eager", "rows", "sdpa")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark reads Linux's /proc)")


def child(args: argparse.Namespace) -> None:
    """One row: build the run, one warm-up step, then `--steps` measured steps; prints a JSON line."""
    import torch

    from bbuvl.config import load_config
    from bbuvl.model.grounding_attention import attention_layers, grounding_attention_sum
    from bbuvl.model.vlm import core_model
    from bbuvl.train.trainer import build_run

    torch.manual_seed(0)
    tokens = (args.size // 28) ** 2
    weight = 0.0 if args.arm == "sdpa" else 4.0
    run = build_run(load_config(CONFIG, [
        f"model.path={args.model}", f"data.train={args.data / 'train.jsonl'}", "data.val=null", "monitor.enabled=false",
        f"model.min_pixels={args.size ** 2}", f"model.max_pixels={args.size ** 2}", f"model.max_vision_tokens={tokens}",
        f"model.max_vision_tokens_per_batch={tokens * args.batch}", f"training.per_device_batch_size={args.batch}",
        "data.max_length=8192", "detection.enabled=false",
        "model.shared_prefix=false", f"model.attn_implementation={'eager' if args.arm == 'eager' else 'sdpa'}",
        f"loss.grounding_attention={0.0 if args.arm == 'eager' else weight}", f"loss.grounding_heads={args.heads}",
        f"training.output_dir={args.data / 'unused'}"]))
    model = run.model.train()
    batch = run.collator([run.train_dataset[i] for i in range(args.batch)])
    maps: list = []
    if args.arm == "eager":  # the term as it was, computed beside the model's own terms
        for layer in attention_layers(core_model(model.vlm).model.language_model):
            layer.register_forward_hook(lambda module, a, out: maps.append(out[1][:, : args.heads]))

    def step() -> None:
        maps.clear()
        terms = model(batch)
        loss = terms.loss
        if args.arm == "eager":
            rows = lambda b, segment, q, k: torch.stack([m[b][:, q][..., k] for m in maps])  # noqa: E731
            total = grounding_attention_sum(rows, 0.0 * maps[0].sum(), batch.coord_marks, batch.sample_index,
                                            batch.det_vision_mask, batch.det_grid_hw, batch.coord_boxes)
            loss = loss + weight * total / max(int((batch.labels != -100).sum()), 1)  # the divisor costs nothing
        loss.backward()
        maps.clear()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: lazily built buffers, the first kernels' workspaces
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    times = []
    peak = 0
    for _ in range(args.steps):
        base = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM, the peak resident memory, to the current
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        peak = max(peak, _status_kb("VmHWM") - base)
    print(json.dumps({"length": int(batch.input_ids.shape[1]), "vision_tokens": tokens, "peak_mb": peak / 1024,
                      "saved_mb": sum(saved.values()) / 2**20, "step_s": statistics.median(times)}))


def main() -> None:
    """Build the models and photos, run every row in its own process, print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,wide", help=f"Comma-separated tiny model shapes ({', '.join(MODEL_SHAPES)}).")
    ap.add_argument("--sizes", default="224,448,672", help="Photo sides in px (28-px vision tokens: 224 -> 64 tokens).")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1, help="loss.grounding_heads")
    ap.add_argument("--steps", type=int, default=3, help="Measured steps per row (after one warm-up).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        child(args)
        return
    models = [m.strip() for m in args.models.split(",")]
    if any(m not in MODEL_SHAPES for m in models):
        ap.error(f"--models: choose among {', '.join(MODEL_SHAPES)}")
    from bbuvl.synthetic.scene import MIN_SIDE
    from bbuvl.synthetic.shapes import synthesize_shapes

    sizes = [int(s) for s in args.sizes.split(",")]
    least = -(-MIN_SIDE // 28) * 28  # the smallest photo the synthesizer renders, in whole vision tokens
    if any(s < least or s % 28 for s in sizes):
        ap.error(f"--sizes: multiples of 28 px, at least {least}")
    from bbuvl.tiny.model import build_tiny_model

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed tensors go back to the system, so RSS follows live memory
    rows: dict[tuple[str, int, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'model':<8} {'px':>4} {'length':>6}  {'arm':<6} {'peak MB':>8} {'saved MB':>9} {'step s':>7}", flush=True)
        for name in models:
            model = build_tiny_model(work / f"model-{name}", **MODEL_SHAPES[name])
            for size in sizes:
                data = work / f"shapes-{size}"
                if not (data / "train.jsonl").exists():
                    synthesize_shapes(data, 8, 0, seed=3, size=(size, size), min_objects=1, max_objects=3)
                for arm in ARMS:
                    cmd = [sys.executable, __file__, "--arm", arm, "--model", str(model), "--data", str(data),
                           "--size", str(size), "--batch", str(args.batch), "--heads", str(args.heads),
                           "--steps", str(args.steps)]
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.exit(f"{name} {size}px {arm}: failed\n{done.stderr[-3000:]}")
                    r = rows[name, size, arm] = json.loads(done.stdout.strip().splitlines()[-1])
                    print(f"{name:<8} {size:>4} {r['length']:>6}  {arm:<6} {r['peak_mb']:>8.1f} {r['saved_mb']:>9.1f} "
                          f"{r['step_s']:>7.3f}", flush=True)
    print("\neager / rows (above 1: the rows use less); each arm's growth from the shortest length:")
    for name in models:
        for size in sizes:
            e, r, s = rows[name, size, "eager"], rows[name, size, "rows"], rows[name, size, "sdpa"]
            first_e, first_r = rows[name, sizes[0], "eager"], rows[name, sizes[0], "rows"]
            print(f"  {name:<8} length {r['length']:>5}: peak {e['peak_mb'] / max(r['peak_mb'], 1e-3):5.2f}x, "
                  f"saved {e['saved_mb'] / r['saved_mb']:5.2f}x, step time {e['step_s'] / r['step_s']:5.2f}x; "
                  f"rows over sdpa alone: saved {r['saved_mb'] / s['saved_mb']:4.2f}x, time {r['step_s'] / s['step_s']:4.2f}x; "
                  f"saved growth eager {e['saved_mb'] / first_e['saved_mb']:5.2f}x, rows {r['saved_mb'] / first_r['saved_mb']:5.2f}x")


if __name__ == "__main__":
    main()
