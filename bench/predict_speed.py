"""Predict's photos a second on the CPU, before and after its fixes, measured side by side in one run.

    .venv/bin/python bench/predict_speed.py [--checkpoint demo_out/bbu/run/final] [--gt demo_out/bbu/val/val.jsonl]
        [--photos 8] [--modes head,name,generate] [--tiles auto] [--rounds 2] [--threads 1]

It loads the checkpoint once and, for each mode, predicts the same photos (`Predictor.predict_lines`, what
`bbuvl predict` runs, in chunks of the checkpoint's batch size) with each fix off ("old") and on ("new"), alternating
which goes first each round so that the machine's noise hits both alike; the first round warms up and is not timed.
The fixes compared: `token_char_ends` remembering each window of ids it decoded (infer/predictor.py), where every
window was decoded again through transformers for every box of every photo; and name mode reading a photo's prompt
once for all its chunks of `batch_rows` boxes (infer/continuations.py `PromptRead`), where each chunk read it, photo
included, again. It prints photos a second for each, the
ratio new/old, and whether the two wrote the same lines (they must: a fix here changes no output).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import torch

import bbuvl.infer.modes.name as name_module
import bbuvl.infer.predictor as predictor_module
from bench_files import check_inputs
from bbuvl.config import PREDICT_MODES
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.infer.predictor import Predictor

NEW_DECODER = predictor_module._window_decoder
NEW_PROMPT_READ = name_module.PromptRead


def _old_decoder(tokenizer: Any) -> Callable[[tuple[int, ...]], str]:
    """What token_char_ends did before: every window decoded through transformers, each time."""
    return lambda window: tokenizer.decode(list(window), skip_special_tokens=True)


def _lines(predictor: Predictor, paths: list[str], mode: str, chunk: int, options: dict[str, Any],
           new: bool) -> tuple[list[dict], float]:
    """The photos' lines and the seconds they took, with the fixes on (`new`) or off."""
    predictor_module._window_decoder = NEW_DECODER if new else _old_decoder
    name_module.PromptRead = NEW_PROMPT_READ if new else (lambda sample: sample)  # the sample: read at every call
    try:
        start = time.perf_counter()
        lines = [line for i in range(0, len(paths), chunk)
                 for line in predictor.predict_lines(paths[i:i + chunk], mode, **options)]
        return lines, time.perf_counter() - start
    finally:
        predictor_module._window_decoder, name_module.PromptRead = NEW_DECODER, NEW_PROMPT_READ


def main() -> None:
    """Time each mode with the fixes off and on, and print photos a second and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=Path("demo_out/bbu/run/final"))
    ap.add_argument("--gt", type=Path, default=Path("demo_out/bbu/val/val.jsonl"),
                    help="a JSONL of photos (its labels are not read)")
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--modes", default="head,name,generate")
    ap.add_argument("--tiles", default=None, help="as predict's --tiles (default: the checkpoint's inference.tiles)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds of each side, after one untimed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.photos < 1 or args.rounds < 1:
        ap.error("--photos and --rounds must be at least 1")
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in PREDICT_MODES]:  # before the model loads
        ap.error(f"--modes: {', '.join(unknown)} is no mode ({', '.join(PREDICT_MODES)})")
    torch.set_num_threads(args.threads)
    try:  # the defaults are relative to the repository's root, where `make demo` writes demo_out/
        check_inputs([args.checkpoint], [args.gt])
        paths = [str(resolve_image(args.gt, r.image)) for r in read_records(args.gt)][: args.photos]
        predictor = Predictor.load(args.checkpoint, device="cpu")
    except (OSError, ValueError) as e:
        raise SystemExit(f"{e} (run `make demo`, or give --checkpoint and --gt)") from None
    try:
        for mode in modes:
            predictor.check_mode(mode)
    except ValueError as e:
        raise SystemExit(f"{args.checkpoint}: {e}") from None
    options = {} if args.tiles is None else {"tiles": args.tiles}
    chunk = predictor.cfg.inference.batch_size
    print(f"{args.checkpoint}: {len(paths)} photos, batches of {chunk}, {args.threads} thread(s), "
          f"tiles {args.tiles or predictor.cfg.inference.tiles}; {args.rounds} timed rounds a side")
    print(f"{'mode':<10}{'old photos/s':>14}{'new photos/s':>14}{'new/old':>9}  same lines")
    for mode in modes:
        seconds = {False: 0.0, True: 0.0}
        written: dict[bool, list[dict]] = {}
        for r in range(args.rounds + 1):
            for new in ((False, True) if r % 2 == 0 else (True, False)):
                written[new], took = _lines(predictor, paths, mode, chunk, options, new)
                seconds[new] += took if r else 0.0  # the first round warms up
        old_rate, new_rate = (len(paths) * args.rounds / seconds[k] for k in (False, True))
        print(f"{mode:<10}{old_rate:>14.2f}{new_rate:>14.2f}{new_rate / old_rate:>8.2f}x  "
              f"{'yes' if written[False] == written[True] else 'NO'}")


if __name__ == "__main__":
    main()
