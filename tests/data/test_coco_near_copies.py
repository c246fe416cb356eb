"""`data import-coco` and `data split` on a photo a tool saved again (data/near_copies.py): both copies kept and named,
on one side of the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.coco import records_to_coco
from bbuvl.data.layout import ERRORS, TRAIN, VAL
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.synthetic.dataset import synthesize


def photos_with_a_png_copy(root: Path) -> tuple[Path, list]:
    """8 synthetic photos in `root`/images, a PNG copy of the first beside them, and their records (the copy last)."""
    synthesize(root / "synth", 8, 0, seed=7, size=(320, 240), num_teachers=0)
    records = read_records(root / "synth" / TRAIN)
    (root / "images").mkdir()
    for r in records:
        shutil.copy(resolve_image(root / "synth" / TRAIN, r.image), root / "images" / Path(r.image).name)
    Image.open(root / "images" / Path(records[0].image).name).save(root / "images" / "sent.png")
    records = [r.model_copy(update={"images": [Path(r.image).name], "id": None}) for r in records]
    return root / "images", records + [records[0].model_copy(update={"images": ["sent.png"]})]


def test_import_coco_keeps_a_reencoded_copy_names_it_and_splits_both_to_one_side(tmp_path):
    images, records = photos_with_a_png_copy(tmp_path)
    (tmp_path / "coco.json").write_text(json.dumps(records_to_coco(records)), encoding="utf-8")
    for seed in (0, 1):
        out = tmp_path / f"out{seed}"
        r = CliRunner().invoke(app, ["data", "import-coco", str(tmp_path / "coco.json"), str(images), str(out),
                                     "--val-ratio", "0.3", "--seed", str(seed)])
        assert r.exit_code == 0, r.output
        assert "1 photo(s) have the pixels of another photo imported" in r.output
        # imported, so not skipped: "1 entries skipped" and "skipped": 1 before
        assert "skipped" not in r.output and json.loads((out / "summary.json").read_text())["skipped"] == 0
        near = [e for e in map(json.loads, (out / ERRORS).read_text().splitlines()) if "near_copy_of" in e]
        assert [(Path(e["file"]).name, Path(e["near_copy_of"]).name) for e in near] == [("sent.png", records[0].image)]
        sides = [{Path(r.image).stem for r in read_records(out / name)} for name in (TRAIN, VAL)]
        assert sum(map(len, sides)) == 9 and any({"sent", Path(records[0].image).stem} <= s for s in sides), sides


def test_split_says_how_many_groups_of_near_copies_it_kept_on_one_side(tmp_path):
    images, records = photos_with_a_png_copy(tmp_path)
    write_dataset(images.parent / "all.jsonl", [r.model_copy(update={"images": [f"images/{r.image}"]}) for r in records])
    r = CliRunner().invoke(app, ["data", "split", str(images.parent / "all.jsonl"), str(tmp_path / "split")])
    assert r.exit_code == 0, r.output
    assert f"1 group of near-copies" in r.output and f"images/{records[0].image}, images/sent.png" in r.output


def test_split_names_three_photos_of_a_group_of_near_copies_and_counts_the_rest(tmp_path):
    # Each member was named: 1,600 copies of 8 photos made a warning of 19,270 characters
    images, records = photos_with_a_png_copy(tmp_path)
    first = Image.open(images / "sent.png").convert("RGB")
    for quality in (60, 70, 80, 90):
        first.save(images / f"q{quality}.jpg", quality=quality)
        records.append(records[0].model_copy(update={"images": [f"q{quality}.jpg"]}))
    write_dataset(images.parent / "all.jsonl", [r.model_copy(update={"images": [f"images/{r.image}"]}) for r in records])
    r = CliRunner().invoke(app, ["data", "split", str(images.parent / "all.jsonl"), str(tmp_path / "split")])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "1 group of near-copies" in said and ", 6 photos, each kept on one side" in said, said
    assert said.count("images/") == 3 and " and 3 more. `bbuvl data check` names each" in said, said
