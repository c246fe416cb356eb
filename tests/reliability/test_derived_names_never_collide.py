"""Class: derived names never collide, and outputs never land inside inputs.

A name made from another (a tile's from its photo's, a crop's from its record's) keeps one source per name
(bbuvl/data/names.py); an output inside an input folder, or two outputs of one command on one path, are refused
(bbuvl/outputs.py); a LoRA checkpoint's base model is an input of whatever merges it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.names import NameBook
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_records, write_dataset
from bbuvl.fewshot.crops import write_crops
from bbuvl.outputs import OutputConflict, claim_outputs
from bbuvl.synthetic.dataset import synthesize


def two_photos_one_stem(tmp_path: Path) -> Path:
    """A dataset whose two photos are `images/a.jpg` (red, a box on the left) and `images/a.jpeg` (blue, on the right)."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    records = []
    for suffix, colour, box in ((".jpg", (200, 0, 0), [2, 2, 40, 40]), (".jpeg", (0, 0, 200), [60, 20, 110, 70])):
        Image.new("RGB", (120, 80), colour).save(ds / "images" / f"a{suffix}", "JPEG")
        records.append(ImageRecord(images=[f"images/a{suffix}"], width=120, height=80,
                                   objects=[ObjectAnn(bbox_2d=box, desc="bbu基带处理单元/华为")]))
    write_dataset(ds / "train.jsonl", records)
    return ds


def mean_colour(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:
        return image.convert("RGB").resize((1, 1)).getpixel((0, 0))


def test_tiles_of_a_jpg_and_a_jpeg_of_one_stem_are_distinct_and_carry_their_own_boxes(tmp_path):
    ds = two_photos_one_stem(tmp_path)
    r = CliRunner().invoke(app, ["data", "tile", str(ds / "train.jsonl"), str(tmp_path / "tiled"), "--grid", "1x1",
                                 "--teachers", "0"])
    assert r.exit_code == 0, r.output
    records = read_records(tmp_path / "tiled" / "train.jsonl")
    assert len(records) == 2 and len({r.image for r in records}) == 2
    for record in records:  # each name's pixels are its own photo's, with its own box
        red = mean_colour(tmp_path / "tiled" / record.image)[0] > 100
        assert record.objects[0].bbox_2d[0] == (2 if red else 60), (record.image, record.objects)
    assert CliRunner().invoke(app, ["data", "check", str(tmp_path / "tiled" / "train.jsonl")]).exit_code == 0


def test_tiles_of_photos_windows_holds_as_one_name_get_two_names_there(tmp_path):
    # `ı.jpg` (a dotless i) and `I.jpg`: Windows upper-cases names to compare them, so the two are one file there, where
    # case folding keeps `ı` apart from `i`; their tiles took `train/ı__...` and `train/I__...`, one file once copied.
    ds = two_photos_one_stem(tmp_path)
    for old, new in (("a.jpg", "\u0131.jpg"), ("a.jpeg", "I.jpg")):
        (ds / "images" / old).rename(ds / "images" / new)
    records = read_records(ds / "train.jsonl")
    write_dataset(ds / "train.jsonl", [records[0].model_copy(update={"images": ["images/\u0131.jpg"]}),
                                       records[1].model_copy(update={"images": ["images/I.jpg"]})])
    r = CliRunner().invoke(app, ["data", "tile", str(ds / "train.jsonl"), str(tmp_path / "tiled"), "--grid", "1x1",
                                 "--teachers", "0"])
    assert r.exit_code == 0, r.output
    names = [r.image for r in read_records(tmp_path / "tiled" / "train.jsonl")]
    assert len({name.upper() for name in names}) == 2, names  # as Windows compares them
    r = CliRunner().invoke(app, ["data", "check", str(ds / "train.jsonl")], env={"COLUMNS": "400"})
    assert "only in letter case, as Windows compares it" in " ".join(r.output.split()), r.output


def test_crops_of_two_photos_of_one_stem_are_two_files(tmp_path):
    ds = two_photos_one_stem(tmp_path)
    counts = write_crops(ds / "train.jsonl", tmp_path / "crops")
    crops = sorted(p for p in (tmp_path / "crops").rglob("*.png"))
    assert counts == {"bbu基带处理单元/华为": 2} and len(crops) == 2
    assert sorted(mean_colour(p)[0] > 100 for p in crops) == [False, True]


def test_a_crop_of_a_photo_whose_name_windows_refuses_is_named_so_it_can_hold_it(tmp_path):
    ds = two_photos_one_stem(tmp_path)
    (ds / "images" / "a.jpg").rename(ds / "images" / "a:b?.jpg")
    records = read_records(ds / "train.jsonl")
    write_dataset(ds / "train.jsonl", [records[0].model_copy(update={"images": ["images/a:b?.jpg"]}), records[1]])
    assert write_crops(ds / "train.jsonl", tmp_path / "crops") == {"bbu基带处理单元/华为": 2}
    names = sorted(p.name for p in (tmp_path / "crops").rglob("*.png"))
    assert names == ["a_00.png", "a_b__00.png"], names


def test_a_name_book_gives_each_source_its_own_name_and_one_source_always_the_same():
    book = NameBook()
    assert book.name("train/a", "x/a.jpg") == "train/a"
    other = book.name("train/a", "x/a.jpeg")
    assert other != "train/a" and other.startswith("train/a.")
    assert book.name("train/a", "x/a.jpeg") == other and book.name("train/a", "x/a.jpg") == "train/a"
    assert book.name("tile.png", "p") == "tile.png" and book.name("tile.png", "q").endswith(".png")


@pytest.mark.parametrize("given", ["folder", "jsonl"])
def test_tiling_a_tiled_folder_onto_itself_is_refused_and_keeps_it(tmp_path, given):
    ds = tmp_path / "ds"
    synthesize(ds, 2, 1, seed=0, size=(160, 120))
    tiled = tmp_path / "tiled"
    assert CliRunner().invoke(app, ["data", "tile", str(ds), str(tiled), "--teachers", "0"]).exit_code == 0
    before = {p: p.read_bytes() for p in tiled.rglob("*") if p.is_file()}
    source = tiled if given == "folder" else tiled / "train.jsonl"
    r = CliRunner().invoke(app, ["data", "tile", str(source), str(tiled), "--teachers", "0", "--overwrite"])
    assert r.exit_code == 2 and "input" in r.output and "Traceback" not in r.output, r.output
    assert {p: p.read_bytes() for p in tiled.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("inside", ["report.json", "sub/report.json"])
def test_an_output_inside_an_input_folder_is_refused_even_where_nothing_lies(tmp_path, inside):
    ds = tmp_path / "ds"
    synthesize(ds, 2, 1, seed=0, size=(160, 120))
    r = CliRunner().invoke(app, ["data", "stats", str(ds), "--json", str(ds / inside)])
    assert r.exit_code == 2 and "inside the input PATH" in " ".join(r.output.split()), r.output
    assert not (ds / inside).exists() and not (ds / "sub").exists()


def test_two_outputs_of_one_command_on_one_path_are_refused(tmp_path):
    with pytest.raises(OutputConflict, match="one command would write both"):
        claim_outputs("eval", {}, [tmp_path / "r" / "index.html"], [tmp_path / "r"])
    with pytest.raises(OutputConflict, match="one command would write both"):
        claim_outputs("eval", {}, [tmp_path / "m.json", tmp_path / "." / "m.json"])
    pred = tmp_path / "pred.jsonl"
    pred.write_text("", encoding="utf-8")
    for out in (tmp_path / "rep" / "index.html", tmp_path / "rep" / "worst" / "m.json"):
        r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(pred), "--out", str(out),
                                     "--report", str(tmp_path / "rep")])
        # Before: "rep/index.html and rep/index.html: one command would write both", one path named twice
        assert r.exit_code == 2 and (f"{out}: one of the report's own files, or inside a folder the report replaces "
                                     f"(--report {tmp_path / 'rep'})") in " ".join(r.output.split()), r.output


@pytest.mark.slow  # a LoRA run of one step (~25 s)
def test_merge_lora_onto_its_own_base_is_refused_with_overwrite_and_the_base_kept(run_config, tmp_path):
    from bbuvl.train.trainer import train

    base = Path(run_config().model.path)
    cfg = run_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "training.max_steps=1",
                     "data.val=null")
    own_base = tmp_path / "base"
    shutil.copytree(base, own_base)  # the session's tiny model is shared: merge onto a copy of it
    cfg.model.path = str(own_base)
    final = train(cfg, progress=False)["final"]
    before = {p.name: p.read_bytes() for p in own_base.iterdir()}
    for out in (own_base, own_base / "merged"):
        r = CliRunner().invoke(app, ["model", "merge-lora", final, str(out), "--overwrite"])
        assert r.exit_code == 2 and "its base model" in r.output and "Traceback" not in r.output, r.output
    assert {p.name: p.read_bytes() for p in own_base.iterdir()} == before
