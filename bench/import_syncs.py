"""`bbuvl data import-coco`'s (or `data convert`'s) waits on the disk, before and after its photos were synced once,
side by side in one run.

    .venv/bin/python bench/import_syncs.py                         # 5,000 small photos, 2 rounds
    .venv/bin/python bench/import_syncs.py --photos 1000 --rounds 1 --dir /mnt/disk/scratch
    .venv/bin/python bench/import_syncs.py --command convert --photos 1000 --dir /mnt/disk/scratch

Writes a COCO file of `--photos` small JPEGs (96x72, two boxes each) under `--dir` (default: the system's temporary
folder; on a tmpfs an fsync costs nothing, so give a folder on a real disk), then imports it the old way and the new,
alternating which goes first each round, into a fresh dataset folder each time. Old: every photo copied through an
atomic write of its own, fsync included (`atomic_path(sync=True)`, what `ImagePlacer` did). New (data/placement.py):
the copies renamed into place without waiting, and one `sync_files` (a syncfs per filesystem) before the dataset's
files name them. Printed for each side: the fsync calls and syncfs calls made in the import (counted by wrapping
`os.fsync` and atomic.py's `_SYNCFS` in this process), its best wall time, the ratio, and whether both wrote the
same dataset (every file's bytes, photos included, but summary.json's `source`).

`--command convert`: a platform export of `--photos` synthetic photos (`data synth --format vendor`, 128x96) is
converted instead. Old: every stored photo written with an fsync of its own (what data/convert.py's `_store_image`
did); new: renamed into place without waiting, and one `sync_files` before the dataset's files name them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

import bbuvl.atomic as atomic
import bbuvl.data.convert as convert
import bbuvl.data.placement as placement
from bbuvl.data.coco_files import import_coco
from bbuvl.synthetic.dataset import synthesize

COUNTS = {"fsync": 0, "syncfs": 0}


def counted() -> None:
    """Count every fsync and syncfs this process makes from here on."""
    real_fsync, real_syncfs = os.fsync, atomic._SYNCFS

    def fsync(fd: int) -> None:
        COUNTS["fsync"] += 1
        real_fsync(fd)

    def syncfs(fd: int) -> int:
        COUNTS["syncfs"] += 1
        return real_syncfs(fd)

    os.fsync = fsync
    if real_syncfs is not None:
        atomic._SYNCFS = syncfs


def write_coco(root: Path, n: int) -> Path:
    """`n` small JPEGs under root/photos and the COCO file naming them."""
    rng = random.Random(0)
    (root / "photos").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        im = Image.new("RGB", (96, 72), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(4):
            x, y = rng.randrange(86), rng.randrange(62)
            im.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 10, y + 8))
        im.save(root / "photos" / f"p{i:05d}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"p{i:05d}.jpg", "width": 96, "height": 72})
        anns += [{"id": len(anns) + 1 + k, "image_id": i + 1, "category_id": 1 + k, "bbox": [5 + 20 * k, 5, 15, 12],
                  "area": 180, "iscrowd": 0} for k in range(2)]
    coco = root / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "标签贴纸"}, {"id": 2, "name": "线缆"}]}, ensure_ascii=False), encoding="utf-8")
    return coco


def one_import(side: str, coco: Path, out: Path) -> tuple[float, dict[str, int]]:
    """Import `coco` into `out` the `side` way; its wall time and the syncs it made."""
    real_atomic_path, real_flush = placement.atomic_path, placement.ImagePlacer.flush
    if side == "old":
        placement.atomic_path = lambda path, sync=True: real_atomic_path(path)  # every copy synced on its own
        placement.ImagePlacer.flush = lambda self: None
    shutil.rmtree(out, ignore_errors=True)
    before = dict(COUNTS)
    t = time.perf_counter()
    try:
        import_coco(coco, coco.parent / "photos", out)
    finally:
        placement.atomic_path, placement.ImagePlacer.flush = real_atomic_path, real_flush
    return time.perf_counter() - t, {k: COUNTS[k] - before[k] for k in COUNTS}


def one_convert(side: str, export: Path, out: Path) -> tuple[float, dict[str, int]]:
    """Convert the platform export `export` into `out` the `side` way; its wall time and the syncs it made."""
    real = convert.atomic_path, convert.save_atomic, convert.sync_files
    if side == "old":
        convert.atomic_path = lambda path, sync=True: real[0](path)  # every photo synced on its own
        convert.save_atomic = lambda path, save, sync=True: real[1](path, save)
        convert.sync_files = lambda paths: None
    shutil.rmtree(out, ignore_errors=True)
    before = dict(COUNTS)
    t = time.perf_counter()
    try:
        convert.convert_dataset(export, out, convert.ConvertOptions(val_ratio=0.1, teachers=0))
    finally:
        convert.atomic_path, convert.save_atomic, convert.sync_files = real
    return time.perf_counter() - t, {k: COUNTS[k] - before[k] for k in COUNTS}


def contents(out: Path) -> dict[str, bytes]:
    """Every file of a dataset folder, summary.json without the path it was imported from."""
    found = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    summary = json.loads(found.pop("summary.json"))
    summary.pop("source", None)
    return {**found, "summary.json": json.dumps(summary, sort_keys=True).encode()}


def main() -> None:
    """Write the COCO file, import it both ways each round, print the syncs and times side by side."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the photos and datasets (a real disk)")
    ap.add_argument("--command", choices=("import-coco", "convert"), default="import-coco")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="import_syncs.", dir=args.dir))
    try:
        if args.command == "convert":
            source = root / "export"
            synthesize(source, args.photos, 0, seed=0, size=(128, 96), fmt="vendor")
            run = one_convert
        else:
            source, run = write_coco(root, args.photos), one_import
        counted()
        times: dict[str, list[float]] = {"old": [], "new": []}
        syncs: dict[str, dict[str, int]] = {}
        for r in range(args.rounds):
            for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                seconds, syncs[side] = run(side, source, root / side)
                times[side].append(seconds)
        same = contents(root / "old") == contents(root / "new")
        old, new = min(times["old"]), min(times["new"])
        print(f"{args.photos} photos, data {args.command}, {args.rounds} round(s), in {root}")
        print(f"{'':22s} {'old':>10s} {'new':>10s} {'old / new':>10s}")
        print(f"{'fsync calls':22s} {syncs['old']['fsync']:10d} {syncs['new']['fsync']:10d}")
        print(f"{'syncfs calls':22s} {syncs['old']['syncfs']:10d} {syncs['new']['syncfs']:10d}")
        print(f"{'best wall time, s':22s} {old:10.2f} {new:10.2f} {old / new:10.2f}")
        print(f"same dataset (every file's bytes): {same}")
        if not same:
            raise SystemExit("the two runs wrote different datasets")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
