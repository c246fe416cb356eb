"""Near-copies of a photo (data/near_copies.py), measured: how alike re-encoded copies and distinct photos are, and what
finding them costs.

    python bench/near_copies.py                      # 200 photos of each synthetic scene (wide, close-up, shapes)
    python bench/near_copies.py --n 1000 --cost-only # the cost of printing 1,000 photos of 1280x960, and of comparing
    python bench/near_copies.py --folders A B        # distinct photos of your own (every pair), and copies of 40 of each

Copies of the first 40 photos of each folder: JPEG at quality 60 and 30, PNG, WebP at 70, half size (LANCZOS, JPEG 85,
as a phone's "send as smaller photo"), quarter size, and a photo stored turned with EXIF orientation 6 beside a copy
with the turn written into its pixels and no EXIF; and copies mirrored or turned in their pixels. Prints, per folder, the largest difference (grey levels, the
prints' largest) of a copy of each kind from its photo, and the smallest of two distinct photos, against
`NEAR_COPY_LEVELS`. A quarter-size copy of a photo under 640 px wide is left out: no phone sends a photo that small, and
its print is an average over a handful of pixels. Then the cost: milliseconds a photo on one thread and seconds on the
pool `photo_prints` uses, and the seconds `near_copies` takes to compare 1,000 and 10,000 prints.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bbuvl.data.images import list_images
from bbuvl.data.near_copies import NEAR_COPY_LEVELS, TURNED_LEVELS, near_copies, photo_print, photo_prints
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` saved as `fmt`, as bytes."""
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def copies(path: Path) -> dict[str, tuple[bytes, bytes]]:
    """Pairs of (one photo, a tool's copy of it) by kind."""
    original = path.read_bytes()
    rgb = Image.open(path).convert("RGB")
    half = rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.LANCZOS)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers turn the stored grid by ROTATE_270: the grid is the upright photo turned by ROTATE_90
    turned = encoded(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)
    found = {"jpeg q60": (original, encoded(rgb, "JPEG", quality=60)),
             "jpeg q30": (original, encoded(rgb, "JPEG", quality=30)),
             "png": (original, encoded(rgb, "PNG")),
             "webp q70": (original, encoded(rgb, "WEBP", quality=70)),
             "half size": (original, encoded(half, "JPEG", quality=85)),
             "turn into pixels": (turned, encoded(rgb, "JPEG", quality=90)),
             "mirrored (JPEG 60)": (original, encoded(rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=60)),
             "turned 90 (PNG)": (original, encoded(rgb.transpose(Image.Transpose.ROTATE_90), "PNG")),
             "diagonal (JPEG 60)": (original, encoded(rgb.transpose(Image.Transpose.TRANSPOSE), "JPEG",
                                                       quality=60))}
    if rgb.width >= 640:
        quarter = rgb.resize((rgb.width // 4, rgb.height // 4), Image.Resampling.BILINEAR)
        found["quarter size"] = (original, encoded(quarter, "JPEG", quality=80))
    return found


def turns(p: np.ndarray) -> np.ndarray:
    """`[8, 192]`: a print in the 8 ways it can lie on another (as taken first), flattened."""
    return np.stack([np.rot90(p, k, axes=(0, 1))[:, ::-1 if m else 1].ravel() for m in (0, 1) for k in range(4)])


def difference(a: bytes, b: bytes, scratch: Path) -> float | None:
    """The largest difference of the prints of two encoded photos in the closest turn; None when either has none."""
    (scratch / "a").write_bytes(a)
    (scratch / "b").write_bytes(b)
    pa, pb = photo_print(scratch / "a"), photo_print(scratch / "b")
    return None if pa is None or pb is None else float(np.abs(turns(pb) - pa.ravel()).max(axis=1).min())


TURNED_KINDS = ("mirrored (JPEG 60)", "turned 90 (PNG)", "diagonal (JPEG 60)")


def measure_folder(folder: Path, scratch: Path, n_copies: int) -> tuple[float, float, dict[str, float]]:
    """The smallest difference of two distinct photos in `folder` (as taken, and in the closest of the 8 turns), and the
    largest of a copy of each kind."""
    photos = list_images(folder)
    prints = [p for p in photo_prints(photos) if p is not None]
    matrix = np.stack([p.ravel() for p in prints])
    as_taken = min(float(np.abs(matrix[i + 1 :] - matrix[i]).max(axis=1).min()) for i in range(len(prints) - 1))
    turned = [turns(p) for p in prints]
    distinct = min(float(np.abs(np.stack(turned[i + 1 :]) - matrix[i]).max(axis=2).min()) for i in range(len(prints) - 1))
    largest: dict[str, float] = {}
    for path in photos[:n_copies]:
        for kind, (a, b) in copies(path).items():
            if (d := difference(a, b, scratch)) is not None:
                largest[kind] = max(largest.get(kind, 0.0), d)
    print(f"{folder}: {len(photos)} photos ({len(photos) - len(prints)} without detail), "
          f"distinct photos differ by at least {distinct:.2f} levels in the closest turn ({as_taken:.2f} as taken)")
    for kind, d in largest.items():
        print(f"  {kind:<18} copies differ by at most {d:.2f}")
    return as_taken, distinct, largest


def cost(photos: list[Path]) -> None:
    """Milliseconds a print on one thread (and a whole decode, for scale) and seconds on the pool, and the time to
    compare 1,000 and 10,000 prints."""
    start = time.perf_counter()
    for p in photos:  # what the print saves by Pillow's draft: decoding each photo whole, as `data check` does
        with Image.open(p) as im:
            im.load()
    whole = time.perf_counter() - start
    start = time.perf_counter()
    one = [photo_print(p) for p in photos]
    single = time.perf_counter() - start
    start = time.perf_counter()
    photo_prints(photos)
    pooled = time.perf_counter() - start
    size = Image.open(photos[0]).size
    print(f"printing {len(photos)} photos of {size[0]}x{size[1]}: {single:.2f} s on one thread "
          f"({1000 * single / len(photos):.2f} ms a photo; decoding each whole {1000 * whole / len(photos):.2f} ms), "
          f"{pooled:.2f} s on the pool")
    rng = np.random.default_rng(0)
    shape = next(p for p in one if p is not None).shape
    for n in (1000, 10000):
        fake = list(rng.uniform(0, 255, (n, *shape)).astype(np.float32))
        start = time.perf_counter()
        near_copies(fake)
        print(f"comparing {n} prints: {time.perf_counter() - start:.2f} s")


def main() -> None:
    """Run the bench."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="Synthetic photos of each scene.")
    ap.add_argument("--copies", type=int, default=40, help="Photos of each folder to copy.")
    ap.add_argument("--folders", nargs="*", type=Path, help="Folders of distinct photos (instead of synthetic ones).")
    ap.add_argument("--cost-only", action="store_true", help="Only the cost, on --n synthetic photos of 1280x960.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch = root / "scratch"
        scratch.mkdir()
        if args.cost_only:
            synthesize(root / "cost", args.n - 1, 1, seed=3, size=(1280, 960), num_teachers=0)
            cost(list_images(root / "cost" / "images"))
            return
        folders = args.folders
        if not folders:
            synthesize(root / "wide", args.n - 1, 1, seed=1, num_teachers=0)
            synthesize(root / "closeup", args.n - 1, 1, seed=1, framing="closeup", num_teachers=0)
            synthesize_shapes(root / "shapes", args.n - 1, 1, seed=1, num_teachers=0)
            folders = [root / name / "images" for name in ("wide", "closeup", "shapes")]
        found = [measure_folder(f, scratch, args.copies) for f in folders]
        distinct, distinct_turned = min(d for d, _, _ in found), min(d for _, d, _ in found)
        copy = max(d for _, _, largest in found for k, d in largest.items() if k not in TURNED_KINDS)
        turned = max(d for _, _, largest in found for k, d in largest.items() if k in TURNED_KINDS)
        print(f"all folders: copies differ by at most {copy:.2f} levels, distinct photos by at least {distinct:.2f}; "
              f"NEAR_COPY_LEVELS {NEAR_COPY_LEVELS} is {'between them' if copy <= NEAR_COPY_LEVELS < distinct else 'NOT between'}")
        print(f"turned or mirrored: copies differ by at most {turned:.2f} levels, distinct photos in the closest turn by "
              f"at least {distinct_turned:.2f}; TURNED_LEVELS {TURNED_LEVELS} is "
              f"{'between them' if turned <= TURNED_LEVELS < distinct_turned else 'NOT between'}")


if __name__ == "__main__":
    main()
