"""Training steps with the shared system prompt read once vs once a row, measured side by side.

    .venv/bin/python bench/shared_prefix.py [--steps 12] [--threads 1]

For `make demo`'s two recipes (configs/demo_shapes.yaml: shapes at 224x224, batch 8; configs/demo.yaml: BBU
close-ups at 448x336, batch 2, what each of the demo's two processes takes), it builds the tiny Qwen2.5-VL and
alternates whole training steps (forward + backward, no optimizer step) with `model.shared_prefix` on and off over
the same batches, so machine noise hits both alike (model/shared_prefix.py). It prints milliseconds per step, the
ratio, the tokens per row and how many of them the rows share, and the largest loss difference between the two.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bbuvl.config import load_config
from bbuvl.encode.collate import PaddedCollator
from bbuvl.model.shared_prefix import shared_prefix_length
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import build_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _data(kind: str, out: Path, photos: int) -> None:
    """The recipe's photos: shapes at 224x224 or BBU close-ups at 448x336."""
    if kind == "shapes":
        synthesize_shapes(out, photos, 2, seed=5, size=(224, 224), min_objects=1, max_objects=1)
    else:
        synthesize(out, photos, 2, seed=5, size=(448, 336), framing="closeup")


def recipe_steps(kind: str, config: str, batch: int, steps: int) -> dict[str, float]:
    """Seconds per training step with the prefix shared and not, plus the batch's shape and loss difference."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _data(kind, tmp / "data", batch * steps)
        build_tiny_model(tmp / "model", seed=0)
        cfg = load_config(CONFIGS / config, [
            f"model.path={tmp / 'model'}", f"data.train={tmp / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={tmp / 'run'}", "monitor.enabled=false", "model.reuse_modules=false"])
        run = build_run(cfg)
        tok = run.processor.tokenizer
        collate = PaddedCollator(pad_token_id=tok.pad_token_id,
                                 image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
        batches = [collate([run.train_dataset[s * batch + i] for i in range(batch)]) for s in range(steps)]
        run.model.train()
        seconds = {True: 0.0, False: 0.0}
        loss_diff = 0.0
        for i, b in enumerate(batches):
            losses = {}
            for shared in ((True, False) if i % 2 == 0 else (False, True)):
                run.model.shared_prefix = shared
                t0 = time.perf_counter()
                loss = run.model(b).loss
                loss.backward()
                run.model.zero_grad(set_to_none=True)
                seconds[shared] += time.perf_counter() - t0 if i > 0 else 0.0  # the first round warms up
                losses[shared] = loss.item()
            loss_diff = max(loss_diff, abs(losses[True] - losses[False]))
        return {"shared": seconds[True] / (steps - 1), "every row": seconds[False] / (steps - 1),
                "tokens": float(batches[0].input_ids.shape[1]), "prefix": float(shared_prefix_length(batches[0])),
                "loss_diff": loss_diff}


def main() -> None:
    """Run both recipes and print milliseconds per step and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); milliseconds per training step (forward + backward)")
    print(f"{'recipe':<40} {'tokens/row':>10} {'shared':>7} {'read once':>10} {'every row':>10} {'ratio':>7} "
          f"{'loss diff':>10}")
    for kind, config, batch in (("shapes", "demo_shapes.yaml", 8), ("closeup", "demo.yaml", 2)):
        s = recipe_steps(kind, config, batch, args.steps)
        print(f"{f'{config}, batch {batch}':<40} {s['tokens']:10.0f} {s['prefix']:7.0f} {s['shared'] * 1e3:10.1f} "
              f"{s['every row'] * 1e3:10.1f} {s['every row'] / s['shared']:6.2f}x {s['loss_diff']:10.2e}")


if __name__ == "__main__":
    main()
