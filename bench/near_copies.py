"""Near-copies of a photo (data/near_copies.py), measured: how alike re-encoded copies and distinct photos are, and what
finding them costs.

    python bench/near_copies.py                      # 200 photos of each synthetic scene (wide, close-up, shapes)
    python bench/near_copies.py --n 1000 --cost-only # the cost of printing 1,000 photos of 1280x960, and of comparing
    python bench/near_copies.py --folders A B        # distinct photos of your own (every pair), and copies of 40 of each
    python bench/near_copies.py --demo               # and the demo's 1,050 shapes photos (224x224, one shape each)

Copies of the first 40 photos of each folder: JPEG at quality 60 and 30, PNG, WebP at 70, half size (LANCZOS, JPEG 85,
as a phone's "send as smaller photo"), quarter size, and a photo stored turned with EXIF orientation 6 beside a copy
with the turn written into its pixels and no EXIF; and copies mirrored or turned in their pixels. Prints, per folder, the largest difference (grey levels, the
prints' largest) of a copy of each kind from its photo, and the smallest of two distinct photos, against
`NEAR_COPY_LEVELS`. A quarter-size copy of a photo under 640 px wide is left out: no phone sends a photo that small, and
its print is an average over a handful of pixels.

Then copies a tool changed in tone or frame (JPEG 90): greyscale, brightness at 80, 90, 110 and 120 %, contrast at 80
and 120 % (Pillow's ImageEnhance), and crops of 2, 3, 5, 7 and 10 % off the left, off the top and about the centre (a
zoom). Each is measured as the plain print sees it (the closest turn) and as the comparison that would find it does:
greyscale by luminance only (`GREY_LEVELS`), a tone change by the prints matched in brightness and contrast
(`TONE_LEVELS`), a crop by the closest of 25 sub-windows of the larger photo (2 to 10 % off each edge and about the
centre, in steps of 2 %: not shipped, as the margins printed say). Against each, the smallest difference of two distinct
photos under that comparison: the margin is the copies' largest against it. A copy whose print has too little
luminance detail to be compared so (`TONE_DETAIL`, `TONE_LEAST`) is left out of the counts.

Then the cost: milliseconds a photo on one thread and seconds on the pool `photo_prints` uses, and the seconds and peak
memory (tracemalloc) `near_copies` takes to compare 1,000 and 10,000 prints and a fixed camera's 4,000 shots of one
view, with the greyscale and tone comparisons and without them (as before they were), side by side.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bbuvl.data.images import list_images
from bbuvl.data.near_copies import (GREY_CHROMA, GREY_LEVELS, NEAR_COPY_LEVELS, TONE_DETAIL, TONE_LEAST, TONE_LEVELS,
                                    TURNED_LEVELS, near_copies, photo_print, photo_prints, print_of)
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
CROPS = (0.02, 0.03, 0.05, 0.07, 0.10)  # off the grid of `WINDOWS` too: a user's crop is any size
WINDOWS = (0.02, 0.04, 0.06, 0.08, 0.10)
# Each kind a tool changed, and the comparison that would find it.
COMPARED = {"greyscale": "luminance", "brightness": "matched", "contrast": "matched", "crop": "windows"}


def cropped(image: Image.Image, side: str, share: float) -> Image.Image:
    """`image` with `share` of its width or height cut off `side` ('left', 'right', 'top', 'bottom'), or about its
    centre ('zoom': half of it off each edge)."""
    w, h = image.size
    dx, dy = round(w * share), round(h * share)
    box = {"left": (dx, 0, w, h), "right": (0, 0, w - dx, h), "top": (0, dy, w, h), "bottom": (0, 0, w, h - dy),
           "zoom": (dx // 2, dy // 2, w - dx // 2, h - dy // 2)}[side]
    return image.crop(box)


def changed(path: Path) -> dict[str, bytes]:
    """Copies of a photo a tool changed in tone or frame, by kind, as JPEG 90 bytes."""
    rgb = Image.open(path).convert("RGB")
    found = {"greyscale": rgb.convert("L")}
    for factor in (0.8, 0.9, 1.1, 1.2):
        found[f"brightness {factor:.0%}"] = ImageEnhance.Brightness(rgb).enhance(factor)
    for factor in (0.8, 1.2):
        found[f"contrast {factor:.0%}"] = ImageEnhance.Contrast(rgb).enhance(factor)
    for share in CROPS:
        for side in ("left", "top", "zoom"):
            found[f"crop {share:.0%} {side}"] = cropped(rgb, side, share)
    return {kind: encoded(image, "JPEG", quality=90) for kind, image in found.items()}


def windows(path: Path) -> np.ndarray:
    """`[windows, 192]`: the prints of 25 sub-windows of a photo (2 to 10 % off each edge, and about its centre), where
    a cropped copy's print would be compared."""
    rgb = Image.open(path).convert("RGB")
    found = [print_of(cropped(rgb, side, share)) for share in WINDOWS for side in ("left", "right", "top", "bottom",
                                                                                   "zoom")]
    return np.stack([p.ravel() for p in found if p is not None] or [np.full(192, np.inf, np.float32)])


def luminance(p: np.ndarray) -> np.ndarray:
    """A print's 64 luminance values."""
    return p[..., 0].ravel()


def matched(p: np.ndarray) -> tuple[np.ndarray, float]:
    """A print matched in brightness and contrast, as `near_copies` compares it: its luminance less its mean, and its
    colour less grey, divided by its luminance's spread (standard deviation); and that spread."""
    y = luminance(p)
    spread = float(y.std())
    return np.concatenate([y - y.mean(), (p[..., 1:] - 128.0).ravel()]) / spread, spread


def span(p: np.ndarray) -> float:
    """The levels a print's luminance spans."""
    return float(luminance(p).max() - luminance(p).min())


def matched_compared(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two prints in colour are compared matched in tone: one spans `TONE_DETAIL`, the other `TONE_LEAST`."""
    return max(span(a), span(b)) >= TONE_DETAIL and min(span(a), span(b)) >= TONE_LEAST


def grey(p: np.ndarray) -> bool:
    """Whether a print's colour is grey everywhere (`GREY_CHROMA`)."""
    return float(np.abs(p[..., 1:] - 128.0).max()) <= GREY_CHROMA


def measured(kind: str, a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    """The difference of a photo's print `a` and its copy's `b` under the comparison that would find `kind`."""
    compared = COMPARED[kind.split()[0]]
    if compared == "luminance":
        return float(np.abs(luminance(a) - luminance(b)).max())
    if compared == "matched":
        (za, sa), (zb, sb) = matched(a), matched(b)
        return float(np.abs(za - zb).max() * max(sa, sb))
    return float(np.abs(window - b.ravel()).max(axis=1).min())


def distinct_changed(photos: list[Path], prints: list[np.ndarray]) -> dict[str, float]:
    """The smallest difference of two distinct photos under each comparison: one's luminance against another's (a
    photo with luminance detail, as if made greyscale), the two matched in brightness and contrast (both with detail,
    in colour), and a sub-window of one against the other's print."""
    n = len(prints)
    y = np.stack([luminance(p) for p in prints])
    found = {"luminance": np.inf, "matched": np.inf, "windows": np.inf}
    for i in range(n):
        if span(prints[i]) >= TONE_DETAIL:
            d = np.abs(y - y[i]).max(axis=1)
            d[i] = np.inf
            found["luminance"] = min(found["luminance"], float(d.min()))
    colour = [p for p in prints if span(p) >= TONE_LEAST and not grey(p)]
    if len(colour) > 1:
        toned = [matched(p) for p in colour]
        z, spread = np.stack([t[0] for t in toned]), np.array([t[1] for t in toned])
        spans = np.array([span(p) for p in colour])
        for i in range(len(toned) - 1):
            d = np.abs(z[i + 1 :] - z[i]).max(axis=1) * np.maximum(spread[i], spread[i + 1 :])
            d[np.maximum(spans[i], spans[i + 1 :]) < TONE_DETAIL] = np.inf
            found["matched"] = min(found["matched"], float(d.min()))
    flat = np.stack([p.ravel() for p in prints])
    for i, path in enumerate(photos):
        d = np.abs(flat[None] - windows(path)[:, None]).max(axis=2)
        d[:, i] = np.inf
        found["windows"] = min(found["windows"], float(d.min()))
    return found


def measure_folder(folder: Path, scratch: Path, n_copies: int) -> tuple[float, float, dict[str, float], dict]:
    """The smallest difference of two distinct photos in `folder` (as taken, and in the closest of the 8 turns), and the
    largest of a copy of each kind; and for copies changed in tone or frame, per comparison the smallest of distinct
    photos and per kind the largest of a copy (plain and as compared) and how many `near_copies` finds."""
    photos = [p for p in list_images(folder)]
    printed = photo_prints(photos)
    photos, prints = [p for p, q in zip(photos, printed) if q is not None], [q for q in printed if q is not None]
    matrix = np.stack([p.ravel() for p in prints])
    as_taken = min(float(np.abs(matrix[i + 1 :] - matrix[i]).max(axis=1).min()) for i in range(len(prints) - 1))
    turned = [turns(p) for p in prints]
    distinct = min(float(np.abs(np.stack(turned[i + 1 :]) - matrix[i]).max(axis=2).min()) for i in range(len(prints) - 1))
    largest: dict[str, float] = {}
    for path in photos[:n_copies]:
        for kind, (a, b) in copies(path).items():
            if (d := difference(a, b, scratch)) is not None:
                largest[kind] = max(largest.get(kind, 0.0), d)
    print(f"{folder}: {len(printed)} photos ({len(printed) - len(prints)} without detail), "
          f"distinct photos differ by at least {distinct:.2f} levels in the closest turn ({as_taken:.2f} as taken)")
    for kind, d in largest.items():
        print(f"  {kind:<18} copies differ by at most {d:.2f}")
    apart = distinct_changed(photos, prints)
    print(f"  distinct photos, changed-copy comparisons: luminance (one with detail) {apart['luminance']:.2f}, matched "
          f"{apart['matched']:.2f}, sub-windows {apart['windows']:.2f}")
    kinds: dict[str, list] = {}  # kind -> [plain largest, compared largest, found, copies with detail]
    for path in photos[:n_copies]:
        a = photo_print(path)
        window = windows(path)
        for kind, data in changed(path).items():
            (scratch / "copy.jpg").write_bytes(data)
            b = photo_print(scratch / "copy.jpg")
            if b is None:
                continue
            row = kinds.setdefault(kind, [0.0, 0.0, 0, 0])
            row[0] = max(row[0], float(np.abs(turns(b) - a.ravel()).max(axis=1).min()))
            how = COMPARED[kind.split()[0]]
            if how == "luminance" and span(b) < TONE_DETAIL or how == "matched" and not matched_compared(a, b):
                continue  # too little detail to be compared so: `TONE_DETAIL`, `TONE_LEAST`
            row[1] = max(row[1], measured(kind, a, b, window))
            row[2] += bool(near_copies([a, b]))
            row[3] += 1
    for kind, (plain, compared, found, n) in kinds.items():
        print(f"  {kind:<18} plain print {plain:6.2f}, {COMPARED[kind.split()[0]]:<9} {compared:6.2f}; "
              f"near_copies finds {found} of {n} with the detail to be compared")
    return as_taken, distinct, largest, {"distinct": apart, "copies": kinds}


def compare_cost(prints: list[np.ndarray], what: str) -> None:
    """Seconds and peak memory (tracemalloc, MB) `near_copies` takes on `prints`, without the greyscale and tone
    comparisons (as before them) and with them, side by side."""
    found = []
    for options in ({"tone_levels": 0, "grey_levels": 0}, {}):
        start = time.perf_counter()
        near_copies(prints, **options)
        seconds = time.perf_counter() - start
        tracemalloc.start()
        near_copies(prints, **options)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        found.append((seconds, peak))
    (before, memory_before), (after, memory_after) = found
    print(f"comparing {what}: {before:.2f} s, {memory_before:.0f} MB without greyscale and tone; {after:.2f} s, "
          f"{memory_after:.0f} MB with them ({after / before:.2f}x, {memory_after / memory_before:.2f}x)")


def cost(photos: list[Path]) -> None:
    """Milliseconds a print on one thread (and a whole decode, for scale) and seconds on the pool, and the time and
    memory to compare 1,000 and 10,000 prints and a fixed camera's 4,000 shots of one view."""
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
        compare_cost(list(rng.uniform(0, 255, (n, *shape)).astype(np.float32)), f"{n} prints")
    view = rng.uniform(40, 200, shape).astype(np.float32)  # a fixed camera: every shot a near-copy of the others
    compare_cost([view + rng.integers(-3, 4, shape).astype(np.float32) for _ in range(4000)], "4000 shots of one view")


def main() -> None:
    """Run the bench."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="Synthetic photos of each scene.")
    ap.add_argument("--copies", type=int, default=40, help="Photos of each folder to copy.")
    ap.add_argument("--folders", nargs="*", type=Path, help="Folders of distinct photos (instead of synthetic ones).")
    ap.add_argument("--cost-only", action="store_true", help="Only the cost, on --n synthetic photos of 1280x960.")
    ap.add_argument("--demo", action="store_true", help="Also the demo's 1,050 shapes photos (224x224, one shape each).")
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
        if args.demo:  # as `bbuvl data synth DIR --scene shapes --n-train 1000 --n-val 50 --seed 0 --size 224x224
            # --min-objects 1 --max-objects 1` makes it
            synthesize_shapes(root / "demo", 1000, 50, seed=0, size=(224, 224), min_objects=1, max_objects=1)
            folders = [*folders, root / "demo" / "images"]
        found = [measure_folder(f, scratch, args.copies) for f in folders]
        distinct, distinct_turned = min(f[0] for f in found), min(f[1] for f in found)
        copy = max(d for f in found for k, d in f[2].items() if k not in TURNED_KINDS)
        turned = max(d for f in found for k, d in f[2].items() if k in TURNED_KINDS)
        print(f"all folders: copies differ by at most {copy:.2f} levels, distinct photos by at least {distinct:.2f}; "
              f"NEAR_COPY_LEVELS {NEAR_COPY_LEVELS} is {'between them' if copy <= NEAR_COPY_LEVELS < distinct else 'NOT between'}")
        print(f"turned or mirrored: copies differ by at most {turned:.2f} levels, distinct photos in the closest turn by "
              f"at least {distinct_turned:.2f}; TURNED_LEVELS {TURNED_LEVELS} is "
              f"{'between them' if turned <= TURNED_LEVELS < distinct_turned else 'NOT between'}")
        bounds = {"luminance": f"GREY_LEVELS {GREY_LEVELS:g}", "matched": f"TONE_LEVELS {TONE_LEVELS:g}",
                  "windows": "no comparison shipped, the plain print"}
        print("changed in tone or frame, all folders (margin: copies' largest as compared, distinct photos' smallest):")
        for kind in found[0][3]["copies"]:
            compared = COMPARED[kind.split()[0]]
            largest = max(f[3]["copies"].get(kind, [0, 0])[1] for f in found)
            apart = min(f[3]["distinct"][compared] for f in found)
            hits = sum(f[3]["copies"].get(kind, [0, 0, 0, 0])[2] for f in found)
            total = sum(f[3]["copies"].get(kind, [0, 0, 0, 0])[3] for f in found)
            print(f"  {kind:<18} {compared:<9} copies <= {largest:6.2f}, distinct >= {apart:6.2f}: "
                  f"{'separable' if largest < apart else 'NOT separable'}; {bounds[compared]} finds {hits} of {total}")


if __name__ == "__main__":
    main()
