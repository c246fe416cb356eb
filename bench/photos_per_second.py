"""Training time a photo against the batch, on the demo's stage-B recipe, measured side by side.

    .venv/bin/python bench/photos_per_second.py [--batches 1,2,4,8] [--rounds 3] [--no-head]

Generate mode on the close-ups reaches its bar after about 32,000 photos seen (docs/grpo.md, "Eight thousand
steps"); `make demo`'s stage B sees 3,600. If a step's cost were mostly fixed overhead, larger batches would see more
photos in the same minutes. This bench answers that: it builds a tiny Qwen2.5-VL and 48 close-ups in a temp folder,
trains with `configs/demo.yaml` (the head, the grounding terms at 4) at each batch size in turn, forward, backward and
optimizer step, the order reversed every other round so that machine noise hits every size alike, and prints the
milliseconds a photo and a step. Run it at one thread (OMP_NUM_THREADS=1), as the demo's training processes run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bbuvl.config import load_config
from bbuvl.encode.collate import PaddedCollator
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import build_run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def main() -> None:
    """Train a few steps at each batch size and print the time a photo and a step."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,2,4,8", help="batch sizes to compare, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (one more warms up)")
    ap.add_argument("--no-head", action="store_true", help="the answer's loss alone (detection.enabled=false)")
    args = ap.parse_args()
    try:
        sizes = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches must be whole numbers separated by commas, got {args.batches!r}")
    if not sizes or min(sizes) < 1:
        ap.error(f"--batches must name sizes of at least 1, got {args.batches!r}")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", 48, 2, seed=3, size=(448, 336), num_teachers=0, framing="mixed")
        build_tiny_model(tmp / "model")
        cfg = load_config(CONFIG, [
            f"model.path={tmp / 'model'}", f"data.train={tmp / 'data/train.jsonl'}", "data.val=null",
            "loss.grounding_attention=4", "loss.coordinate_regression=4",
            *(["detection.enabled=false", "inference.mode=generate"] if args.no_head else []),
        ])
        run = build_run(cfg)
        tok = run.processor.tokenizer
        collate = PaddedCollator(pad_token_id=tok.pad_token_id,
                                 image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
        opt = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=1e-4)
        n = len(run.train_dataset)
        seconds = {b: 0.0 for b in sizes}
        photos = {b: 0 for b in sizes}
        drawn = 0
        run.model.train()
        for rnd in range(args.rounds + 1):  # round 0 warms up allocators and kernels
            for b in (sizes if rnd % 2 == 0 else sizes[::-1]):
                batch = collate([run.train_dataset[(drawn + i) % n] for i in range(b)])
                drawn += b
                t0 = time.perf_counter()
                run.model(batch).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if rnd > 0:
                    seconds[b] += time.perf_counter() - t0
                    photos[b] += b
        print(f"configs/demo.yaml, {'no head' if args.no_head else 'the head'}, the grounding terms at 4; "
              f"{args.rounds} timed round(s), {torch.get_num_threads()} thread(s)")
        first = sizes[0]
        for b in sizes:
            per_photo = seconds[b] / photos[b]
            print(f"  batch {b:>3}: {1000 * per_photo:8.1f} ms a photo {1000 * per_photo * b:9.1f} ms a step   "
                  f"photos a second x{(seconds[first] / photos[first]) / per_photo:.2f} of batch {first}")


if __name__ == "__main__":
    main()
