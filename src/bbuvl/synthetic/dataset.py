"""Writing a synthetic dataset: photos rendered in parallel into a dataset folder or a platform export.

Image `i` depends only on its own seed, so output is byte-identical for a seed, whatever `workers`.
Another scene (`bbuvl.synthetic.shapes`) can be rendered into the same dataset folder through
`synthesize(render=...)`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator, Literal

from PIL import Image

from bbuvl.atomic import name_or_temporary, save_atomic, sync_files, write_text_atomic
from bbuvl.data.coords import orient_box
from bbuvl.data.faults import Faults
from bbuvl.data.images import EXIF_ORIENTATION
from bbuvl.data.labels import SEP
from bbuvl.data.layout import write_dataset_folder
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.data.workers import bound_workers, process_pool, results_in_order, stopping, worker_deaths
from bbuvl.synthetic.camera import Framing, check_size, check_wide_share, render_scene
from bbuvl.synthetic.export import INVERSE_ROTATION, PlatformNames, vendor_document
from bbuvl.synthetic.scene import FaultRate

JPEG_QUALITY = 90
IMAGES, ANNOTATIONS = "images", "annotations"
# The only names a run writes into images/ and annotations/ (`_Job.name`, flat), and its temporaries' when killed.
_WRITTEN = r"(?:train|val)_\d{5,}\.(?:jpg|json)"
_OWN_NAME = re.compile(name_or_temporary(_WRITTEN))


def written_by_synth(name: str) -> bool:
    """Whether `name`, relative to images/ or annotations/, is one a run of `synthesize` writes there."""
    return _OWN_NAME.fullmatch(name) is not None


def image_seed(seed: int, split: str, i: int) -> int:
    """Seed of photo `i` of `split`: independent of the other photos, of workers and of PYTHONHASHSEED."""
    return int.from_bytes(hashlib.sha256(f"bbuvl-synth/{seed}/{split}/{i}".encode()).digest()[:8], "little")


Renderer = Callable[[int, tuple[int, int]], tuple[Image.Image, list[ObjectAnn]]]  # (seed, size) -> photo, objects


@dataclass(frozen=True)
class _Job:
    out: Path
    name: str
    index: int  # position among all photos written (drives the vendor EXIF pattern)
    seed: int
    size: tuple[int, int]
    fmt: str
    render: Renderer = render_scene


@lru_cache(maxsize=1)
def _platform_names() -> PlatformNames:
    return PlatformNames()  # once per worker process


def _render_job(job: _Job) -> tuple[ImageRecord, dict]:
    img, objects = job.render(job.seed, job.size)
    rel = f"{IMAGES}/{job.name}.jpg"
    record = ImageRecord(images=[rel], width=img.width, height=img.height, objects=objects, id=job.name)
    if job.fmt == "jsonl":
        _save_photo(img, job.out / rel)
        return record, {}
    rng = random.Random(job.seed ^ 0x5EED_5EED)  # vendor choices must not disturb the scene's random stream
    shape = "dataList" if rng.random() < 0.2 else "FeatureCollection"
    boxes = [(o.bbox_2d, o.desc) for o in objects]
    meta = {"shape": shape, "orientation": 1, "frame": "oriented"}
    frame_size = img.size
    if job.index % 10 == 3:  # about 1 in 10: stored rotated with an EXIF tag telling viewers to turn it upright
        orientation = 6 if (job.index // 10) % 2 == 0 else 8
        raw = img.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        _save_photo(raw, job.out / rel, exif=exif)
        meta["orientation"] = orientation
        if (job.index // 20) % 2 == 1:  # annotated on the raw grid, as some annotation tools show it
            boxes = [(orient_box(b, img.size, INVERSE_ROTATION[orientation]), label) for b, label in boxes]
            frame_size, meta["frame"] = raw.size, "raw"
    else:
        _save_photo(img, job.out / rel)
    doc = vendor_document(boxes, frame_size, _platform_names(), rng, job.index, shape)
    write_text_atomic(job.out / ANNOTATIONS / f"{job.name}.json", json.dumps(doc, ensure_ascii=False) + "\n",
                      sync=False)
    return record, meta


def _save_photo(image: Image.Image, path: Path, **kwargs: object) -> None:
    """A JPEG written whole under a new inode, or not at all (bbuvl/atomic.py): a full disk leaves no cut-short photo,
    and a hard link to the previous photo (a snapshot) keeps its bytes. Not waited on the disk for: `synthesize` syncs
    every file it rendered at once, before the dataset's files name them (`sync_files`)."""
    save_atomic(path, lambda fh: image.save(fh, "JPEG", quality=JPEG_QUALITY, **kwargs), sync=False)


def fault_counts(records: list[ImageRecord]) -> dict[str, int]:
    """Photos, photos holding a fault, objects and faulty objects of the synthetic scene's `records` (`FaultCount`)."""
    return asdict(Faults.load().count([o.desc for o in r.objects] for r in records))


def _run(jobs: list[_Job], workers: int) -> Iterator[tuple[ImageRecord, dict]]:
    # At most a process per usable core and per photo: with fork the pool starts all of them at once (data/workers.py).
    workers = min(bound_workers(workers), len(jobs)) if workers > 1 else 1
    if workers <= 1:
        yield from map(_render_job, jobs)
        return
    # Workers only draw with Pillow and numpy; each photo depends only on its job, and the results come in its order.
    w, h = jobs[0].size  # a large --size renders a canvas many times the photo
    size = max(1, min(16, len(jobs) // (4 * workers)))
    with worker_deaths(f"rendering {w}x{h} photos", "run again with fewer --workers or a smaller --size"), \
            process_pool(workers) as pool:
        futures = [pool.submit(_render_chunk, jobs[i:i + size]) for i in range(0, len(jobs), size)]
        # A photo that fails (a full disk, a file-size limit) stops the run as it fails: the pool drops the photos
        # not begun, and each worker stops at its next photo
        for rendered in results_in_order(futures):
            yield from rendered


def _render_chunk(jobs: list[_Job]) -> list[tuple[ImageRecord, dict]]:
    """Worker entry point: render a run of photos in order, up to the pool's stop (then fewer: the command is
    stopping, and drops them)."""
    rendered = []
    for job in jobs:
        if stopping():
            break
        rendered.append(_render_job(job))
    return rendered


def _check_stale(out: Path, jobs: list[_Job], fmt: str) -> None:
    """Refuse to leave files of an earlier, larger run next to this one's: they would mix into the data."""
    expected = {f"{IMAGES}/{j.name}.jpg" for j in jobs}
    if fmt == "vendor":
        expected |= {f"{ANNOTATIONS}/{j.name}.json" for j in jobs}
    stale = sorted(
        p.relative_to(out).as_posix()
        for sub in (IMAGES, ANNOTATIONS) if (out / sub).is_dir()
        for p in (out / sub).rglob("*") if p.is_file() and p.relative_to(out).as_posix() not in expected
    )
    if stale:
        raise ValueError(f"{out}: holds {len(stale)} file(s) this run would not write (e.g. {stale[0]}); "
                         "write to an empty folder or delete them first")


def synthesize(
    out: Path,
    n_train: int,
    n_val: int,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    fmt: Literal["jsonl", "vendor"] = "jsonl",
    num_teachers: int = 10,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    framing: Framing = "wide",
    render: Renderer | None = None,
    about: dict | None = None,
    faults: FaultRate | None = None,
    wide_share: float = 0.5,
    tile_share: float = 0.0,
    tile_grid: tuple[int, int] = (3, 3),
) -> dict:
    """Render `n_train + n_val` photos into `out`: a dataset folder (jsonl) or a platform export (vendor).

    Returns the summary (counts per split and per category). `progress(done, total)` is called per photo.
    `render` swaps the equipment room for another scene (a picklable `(seed, size) -> (photo, objects)`, e.g.
    `bbuvl.synthetic.shapes`), `about` adds what describes it to the summary; `framing` moves the room's camera;
    `faults` sets how often photos and parts are wrong (None: each part at its own odds), and the summary counts them;
    `wide_share` is the odds of a wide photo under mixed framing, `tile_share` of a cell of `tile_grid` cut from a whole
    cabinet (camera.py, "tiles").
    """
    if fmt not in ("jsonl", "vendor"):
        raise ValueError(f"format must be 'jsonl' or 'vendor', got '{fmt}'")
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError(f"need a positive number of photos, got n_train={n_train}, n_val={n_val}")
    check_wide_share(framing, wide_share, tile_share)
    if render is not None and (framing != "wide" or faults is not None):
        raise ValueError("framing or a fault rate does not apply to another scene: both belong to the equipment room")
    check_size(size)
    out = Path(out)
    if render is None:
        render = (render_scene if framing == "wide" and faults is None
                  else partial(render_scene, framing=framing, faults=faults, wide_share=wide_share,
                               tile_share=tile_share, tile_grid=tuple(tile_grid)))
        about = {"framing": framing, **(about or {})} if framing != "wide" else about  # wide: the summary of old
        if wide_share != 0.5:
            about = {**(about or {}), "wide_share": wide_share}
        if tile_share:
            about = {**(about or {}), "tile_share": tile_share, "tile_grid": f"{tile_grid[0]}x{tile_grid[1]}"}
        if faults is not None:
            about = {**(about or {}), "fault_rate": {"photos": faults.photos, "parts": faults.parts}}
    names = [("train", i) for i in range(n_train)] + [("val", i) for i in range(n_val)]
    jobs = [_Job(out, f"{split}_{i:05d}", k, image_seed(seed, split, i), tuple(size), fmt, render)
            for k, (split, i) in enumerate(names)]
    _check_stale(out, jobs, fmt)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    if fmt == "vendor":
        _platform_names()  # a token map that cannot express our labels fails here, before any rendering
        (out / ANNOTATIONS).mkdir(exist_ok=True)
    results = []
    for done, result in enumerate(_run(jobs, workers), start=1):
        results.append(result)
        if progress is not None:
            progress(done, len(jobs))
    records = [r for r, _ in results]
    sync_files([job.out / f"{IMAGES}/{job.name}.jpg" for job in jobs]
               + ([job.out / ANNOTATIONS / f"{job.name}.json" for job in jobs] if fmt == "vendor" else []))
    categories = Counter(o.desc.split(SEP)[0] for r in records for o in r.objects)
    extra = {"generator": "bbuvl data synth", "format": fmt, "seed": seed, "size": list(size), **(about or {}),
             "categories": dict(sorted(categories.items(), key=lambda kv: -kv[1]))}
    if faults is not None:
        extra["faults"] = {"train": fault_counts(records[:n_train]), "val": fault_counts(records[n_train:])}
    if fmt == "jsonl":
        return write_dataset_folder(out, records[:n_train], records[n_train:], num_teachers, seed, extra, val_only=not n_train)
    metas = [m for _, m in results]
    return {
        "images": {"train": n_train, "val": n_val},
        "objects": {"train": sum(len(r.objects) for r in records[:n_train]), "val": sum(len(r.objects) for r in records[n_train:])},
        "labels": len({o.desc for r in records for o in r.objects}),
        **extra,
        "vendor": {
            "FeatureCollection": sum(m["shape"] == "FeatureCollection" for m in metas),
            "dataList": sum(m["shape"] == "dataList" for m in metas),
            "exif_rotated_oriented_frame": sum(m["orientation"] != 1 and m["frame"] == "oriented" for m in metas),
            "exif_rotated_raw_frame": sum(m["frame"] == "raw" for m in metas),
        },
    }
