"""Padded vs packed training throughput on mixed single-photo and teacher-student samples, measured side by side.

    .venv/bin/python bench/train_throughput.py [--steps 12] [--batch 4]

Builds a tiny Qwen2.5-VL and a synthetic dataset in a temp folder, then alternates padded and packed steps
(forward + backward) over the same batches, so machine noise hits every layout alike. Packed rows run twice: with
SDPA per packed sample (model/packed_attention.py, what training uses) and with transformers' SDPA and its dense
L x L block-causal mask (what training used before), so the gain of the former is measured beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bbuvl.config import load_config
from bbuvl.encode.collate import PackedCollator, PaddedCollator
from bbuvl.model.packed_attention import PACKED_SDPA
from bbuvl.model.vlm import core_model
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import build_run


def main() -> None:
    """Run the benchmark and print samples/s, real-token fraction and the packed/padded ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    if args.steps < 2 or args.batch < 1:  # the first step warms up: one alone measures nothing
        ap.error(f"--steps must be at least 2 and --batch at least 1, got {args.steps} and {args.batch}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", 24, 2, seed=3, size=(448, 336), num_teachers=4)
        build_tiny_model(tmp / "model")
        cfg = load_config(None, [
            f"model.path={tmp / 'model'}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
            f"data.train={tmp / 'data/train.jsonl'}", "data.val=null", f"data.teachers={tmp / 'data/teachers.jsonl'}",
            "data.teacher_ratio=0.5", "detection.enabled=false", "training.gradient_checkpointing=false", "training.bf16=false",
        ])
        run = build_run(cfg)
        tok = run.processor.tokenizer
        ids = dict(pad_token_id=tok.pad_token_id, image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
        packed = PackedCollator(**ids, max_tokens=1 << 20)
        # layout -> (collator, attention implementation)
        layouts = {"padded": (PaddedCollator(**ids), "sdpa"), "packed": (packed, PACKED_SDPA),
                   "packed, dense mask": (packed, "sdpa")}
        vlm = core_model(run.model.vlm)
        opt = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=1e-4)
        n = len(run.train_dataset)
        batches = [[run.train_dataset[(s * args.batch + i) % n] for i in range(args.batch)] for s in range(args.steps)]
        n_teacher = sum(len(sample.meta["images"]) > 1 for b in batches[1:] for sample in b)  # in the measured steps
        stats = {k: {"time": 0.0, "samples": 0, "real": 0, "slots": 0} for k in layouts}
        run.model.train()
        for step, samples in enumerate(batches):
            for name, (collate, attention) in (layouts.items() if step % 2 == 0 else reversed(layouts.items())):
                vlm.set_attn_implementation(attention)
                batch = collate(samples)
                t0 = time.perf_counter()
                loss = run.model(batch).loss
                loss.backward()
                opt.zero_grad(set_to_none=True)  # no step: every layout sees the same weights
                if step > 0:  # the first step warms up allocators and kernels
                    s = stats[name]
                    s["time"] += time.perf_counter() - t0
                    s["samples"] += len(samples)
                    s["real"] += int((batch.sample_index >= 0).sum())
                    s["slots"] += batch.input_ids.numel()
        print(f"{args.steps - 1} measured steps of {args.batch} samples ({n_teacher} of {(args.steps - 1) * args.batch} with a teacher)")
        rates = {}
        for name, s in stats.items():
            rates[name] = s["samples"] / s["time"]
            print(f"{name:>18}: {rates[name]:6.2f} samples/s   real-token fraction {s['real'] / s['slots']:.3f}")
        print(f"packed / padded throughput: {rates['packed'] / rates['padded']:.2f}x "
              f"(with the dense mask: {rates['packed, dense mask'] / rates['padded']:.2f}x)")


if __name__ == "__main__":
    main()
