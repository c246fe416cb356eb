"""Benchmark `bbuvl data convert`: one worker vs all cores on a synthetic vendor export.

    python bench/convert.py                    # 500 synthetic photos of 1280x960
    python bench/convert.py --n 1000 --size 1920x1440
    python bench/convert.py --src EXPORT_DIR   # time an existing export instead

Prints photos/s for each worker count (best of --repeat alternating runs, as the machine may be shared)
and their ratio, and checks both counts wrote the same dataset.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.synthetic.dataset import synthesize


def synthesize_export(root: Path, n: int, size: tuple[int, int], seed: int, workers: int) -> Path:
    """A synthetic vendor export of `n` photos (one JSON + one image each) under `root`."""
    n_val = max(1, n // 10)
    synthesize(root, n - n_val, n_val, seed, size, fmt="vendor", workers=workers)
    return root


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_convert(src: Path, out: Path, workers: int) -> tuple[float, float, dict]:
    """Wall seconds and CPU seconds one conversion takes, and its summary."""
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = convert_dataset(src, out, ConvertOptions(workers=workers))
    return time.perf_counter() - start, cpu_seconds() - cpu, summary


def same_dataset(a: Path, b: Path) -> bool:
    """True when two dataset folders hold the same JSONL files and images, byte for byte."""
    names = ["train.jsonl", "val.jsonl", "teachers.jsonl", "errors.jsonl", "labels.json"]
    images = sorted(p.name for p in (a / "images").iterdir())
    if images != sorted(p.name for p in (b / "images").iterdir()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names) and all(
        (a / "images" / i).read_bytes() == (b / "images" / i).read_bytes() for i in images
    )


def main() -> None:
    """Run the benchmark and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="synthetic photos to generate (default 500)")
    ap.add_argument("--size", default="1280x960", help="synthetic photo size WIDTHxHEIGHT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--src", type=Path, help="convert this export instead of synthesising one")
    ap.add_argument("--repeat", type=int, default=3, help="runs per worker count; the fastest counts")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'all cores' worker count")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="bbuvl-bench-") as tmp:
        tmp_path = Path(tmp)
        if args.src is None:
            start = time.perf_counter()
            src = synthesize_export(tmp_path / "export", args.n, (width, height), args.seed, args.workers)
            print(f"synthesised {args.n} vendor photos of {width}x{height} in {time.perf_counter() - start:.1f} s")
        else:
            src = args.src
        for path in src.rglob("*"):  # read every input once so no run pays for a cold page cache
            if path.is_file():
                path.read_bytes()
        best: dict[int, tuple[float, float, dict]] = {}
        for _ in range(args.repeat):  # alternate the two counts; keep each one's fastest run
            for workers in (1, args.workers):
                shutil.rmtree(tmp_path / f"out_w{workers}", ignore_errors=True)
                run = timed_convert(src, tmp_path / f"out_w{workers}", workers)
                if workers not in best or run[0] < best[workers][0]:
                    best[workers] = run
        rates = {}
        for workers, (seconds, cpu, summary) in best.items():
            photos = summary["photos"]["found"]
            rates[workers] = photos / seconds
            # CPU ms per photo shows the cost itself; on a shared machine wall time also shows the neighbours.
            print(f"workers={workers:<3d} {photos} photos ({summary['photos']['converted']} converted) "
                  f"in {seconds:6.2f} s = {rates[workers]:7.1f} photos/s, {1000 * cpu / photos:.1f} CPU ms/photo "
                  f"(best of {args.repeat})")
        identical = same_dataset(tmp_path / "out_w1", tmp_path / f"out_w{args.workers}")
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"speed-up workers={args.workers} vs 1: {rates[args.workers] / rates[1]:.2f}x "
              f"(cpu_count={os.cpu_count()}, load average {load}); outputs identical: {identical}")


if __name__ == "__main__":  # the guard matters: worker processes import this file
    main()
