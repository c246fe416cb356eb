"""`bbuvl data convert|import-coco|tile OUT --overwrite` set aside OUT/images/ whole: only while it holds their own photos
(docs/outputs.md, "A re-run replaces, never adds to")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.test_hostile_inputs import run

SMALL = ("--n-train", "2", "--n-val", "1", "--size", "160x120")


def _written(tmp_path: Path, command: str) -> tuple[list[str | Path], Path]:
    """`command`'s arguments but OUT (read from a synthetic dataset and vendor export written here), and OUT, which a
    first run of it has written."""
    ds, vendor = tmp_path / "ds", tmp_path / "vendor"
    assert run("synth", ds, *SMALL, "--teachers", "1")[0] == 0
    assert run("synth", vendor, *SMALL, "--format", "vendor")[0] == 0
    assert run("export-coco", ds / "train.jsonl", ds / "coco.json")[0] == 0
    args = {"convert": ["convert", vendor], "import-coco": ["import-coco", ds / "coco.json", ds], "tile": ["tile", ds]}
    out = tmp_path / "out"
    assert run(*args[command], out, "--teachers", "1")[0] == 0
    return args[command], out


def _first_photo(out: Path) -> Path:
    line = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    return out / line["images"][0]


@pytest.mark.parametrize("command", ["convert", "import-coco", "tile"])
def test_overwrite_refuses_a_dataset_and_a_file_written_inside_images_naming_them_and_deletes_nothing(
        tmp_path: Path, command: str):
    args, out = _written(tmp_path, command)
    assert run("synth", out / "images" / "inner", *SMALL, "--teachers", "0", "--seed", "1")[0] == 0
    notes = _first_photo(out).with_name("notes.txt")  # beside its own photos: tile's are in images/train/
    notes.write_text("field notes", encoding="utf-8")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    code, said = run(*args, out, "--teachers", "1", "--overwrite")

    # Before: exit 0, inner/ and notes.txt deleted with the folder.
    assert code == 2, said
    said = " ".join(said.split())
    stranger = notes.relative_to(out / "images").as_posix()
    assert f"{out / 'images'}: holds inner/, {stranger}, which `bbuvl data {command}` did not write" in said
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command", ["convert", "import-coco", "tile"])
def test_overwrite_still_replaces_its_own_photos_edited_and_leaves_a_file_beside_the_dataset(
        tmp_path: Path, command: str):
    args, out = _written(tmp_path, command)
    photo = _first_photo(out)
    written = photo.read_bytes()
    photo.write_bytes(b"retouched")  # its own name: --overwrite gives it up, as before
    (out / "pred.jsonl").write_text('{"image": "x.jpg", "objects": []}\n', encoding="utf-8")  # beside, on purpose

    code, said = run(*args, out, "--teachers", "1", "--overwrite")

    assert code == 0, said
    assert photo.read_bytes() == written
    assert (out / "pred.jsonl").read_text(encoding="utf-8").startswith('{"image"')
