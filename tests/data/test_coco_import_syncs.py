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


def _fsyncs_and_syncfs(monkeypatch) -> dict[str, int]:
    """Count, from here on, this process's fsync calls and atomic.py's syncfs calls."""
    import bbuvl.atomic as atomic

    counts = {"fsync": 0, "syncfs": 0}
    real_fsync, real_syncfs = os.fsync, atomic._SYNCFS

    def fsync(fd: int) -> None:
        counts["fsync"] += 1
        real_fsync(fd)

    def syncfs(fd: int) -> int:
        counts["syncfs"] += 1
        return real_syncfs(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if real_syncfs is not None:
        monkeypatch.setattr(atomic, "_SYNCFS", syncfs)
    return counts


def test_synth_and_convert_wait_on_the_disk_once_for_their_photos_not_once_a_photo(tmp_path, monkeypatch):
    # Each photo (and each vendor annotation) was fsynced on its own: 2 waits a photo for `data synth --format
    # vendor`, 1 for `data convert`. The count now does not grow with the photos, and every photo is still whole.
    from bbuvl.data.convert import ConvertOptions, convert_dataset
    from bbuvl.synthetic.dataset import synthesize

    counts = _fsyncs_and_syncfs(monkeypatch)
    made = {}
    for n in (4, 12):
        before = dict(counts)
        synthesize(tmp_path / f"export{n}", n, 0, seed=1, size=(128, 96), fmt="vendor")
        between = dict(counts)
        convert_dataset(tmp_path / f"export{n}", tmp_path / f"ds{n}", ConvertOptions(val_ratio=0, teachers=0))
        made[n] = ({k: between[k] - before[k] for k in counts}, {k: counts[k] - between[k] for k in counts})
        records = read_records(tmp_path / f"ds{n}" / TRAIN)
        assert len(records) == n
        for r in records:
            with Image.open(resolve_image(tmp_path / f"ds{n}" / TRAIN, r.image)) as im:
                im.load()
    assert made[4] == made[12], made
    synth_syncs, convert_syncs = made[12]
    assert synth_syncs["fsync"] + synth_syncs["syncfs"] <= 2 and convert_syncs["fsync"] + convert_syncs["syncfs"] <= 8
