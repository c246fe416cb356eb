"""Peak memory of predicting one huge photo through tiles, before and after its fixes, side by side in one run.

    .venv/bin/python bench/huge_photo_memory.py [--checkpoint demo_out/bbu/run/final] [--size 12000x9000]
        [--mode head] [--tiles auto] [--region-batch 64]

Writes a JPEG of --size (a flat colour: the memory is the pixels', whatever they show), then, in a fresh process for
each arm, loads the checkpoint, predicts a small photo to warm it up, and predicts the huge one
(`Predictor.predict_lines`, what `bbuvl predict` runs), reporting the peak resident memory above what the warmed-up
process held (Linux's VmHWM after /proc/self/clear_refs): the photo's decode, its regions' crops and the forward passes.
The arms:
  old  as predict was: the whole photo copied in full before it was shrunk for the whole-photo pass
       (data/images.py `stored_region`), and every region's crop cut before the first pass (infer/tiles.py)
  new  as it is: the whole photo resized straight from it, each crop cut as its forward pass reads it (`RegionCrops`)
Printed per arm: the peak above the warmed-up process, the seconds the photo took, and whether both wrote the same
line (they must: the crops' pixels are the same). The decoded photo itself (Pillow holds RGB in 4 bytes a pixel) is in
both. Numbers: docs/tiles.md, "A huge photo's memory".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_files import check_inputs

ARMS = ("old", "new")

CHILD = r"""
import json, sys, time
from PIL import Image

import bbuvl.infer.tiles as tiles
from bbuvl.data import images
from bbuvl.infer.predictor import Predictor

checkpoint, small, huge, mode, options, region_batch, arm = sys.argv[1:]


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


def old_stored_region(image, stored, box, to):
    # data/images.py before: a region of the photo at its own scale cut first, the whole photo's region too
    if image.size == tuple(stored):
        crop = image.crop(tuple(round(v) for v in box))
        return crop if crop.size == tuple(to) else crop.resize(to, Image.BICUBIC)
    return images.stored_region(image, stored, box, to)


if arm == "old":  # infer/tiles.py before: every region's crop cut before the pass
    tiles.stored_region = old_stored_region
    tiles.RegionCrops = lambda image, regions, sizes, size: [old_stored_region(image, size, r, s)
                                                              for r, s in zip(regions, sizes)]
predictor = Predictor.load(checkpoint, device="cpu")
if int(region_batch):
    predictor.region_batch = int(region_batch)
options = json.loads(options)
predictor.predict_lines([small], mode, **options)  # warm-up: the model's first pass, the processor's caches
open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from what is resident now (Linux)
before, start = status("VmRSS"), time.perf_counter()
[line] = predictor.predict_lines([huge], mode, **options)
seconds = time.perf_counter() - start
print(json.dumps({"peak": status("VmHWM") - before, "seconds": seconds,
                  "line": {k: line[k] for k in ("objects", "error", "width", "height")}}))
"""


def size_of(text: str) -> tuple[int, int]:
    """WxH -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give the size as WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"both sides at least 1, got {text!r}")
    return w, h


def run_arm(arm: str, args: argparse.Namespace, small: Path, huge: Path) -> dict:
    """One arm in a fresh process: its peak above the warmed-up process, seconds and line."""
    options = {"tiles": args.tiles}
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.checkpoint), str(small), str(huge), args.mode,
                          json.dumps(options), str(args.region_batch), arm], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if out.returncode != 0:
        raise SystemExit(f"the {arm} arm failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Predict the huge photo in each arm's fresh process and print their peaks side by side."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=Path("demo_out/bbu/run/final"))
    ap.add_argument("--size", type=size_of, default=(12000, 9000), help="the huge photo's WIDTHxHEIGHT")
    ap.add_argument("--mode", default="head")
    ap.add_argument("--tiles", default="auto", help="as predict's --tiles")
    ap.add_argument("--region-batch", type=int, default=0,
                    help="regions a forward pass reads (0: the predictor's, 64 on the CPU)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        ap.error("the peak is read from /proc/self (Linux)")
    if args.region_batch < 0 or args.threads < 1:
        ap.error(f"--region-batch at least 0 and --threads at least 1, got {args.region_batch} and {args.threads}")
    try:  # the default is relative to the repository's root, where `make demo` writes demo_out/
        check_inputs([args.checkpoint])
    except (OSError, ValueError) as e:
        raise SystemExit(f"{e} (run `make demo`, or give --checkpoint)") from None
    from PIL import Image

    w, h = args.size
    with tempfile.TemporaryDirectory() as tmp:
        small, huge = Path(tmp) / "small.jpg", Path(tmp) / "huge.jpg"
        Image.new("RGB", (448, 336), (90, 120, 150)).save(small, quality=90)
        Image.new("RGB", (w, h), (90, 120, 150)).save(huge, quality=50)
        rows = {arm: run_arm(arm, args, small, huge) for arm in ARMS}
    old, new = rows["old"], rows["new"]
    batch = args.region_batch or "the predictor's"
    print(f"{args.checkpoint}: one {w}x{h} photo ({w * h * 4 / 2**20:.0f} MiB decoded), {args.mode} mode, tiles "
          f"{args.tiles}, region batch {batch}")
    print(f"{'arm':<6}{'peak MiB above the warmed-up process':>38}{'seconds':>10}")
    for arm in ARMS:
        print(f"{arm:<6}{rows[arm]['peak'] / 2**20:>38.0f}{rows[arm]['seconds']:>10.1f}")
    print(f"new - old: {(new['peak'] - old['peak']) / 2**20:+.0f} MiB; same line: "
          f"{'yes' if old['line'] == new['line'] else 'NO'}")


if __name__ == "__main__":
    main()
