"""Benchmark the few-shot embedding cache: `bbuvl fewshot eval` twice on the same inputs, in one process.

    python bench/fewshot_cache.py                      # random-weight ViT-B/32 (CLIP's real image tower size)
    python bench/fewshot_cache.py --kind dinov2        # or resnet; --tiny for the 32x32 test backbones
    python bench/fewshot_cache.py --photos 60 --shots 1,5,10

Builds synthetic part crops (support: crops of the training photos; queries: every box of the validation
photos, cropped from the JSONL, with classes that have no support), runs the eval command twice with the
same cache folder, and prints both wall times, what each run embedded and read from the cache, and the
ratio. The second run must embed nothing and be at least 5x faster.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.data.schema import read_records
from bbuvl.fewshot.crops import write_crops
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.backbones import tiny_backbone

MIN_RATIO = 5.0


def build_inputs(root: Path, photos: int, seed: int) -> tuple[Path, Path]:
    """Synthetic photos, a support folder of up to 10 crops per class (3 classes held out), the val JSONL."""
    n_val = max(2, photos // 3)
    synthesize(root / "data", photos - n_val, n_val, seed=seed, size=(320, 240))
    counts = Counter(o.desc for r in read_records(root / "data" / "train.jsonl") for o in r.objects)
    known = sorted(label for label, n in counts.items() if n >= 3)[:-3]
    write_crops(root / "data" / "train.jsonl", root / "support", classes=known, per_class=10)
    return root / "support", root / "data" / "val.jsonl"


def timed_eval(args: list[str], out: Path) -> tuple[float, dict]:
    """Wall seconds of one `fewshot eval` and its summary."""
    start = time.perf_counter()
    result = CliRunner().invoke(app, args + ["--out", str(out)])
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"fewshot eval failed:\n{result.output}\n{result.exception!r}")
    return seconds, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def main() -> None:
    """Run the benchmark and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="clip", choices=["clip", "dinov2", "resnet"], help="backbone architecture")
    ap.add_argument("--tiny", action="store_true", help="the tiny 32x32 test backbone instead of the full-size one")
    ap.add_argument("--photos", type=int, default=30, help="synthetic photos (a third are queried, ~15 boxes each)")
    ap.add_argument("--shots", default="1,5,10")
    ap.add_argument("--thresholds", default="0.4:0.9:0.05")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bbuvl-fewshot-cache-") as tmp:
        root = Path(tmp)
        support, queries = build_inputs(root, args.photos, args.seed)
        backbone = tiny_backbone(args.kind, root / "backbone", full=not args.tiny)
        common = ["eval", "--support", str(support), "--query", str(queries), "--backbone", str(backbone),
                  "--shots", args.shots, "--thresholds", args.thresholds, "--cache", str(root / "cache")]
        first, s1 = timed_eval(common, root / "run1")
        second, s2 = timed_eval(common, root / "run2")
    e1, e2 = s1["embedding"], s2["embedding"]
    size = "tiny 32x32" if args.tiny else "full-size"
    print(f"backbone: random-weight {size} {args.kind} ({s1['backbone']['dim']}-d), torch threads {args.threads}")
    print(f"inputs: {len(s1['classes'])} classes, {e1['support']['embedded']} distinct support images for shots "
          f"{args.shots}, {s1['queries']['evaluated']} query crops ({s1['queries']['unknown_truth']} of held-out "
          f"classes), {len(s1['thresholds'])} thresholds")
    for name, secs, e in (("run 1", first, e1), ("run 2", second, e2)):
        print(f"{name}: {secs:7.2f} s   embedded {e['support']['embedded'] + e['queries']['embedded']:5d}   "
              f"cache hits {e['support']['cached'] + e['queries']['cached']:5d}")
    ratio = first / second
    same = s1["rows"] == s2["rows"]
    print(f"ratio run1/run2: {ratio:.1f}x (need >= {MIN_RATIO:.0f}x); identical metrics: {same}")
    nothing_embedded = e2["support"]["embedded"] + e2["queries"]["embedded"] == 0
    if ratio < MIN_RATIO or not nothing_embedded or not same:
        raise SystemExit("FAIL")
    print("OK")


if __name__ == "__main__":
    main()
