"""A served batch whose photos are given up on mid-decode: their rows leave it (infer/dropped_rows.py).

    .venv/bin/python bench/serve_dropped_rows.py [--sizes 128x2,512x4] [--batch 8] [--given-up 4] [--tokens 256]
                                                 [--rounds 5] [--device cpu]

For each model size (LLM hidden width x layers) it builds an untrained tiny model of that size (a plain folder: no hub
here) and times `Engine.run` in generate mode, unconstrained, so that every row writes to --tokens, on three batches
alternated round by round (a change in the machine's other load hits all three):
- `kept`: --batch photos, none given up: every row decodes to the end, as every batch did before rows were dropped;
- `dropped`: the same photos, --given-up of them given up on once the first token is chosen;
- `alone`: only the photos still wanted, in a batch that never held the others (the least the drop can cost);
and the prompts' pass of each batch (its first token alone), which no drop saves, to give the decoding steps' ratios.
Prints each one's median seconds (this thread's CPU time with one torch thread, else the wall clock) and their
ratios side by side, and checks that the photos still wanted got the very
same answers in `dropped` as in `alone`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import read_model_folder
from bbuvl.model.vlm import core_model
from bbuvl.serve.engine import Answer, Engine
from bbuvl.tiny.model import build_tiny_model


THREAD_TIME = torch.get_num_threads() == 1  # else the wall clock: torch's other threads compute too


def timed(engine: Engine, images: list[Image.Image], give_up: int) -> tuple[float, list]:
    """Seconds of one `Engine.run` over `images` (prepared first, untimed), the last `give_up` of them given up on once
    the language model's first pass (the prompt's, which chose the first token) has run; and its answers."""
    batch = [engine.prepare(im) for im in images]
    leaving = batch[len(batch) - give_up:] if give_up else []

    def after_first_pass(module, args, output):
        for p in leaving:
            p.given_up.set()

    hook = core_model(engine.predictor.model.vlm).model.language_model.register_forward_hook(after_first_pass)
    # This thread's CPU time, not the wall clock: other processes on a shared machine slow the wall clock of one batch
    # and not of the next (with one torch thread, the model computes in this thread alone)
    t = time.thread_time() if THREAD_TIME else time.perf_counter()
    try:
        answers = engine.run("generate", batch)
    finally:
        hook.remove()
    return (time.thread_time() if THREAD_TIME else time.perf_counter()) - t, answers


def measure(folder: Path, images: list[Image.Image], args: argparse.Namespace) -> dict:
    """The three batches' median seconds and ratios on the model in `folder`."""
    predictor = Predictor.load(read_model_folder(folder, ["BBU", "cable"]), device=args.device, dtype="float32")
    engine = Engine(predictor, "generate", folder.name, overrides={"constrained": False, "max_new_tokens": args.tokens})
    first = Engine(predictor, "generate", folder.name, overrides={"constrained": False, "max_new_tokens": 1})
    wanted = args.batch - args.given_up
    timed(engine, images, 0)  # warm-up
    times: dict[str, list[float]] = {"kept": [], "dropped": [], "alone": [], "prompt": [], "prompt alone": []}
    same, saved, written = True, [], []
    for _ in range(args.rounds):
        t, kept = timed(engine, images, 0)
        times["kept"].append(t)
        t, dropped = timed(engine, images, args.given_up)
        times["dropped"].append(t)
        t, alone = timed(engine, images[:wanted], 0)
        times["alone"].append(t)
        # the prompts' pass (vision tower included) and the first token: what no drop saves
        times["prompt"].append(timed(first, images, 0)[0])
        times["prompt alone"].append(timed(first, images[:wanted], 0)[0])
        for a, b in zip(dropped[:wanted], alone):
            same &= isinstance(a, Answer) and isinstance(b, Answer) and (a.raw, a.completion_tokens) == (
                b.raw, b.completion_tokens)
        saved = [getattr(a, "passes_saved", 0) for a in dropped[wanted:]]
        written = [a.completion_tokens for a in kept if isinstance(a, Answer)]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": {k: round(v, 3) for k, v in med.items()},
            "dropped / kept": round(med["dropped"] / med["kept"], 3),
            "alone / kept": round(med["alone"] / med["kept"], 3),
            "dropped / alone": round(med["dropped"] / med["alone"], 3),
            # the decoding steps alone, after the prompts' pass
            "steps: dropped / kept": round((med["dropped"] - med["prompt"]) / (med["kept"] - med["prompt"]), 3),
            "steps: alone / kept": round((med["alone"] - med["prompt alone"]) / (med["kept"] - med["prompt"]), 3),
            "tokens written per row (kept)": written,
            "passes saved per given-up photo": saved,
            "answers still wanted equal the batch without the others'": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128x2,512x4", help="LLM hidden width x layers, comma-separated")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--given-up", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (336, 448, 3), dtype=np.uint8)) for _ in range(args.batch)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            hidden, layers = (int(v) for v in size.split("x"))
            folder = build_tiny_model(Path(tmp) / size, hidden=hidden, layers=layers, heads=max(4, hidden // 64),
                                      kv_heads=max(2, hidden // 128))
            results[size] = measure(folder, images, args)
    print(json.dumps({"batch": args.batch, "given_up": args.given_up, "tokens": args.tokens, "rounds": args.rounds,
                      "device": args.device, "torch_threads": torch.get_num_threads(),
                      "clock": "this thread's CPU time" if THREAD_TIME else "wall", "by_size": results}, indent=1))


if __name__ == "__main__":
    main()
