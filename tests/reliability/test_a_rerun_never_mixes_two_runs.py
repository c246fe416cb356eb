"""Class: an output folder holds one run's work, and one photo's derived names are its own.

A re-run of a data command into its own output (another grid, another source, fewer photos) replaces the
earlier run's photos as well as its records, and a failed or killed run never leaves half of each
(bbuvl/outputs.py `replacing`, docs/outputs.md). Tile names differ where the files would be one on some disk:
case, Unicode composition, `./` (bbuvl/data/names.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.names import NameBook, name_key
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_records, write_dataset
from bbuvl.outputs import replacing
from bbuvl.synthetic.dataset import synthesize


def run(*args: str) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def listed_photos(ds: Path) -> set[str]:
    return {r.image for name in ("train.jsonl", "val.jsonl") if (ds / name).exists() for r in read_records(ds / name)}


def photos_on_disk(ds: Path) -> set[str]:
    return {p.relative_to(ds).as_posix() for p in (ds / "images").rglob("*") if p.is_file()}


def photos_dataset(tmp_path: Path, names: list[str]) -> Path:
    """A JSONL whose photos are NAME (relative to it), each its own colour with one box at its own place."""
    ds = tmp_path / "ds"
    records = []
    for i, name in enumerate(names):
        path = ds / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (120, 80), (40 * i, 200 - 40 * i, 90)).save(path, "PNG" if name.endswith(".png") else "JPEG")
        records.append(ImageRecord(images=[name], width=120, height=80,
                                   objects=[ObjectAnn(bbox_2d=[10 * i, 2, 10 * i + 30, 40], desc="bbu基带处理单元/华为")]))
    write_dataset(ds / "train.jsonl", records)
    return ds / "train.jsonl"


NFC, NFD = unicodedata.normalize("NFC", "é.jpg"), unicodedata.normalize("NFD", "é.jpg")


@pytest.mark.parametrize("names", [["images/A.jpg", "images/a.jpg"], [f"images/{NFC}", f"images/{NFD}"],
                                   ["a.jpg", "images/A.PNG"], ["images/./a.jpg", "a.jpg"]],
                         ids=["case", "nfc-nfd", "case-and-extension", "dot-path"])
def test_tiles_of_photos_whose_names_would_be_one_file_elsewhere_get_names_apart(tmp_path, names):
    dataset = photos_dataset(tmp_path, names)
    run("data", "tile", dataset, tmp_path / "tiled", "--grid", "1x1", "--teachers", "0")
    records = read_records(tmp_path / "tiled" / "train.jsonl")
    assert len({name_key(r.image) for r in records}) == 2, [r.image for r in records]
    for record in records:  # each tile holds its own photo's box
        source = names.index(record.source)
        assert record.objects[0].bbox_2d[0] == 10 * source
    assert photos_on_disk(tmp_path / "tiled") == listed_photos(tmp_path / "tiled")


def test_a_photo_named_like_a_hashed_tile_name_never_stops_the_run():
    book = NameBook()
    taken = book.name("train/b", "ds/b.jpg")
    crafted = book.name(f"{taken}.{'0' * 10}", "ds/crafted.jpg")  # any hash prefix a photo could be named after
    hashed = book.name("train/b", "ds/b.png")
    assert len({name_key(n) for n in (taken, crafted, hashed)}) == 3
    lookalike = NameBook()
    first = lookalike.name("train/b", "ds/b.png")
    assert lookalike.name(hashed, "ds/named-like-it.jpg") == hashed  # a photo literally named like b.png's hash
    assert lookalike.name("train/b", "ds/b.png") == first and lookalike.name("train/b", "ds/b.jpg") != hashed


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiling_again_with_another_grid_leaves_no_tile_of_the_first(tmp_path):
    ds = tmp_path / "ds"
    synthesize(ds, 3, 1, seed=0, size=(160, 120))
    out = tmp_path / "tiled"
    run("data", "tile", ds, out, "--grid", "2x2", "--teachers", "0")
    first = photos_on_disk(out)
    run("data", "tile", ds, out, "--grid", "3x1", "--zoom", "2", "--teachers", "0")
    second = photos_on_disk(out)
    assert second == listed_photos(out) and len(second) <= 4 * (1 + 3) and first - second  # whole + 3 tiles a photo
    assert json.loads((out / "summary.json").read_text())["tiles"]["grid"] == [3, 1]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".images.")) == []  # nothing set aside stays
    assert CliRunner().invoke(app, ["data", "check", str(out)]).exit_code == 0


def test_tiling_a_second_jsonl_into_the_folder_of_its_photos_is_refused_and_keeps_them(tmp_path):
    dataset = photos_dataset(tmp_path, ["images/a.jpg", "images/b.jpg"])
    other = dataset.with_name("other.jsonl")
    other.write_bytes(dataset.read_bytes())
    before = photos_on_disk(dataset.parent)
    r = CliRunner().invoke(app, ["data", "tile", str(other), str(dataset.parent), "--overwrite", "--teachers", "0"])
    # the photos lie in the images/ it would replace: refused by name, as files `data tile` did not write
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "images: holds a.jpg, b.jpg, which `bbuvl data tile` did not write" in said, r.output
    assert photos_on_disk(dataset.parent) == before and (dataset.parent / "train.jsonl").read_bytes() == other.read_bytes()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_converting_another_export_into_the_same_folder_keeps_none_of_the_first(tmp_path):
    synthesize(tmp_path / "v1", 3, 1, seed=1, size=(160, 120), fmt="vendor")
    synthesize(tmp_path / "v2", 2, 0, seed=2, size=(160, 120), fmt="vendor")
    out = tmp_path / "out"
    run("data", "convert", tmp_path / "v1", out, "--workers", "1", "--val-ratio", "0")
    run("data", "convert", tmp_path / "v2", out, "--workers", "1", "--val-ratio", "0")
    assert photos_on_disk(out) == listed_photos(out) == {"images/train_00000.jpg", "images/train_00001.jpg"}
    for record in read_records(out / "train.jsonl"):  # the pixels are the second export's
        assert (out / record.image).read_bytes() == (tmp_path / "v2" / "images" / Path(record.image).name).read_bytes()


def test_synthesizing_fewer_photos_into_the_same_folder_keeps_none_of_the_first(tmp_path):
    out = tmp_path / "synth"
    run("data", "synth", out, "--n-train", "4", "--n-val", "2", "--size", "160x120", "--teachers", "0")
    run("data", "synth", out, "--n-train", "2", "--n-val", "0", "--size", "160x120", "--teachers", "0", "--seed", "7")
    assert photos_on_disk(out) == listed_photos(out) == {"images/train_00000.jpg", "images/train_00001.jpg"}


def test_importing_another_coco_file_into_the_same_folder_keeps_none_of_the_first_photos(tmp_path):
    ds = tmp_path / "ds"
    synthesize(ds, 4, 0, seed=0, size=(160, 120))
    run("data", "export-coco", ds / "train.jsonl", ds / "all.json")  # file_name relative to ds
    coco = json.loads((ds / "all.json").read_text(encoding="utf-8"))
    coco["images"] = coco["images"][:2]
    (ds / "two.json").write_text(json.dumps(coco), encoding="utf-8")
    out = tmp_path / "imported"
    run("data", "import-coco", ds / "all.json", ds, out, "--teachers", "0", "--val-ratio", "0")
    assert len(photos_on_disk(out)) == 4
    run("data", "import-coco", ds / "two.json", ds, out, "--teachers", "0", "--val-ratio", "0")
    assert photos_on_disk(out) == listed_photos(out) and len(listed_photos(out)) == 2


def test_a_failed_rewrite_puts_the_earlier_output_back_whole(tmp_path):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.jpg").write_bytes(b"old photo")
    (out / "train.jsonl").write_text("old records\n", encoding="utf-8")
    with pytest.raises(RuntimeError), replacing([out / "train.jsonl", out / "images"]):
        assert not (out / "images").exists() and not (out / "train.jsonl").exists()
        (out / "images").mkdir()
        (out / "images" / "b.jpg").write_bytes(b"half of a new run")
        raise RuntimeError("the disk filled up")
    assert photos_on_disk(out) == {"images/a.jpg"} and (out / "images" / "a.jpg").read_bytes() == b"old photo"
    assert (out / "train.jsonl").read_text(encoding="utf-8") == "old records\n"
    assert sorted(p.name for p in out.iterdir()) == ["images", "train.jsonl"]


def test_a_killed_rewrite_leaves_no_mixture_and_the_next_one_clears_what_it_set_aside(tmp_path):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.jpg").write_bytes(b"old photo")
    (out / "train.jsonl").write_text("old records\n", encoding="utf-8")
    script = (f"import os, signal, pathlib; from bbuvl.outputs import replacing\n"
              f"out = pathlib.Path({str(out)!r})\n"
              f"with replacing([out / 'train.jsonl', out / 'images']):\n"
              f"    (out / 'images').mkdir(); (out / 'images' / 'new.jpg').write_bytes(b'new')\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert photos_on_disk(out) == {"images/new.jpg"} and not (out / "train.jsonl").exists()  # no old records on new photos
    with replacing([out / "train.jsonl", out / "images"]):
        (out / "images").mkdir()
    assert sorted(os.listdir(out)) == ["images"]  # the killed run's set-aside copy is gone too
