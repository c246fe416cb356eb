"""Head mode's label scores on the prefix lattice vs teacher forcing every label alone, measured side by side.

    .venv/bin/python bench/label_scoring.py [--checkpoint demo_out/bbu/run/final] [--queries 60] [--repeats 10]

Head mode scores each query above the objectness threshold against every label of the checkpoint
(`DetectionHead.caption_logprobs`, docs/design.md, "Scoring every label"). This times, on a trained checkpoint's
head and labels, alternating so that machine noise hits both alike:
- the lattice: the decoder and the vocabulary's log-softmax once per distinct label prefix (what head mode runs);
- teacher forcing each label alone: labels x tokens decoder positions per query, chunked as the lattice is.
It prints milliseconds per call for each, their ratio, the positions per query and the largest difference between
the two log-probabilities. The queries are random vectors of the head's width: the time does not depend on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bbuvl.model.checkpoint import load_model
from bbuvl.model.detection_head import CaptionLattice, DetectionHead


@torch.no_grad()
def label_by_label(head: DetectionHead, queries: torch.Tensor, captions: list[tuple[int, ...]]) -> torch.Tensor:
    """`[M, L]` log-probabilities, every label teacher-forced on its own row (the causal decoder over `[M * L, T]`)."""
    targets = torch.nn.utils.rnn.pad_sequence([torch.tensor([*c, head.eos_token_id]) for c in captions],
                                              batch_first=True, padding_value=-100)  # [L, T]
    m, n = queries.shape[0], targets.shape[0]
    flat, rows_of = targets.repeat(m, 1), queries.repeat_interleave(n, dim=0)
    chunk = max(1, (1 << 24) // (targets.shape[1] * head.token_embedding.weight.shape[0]))
    sums = []
    for start in range(0, flat.shape[0], chunk):
        part = flat[start:start + chunk]
        logp = head.caption_logits(rows_of[start:start + chunk], part).float().log_softmax(-1)
        sums.append(logp.gather(-1, part.clamp(min=0)[..., None]).squeeze(-1).masked_fill(part < 0, 0.0).sum(-1))
    return torch.cat(sums).view(m, n)


def main() -> None:
    """Time both ways of scoring on the checkpoint's head and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="demo_out/bbu/run/final", help="A trained checkpoint with a head.")
    parser.add_argument("--queries", type=int, default=60, help="Queries scored per call (the demo's num_queries).")
    parser.add_argument("--repeats", type=int, default=10, help="Calls of each, alternated.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    args = parser.parse_args()
    if not (Path(args.checkpoint) / "detection_head.safetensors").is_file():
        raise SystemExit(f"{args.checkpoint}: no trained head there (run `make demo`, or give --checkpoint)")
    torch.set_num_threads(args.threads)
    model, processor, _, _, prompt = load_model(args.checkpoint, device="cpu")
    head = model.detection_head
    captions = [tuple(processor.tokenizer.encode(label, add_special_tokens=False)) for label in prompt.labels]
    queries = torch.randn(args.queries, head.d_model, generator=torch.Generator().manual_seed(0))
    seconds = {"lattice": 0.0, "label by label": 0.0}
    ways = {"lattice": lambda: head.caption_logprobs(queries, captions),
            "label by label": lambda: label_by_label(head, queries, captions)}
    results = {name: way() for name, way in ways.items()}  # warm-up, and the values compared
    for i in range(args.repeats):
        for name in (("lattice", "label by label") if i % 2 == 0 else ("label by label", "lattice")):
            start = time.perf_counter()
            ways[name]()
            seconds[name] += time.perf_counter() - start
    lattice = CaptionLattice.of(captions, head.bos_token_id, head.eos_token_id)
    per_label = len(captions) * lattice.targets.shape[1]
    ms = {name: 1000 * s / args.repeats for name, s in seconds.items()}
    print(f"{len(captions)} labels, {args.queries} queries, {args.threads} thread(s): decoder positions per query "
          f"{lattice.tokens.shape[0]} on the lattice, {per_label} label by label")
    print(f"  lattice        {ms['lattice']:8.1f} ms a call")
    print(f"  label by label {ms['label by label']:8.1f} ms a call")
    print(f"  ratio {ms['label by label'] / ms['lattice']:.2f}x; largest log-probability difference "
          f"{(results['lattice'] - results['label by label']).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
