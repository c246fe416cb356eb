"""`data import-coco` copies its photos without waiting on the disk for each (data/placement.py) and syncs them once
before the dataset's files name them: a killed import still leaves every photo under its real name whole, and the
next import into the folder finishes the dataset with the photos it finds there (bench/import_syncs.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

from PIL import Image

from bbuvl.atomic import atomic_path, sync_files
from bbuvl.data.coco_files import import_coco
from bbuvl.data.layout import TRAIN, VAL
from bbuvl.data.schema import read_records, resolve_image


def coco_of_photos(root: Path, n: int) -> Path:
    """`n` distinct small JPEGs under root/photos, two boxes each, and the COCO file naming them."""
    (root / "photos").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        Image.new("RGB", (64, 48), (40 * i % 256, 90, 200 - 10 * i)).save(root / "photos" / f"p{i}.jpg", quality=95)
        images.append({"id": i + 1, "file_name": f"p{i}.jpg", "width": 64, "height": 48})
        anns += [{"id": 2 * i + 1 + k, "image_id": i + 1, "category_id": 1 + k, "bbox": [4 + 20 * k, 4, 12, 10],
                  "area": 120, "iscrowd": 0} for k in range(2)]
    coco = root / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "标签贴纸"}, {"id": 2, "name": "线缆"}]}), "utf-8")
    return coco


def _import_killed_at_the_fourth_replace(coco: str, out: str) -> None:
    """Import, and die (SIGKILL: no clean-up runs) where the fourth os.replace would start: three photos in place."""
    replaces, real = [], os.replace

    def replace(src, dst):
        if len(replaces) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        replaces.append(dst)
        real(src, dst)

    os.replace = replace
    import_coco(coco, Path(coco).parent / "photos", out)


def test_a_killed_import_leaves_whole_photos_and_no_dataset_and_the_next_import_finishes_it(tmp_path):
    coco, out = coco_of_photos(tmp_path, 8), tmp_path / "ds"
    child = multiprocessing.get_context("spawn").Process(target=_import_killed_at_the_fourth_replace,
                                                         args=(str(coco), str(out)))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    placed = sorted((out / "images").iterdir())
    real = [p for p in placed if not p.name.startswith(".")]
    assert len(real) == 3 and not (out / TRAIN).exists() and not (out / VAL).exists()
    for photo in real:  # under its real name only whole
        assert photo.read_bytes() == (tmp_path / "photos" / photo.name).read_bytes()

    result = import_coco(coco, tmp_path / "photos", out)
    records = read_records(out / TRAIN) + read_records(out / VAL)
    assert result.summary["images"]["train"] + result.summary["images"]["val"] == 8 == len(records)
    for r in records:  # the three found in place are used as they are, not copied again under a hashed name
        assert resolve_image(out / TRAIN, r.image).read_bytes() == (tmp_path / "photos" / Path(r.image).name).read_bytes()
    assert sorted(p.name for p in (out / "images").iterdir() if not p.name.startswith(".")) == [f"p{i}.jpg" for i in range(8)]


def test_a_file_written_unsynced_is_whole_or_absent_and_synced_after(tmp_path):
    (tmp_path / "a").mkdir()
    written = []
    for name in ("a/one.bin", "two.bin"):
        with atomic_path(tmp_path / name, sync=False) as tmp:
            tmp.write_bytes(name.encode() * 1000)
        written.append(tmp_path / name)
    try:
        with atomic_path(tmp_path / "three.bin", sync=False) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("stopped mid-write")
    except RuntimeError:
        pass
    sync_files(written)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["one.bin", "two.bin"]
    assert [p.read_bytes() for p in written] == [b"a/one.bin" * 1000, b"two.bin" * 1000]
