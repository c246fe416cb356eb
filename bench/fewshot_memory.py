"""Benchmark few-shot embedding memory: stream 5,000 box crops through a backbone and the cache, watch RSS.

    python bench/fewshot_memory.py                   # tiny random CLIP (32x32), 5,000 crops
    python bench/fewshot_memory.py --kind resnet --full --crops 2000

Synthetic photos are rendered until their boxes give `--crops` crops; the crops are streamed through
`embed_items` (with the on-disk cache, as `fewshot eval` does) and scored against a support set batch by
batch. Resident memory is read every `--every` crops; the first `--warmup` crops are warm-up (allocator
pools, the model's first passes). Prints the curve and the growth after warm-up, which must stay under 50 MB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bbuvl.data.schema import read_records, resolve_image
from bbuvl.fewshot.backbones import load_backbone
from bbuvl.fewshot.cache import EmbeddingCache
from bbuvl.fewshot.classifier import FewShotClassifier, decide
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.backbones import tiny_backbone

LIMIT_MB = 50.0


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark reads Linux's /proc)")


def crop_items(root: Path, n: int, seed: int) -> list[ImageItem]:
    """At least `n` crops (box + 5% margin) of synthetic photos, in photo order, cut to `n`."""
    photos = max(10, n // 12)
    while True:
        synthesize(root / f"data{photos}", photos, 0, seed=seed, size=(320, 240))
        train = root / f"data{photos}" / "train.jsonl"
        items = [ImageItem(resolve_image(train, r.image), tuple(o.bbox_2d), 0.05, o.desc)
                 for r in read_records(train) for o in r.objects]
        if len(items) >= n:
            return items[:n]
        photos = int(photos * 1.3 * n / max(1, len(items))) + 1


def main() -> None:
    """Run the benchmark and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="clip", choices=["clip", "dinov2", "resnet"])
    ap.add_argument("--full", action="store_true", help="full-size architecture (slow on CPU) instead of the tiny one")
    ap.add_argument("--crops", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bbuvl-fewshot-mem-") as tmp:
        root = Path(tmp)
        items = crop_items(root, args.crops, args.seed)
        backbone = load_backbone(str(tiny_backbone(args.kind, root / "backbone", full=args.full)), device="cpu")
        cache = EmbeddingCache(root / "cache")
        # support: the first 5 crops of each of a few labels, embedded up front like a real run
        support = {}
        for item in items:
            if len(support.setdefault(item.label, [])) < 5:
                support[item.label].append(item)
        flat = [it for group in support.values() for it in group]
        vectors = np.concatenate([v for _, v in embed_items(flat, backbone, None, args.batch_size)])
        classifier = FewShotClassifier.fit([it.label for it in flat], vectors)

        report = EmbedReport()
        curve: list[tuple[int, float]] = []
        kept: list[np.ndarray] = []  # what eval keeps per query: the best class index
        baseline, next_mark, start = None, args.warmup, time.perf_counter()
        for batch, vecs in embed_items(items, backbone, cache, args.batch_size, report):
            kept.append(decide(classifier.scores(vecs), 0.5).best.astype(np.int16))
            done = report.done
            if done >= next_mark:
                curve.append((done, rss_mb()))
                baseline = curve[0][1] if baseline is None else baseline
                next_mark += args.every
        seconds = time.perf_counter() - start
        if curve[-1][0] != report.done:
            curve.append((report.done, rss_mb()))
        cache.close()
    print(f"backbone: random-weight {'full-size' if args.full else 'tiny 32x32'} {args.kind}; "
          f"{report.embedded} crops embedded in {seconds:.1f} s ({report.embedded / seconds:.0f}/s), "
          f"{len(report.skipped)} skipped")
    print("crops   RSS MB   growth since warm-up")
    for done, mb in curve:
        print(f"{done:5d}   {mb:7.1f}   {mb - baseline:+7.1f}")
    growth = curve[-1][1] - baseline
    peak = max(mb for _, mb in curve) - baseline
    print(f"growth after warm-up ({args.warmup} crops): {growth:+.1f} MB at the end, {peak:+.1f} MB at the peak "
          f"(limit {LIMIT_MB:.0f} MB)")
    if peak >= LIMIT_MB:
        raise SystemExit("FAIL")
    print("OK")


if __name__ == "__main__":
    main()
