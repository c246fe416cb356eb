"""Name mode's decoding with each photo's prompt read once vs once a box, measured side by side.

    .venv/bin/python bench/name_mode.py [--checkpoint demo_out/bbu/run/final] [--gt demo_out/bbu/val/val.jsonl]
        [--photos 8] [--threads 1]

For each photo it takes the checkpoint's head boxes (as `--mode name` does), begins one answer per box, and decodes
the labels twice, alternating which goes first so that machine noise hits both alike: every row whole (the photo
encoded again for each box, `Predictor.greedy`) and the prompt read once with its cache repeated for the boxes
(`Predictor.greedy_continued`, infer/continuations.py). It prints seconds per photo for each, their ratio, and
whether the two gave the same tokens (and the largest log-probability difference).
"""

from __future__ import annotations

import argparse
import time

import torch

from bbuvl.data.schema import read_records, resolve_image
from bbuvl.infer.continuations import can_continue_prompt
from bbuvl.infer.modes.head import head_objects
from bbuvl.infer.modes.name import answer_prefix
from bbuvl.infer.predictor import Predictor


def main() -> None:
    """Time both decodings on the photos and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="demo_out/bbu/run/final")
    ap.add_argument("--gt", default="demo_out/bbu/val/val.jsonl", help="a JSONL of photos (its labels are not read)")
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.photos < 1:
        ap.error(f"--photos must be at least 1, got {args.photos}")
    torch.set_num_threads(args.threads)
    try:  # the defaults are relative to the repository's root, where `make demo` writes demo_out/
        paths = [str(resolve_image(args.gt, r.image)) for r in read_records(args.gt)][: args.photos]
        predictor = Predictor.load(args.checkpoint, device="cpu")
    except (OSError, ValueError) as e:
        raise SystemExit(f"{e} (run `make demo`, or give --checkpoint and --gt)") from None
    if predictor.model.detection_head is None:
        raise SystemExit(f"{args.checkpoint}: no detection head, so no boxes to name")
    if not can_continue_prompt(predictor.model.vlm):
        raise SystemExit(f"{args.checkpoint}: this family's LLM has recurrent layers; name mode decodes full rows")
    options = predictor.options()
    constraint = predictor.labels_constraint()
    seconds = {"whole rows": 0.0, "prompt read once": 0.0}
    boxes, timed, same, logp_diff = 0, 0, True, 0.0
    for i, path in enumerate(paths):
        p = predictor.encode(predictor.prepare(path))
        (found,) = head_objects(predictor, [p], options)
        begun = [answer_prefix(predictor, predictor.contract.to_model(d.bbox_2d, p.size)) for d, _ in found]
        if not begun:
            continue
        boxes, timed = boxes + len(begun), timed + 1
        frame = predictor.contract.answer_extent(p.size)
        grammar = constraint.grammar(frame)
        budget = grammar.label_budget()
        prompt = predictor.student_sample(p)

        def processor():
            return constraint.processor([frame] * len(begun), budget, [grammar.run(t.encode("utf-8")) for _, t in begun])

        results = {}
        for way in (("whole rows", "prompt read once") if i % 2 == 0 else ("prompt read once", "whole rows")):
            start = time.perf_counter()
            with torch.inference_mode():
                if way == "whole rows":
                    rows = predictor.collator([prompt.continued(ids) for ids, _ in begun]).to(predictor.device)
                    results[way] = predictor.greedy(rows, processor(), budget)
                else:
                    results[way] = predictor.greedy_continued(prompt, [ids for ids, _ in begun], processor(), budget)
            seconds[way] += time.perf_counter() - start
        (a, la), (b, lb) = results["whole rows"], results["prompt read once"]
        same = same and torch.equal(a, b)
        if la.shape == lb.shape:
            logp_diff = max(logp_diff, float((la - lb).abs().max()))
    if not timed:
        raise SystemExit(f"{args.checkpoint}: the head found no box on {len(paths)} photos of {args.gt}: nothing to name")
    # A photo without a head box decodes nothing either way: the seconds are those of the photos that had one.
    print(f"{args.checkpoint}: {timed} photos with head boxes of {len(paths)}, {boxes} boxes named ({args.threads} thread(s))")
    for way, s in seconds.items():
        print(f"  {way:<17} {s / timed:.3f} s a photo")
    print(f"  ratio (whole rows / read once): {seconds['whole rows'] / max(seconds['prompt read once'], 1e-9):.2f}x; "
          f"same tokens: {same}; largest log-probability difference {logp_diff:.1e}")


if __name__ == "__main__":
    main()
