"""`bbuvl data tile`: tiles as photos, boxes moved by the tile's offset and kept by the one visibility rule."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.data.regions import KEEP_VISIBLE, grid_regions, window_objects
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_records, resolve_image, tile_origin, write_dataset
from bbuvl.data.tiling import TileSpec, tile_dataset

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"


def test_a_box_inside_a_tile_moves_by_its_offset_and_one_mostly_cut_off_is_dropped():
    objects = [([110.0, 20.0, 130.0, 40.0], SCREW), ([95.0, 60.0, 125.0, 80.0], SCREW), ([80.0, 90.0, 104.0, 110.0], SCREW)]
    kept = window_objects(objects, (100, 0), (100, 100))
    # inside: moved; 25/30 showing: clipped and kept; 4/24 showing (below KEEP_VISIBLE): dropped
    assert [o.bbox_2d for o in kept] == [[10.0, 20.0, 30.0, 40.0], [0.0, 60.0, 25.0, 80.0]]
    assert 4 / 24 < KEEP_VISIBLE <= 25 / 30


@pytest.fixture()
def photos(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    records = []
    for i in range(3):
        img = Image.new("RGB", (400, 300), (90 + 20 * i, 100, 110))
        for x in range(0, 400, 50):  # texture, so no two tiles are the same photo
            img.paste((200, 60 + 30 * i, x % 255), (x, (x * 7) % 280, x + 5, (x * 7) % 280 + 5))
        img.save(src / "images" / f"p{i}.png")
        records.append(ImageRecord(images=[f"images/p{i}.png"], width=400, height=300,
                                   objects=[ObjectAnn(bbox_2d=[30.0, 40.0, 60.0, 70.0], desc=SCREW),
                                            ObjectAnn(bbox_2d=[190.0, 140.0, 215.0, 160.0], desc=SCREW)]))
    write_dataset(src / "train.jsonl", records[:2])
    write_dataset(src / "val.jsonl", records[2:])
    return src


def test_every_tile_holds_the_pixels_and_boxes_of_its_region(photos, tmp_path):
    out = tmp_path / "tiles"
    summary = tile_dataset(photos, out, TileSpec((2, 2), overlap=0.2, whole=True))
    assert summary["images"] == {"train": 10, "val": 5, "teachers": min(10, 10)}
    assert summary["tiles"]["grid"] == [2, 2]
    assert not [i for i in check_dataset(out) if i.severity == "error"]
    regions = grid_regions((400, 300), 2, 2, overlap=round(0.2 * 150))
    originals = {r.image: r for r in read_records(photos / "train.jsonl")}
    for rec in read_records(out / "train.jsonl"):
        source = originals[rec.source]
        x, y = (int(v) for v in rec.id.split("@")[1].split(",")[:2])
        assert (x, y, x + rec.width, y + rec.height) in [*regions, (0, 0, 400, 300)]
        tile = Image.open(resolve_image(out / "train.jsonl", rec.image)).convert("RGB")
        whole = Image.open(resolve_image(photos / "train.jsonl", source.image)).convert("RGB")
        assert tile.tobytes() == whole.crop((x, y, x + rec.width, y + rec.height)).tobytes()
        expected = window_objects([(o.bbox_2d, o.desc) for o in source.objects], (x, y), (rec.width, rec.height))
        assert rec.objects == expected


def test_data_tile_refuses_a_photo_whose_size_disagrees_with_its_record(photos, tmp_path):
    Image.new("RGB", (300, 400)).save(photos / "images" / "p0.png")
    r = CliRunner().invoke(app, ["data", "tile", str(photos), str(tmp_path / "t")])
    assert r.exit_code == 2 and "p0.png" in r.output and "300x400" in r.output and "Traceback" not in r.output


def test_data_tile_command_writes_a_checked_dataset(photos, tmp_path):
    r = CliRunner().invoke(app, ["data", "tile", str(photos / "train.jsonl"), str(tmp_path / "t"), "--grid", "3x1",
                                 "--tiles-only"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "t" / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"]["train"] == 6 and summary["tiles"]["whole"] is False
    bad = CliRunner().invoke(app, ["data", "tile", str(photos), str(tmp_path / "u"), "--grid", "2by2"])
    assert bad.exit_code == 2 and "COLSxROWS" in bad.output


def test_zoomed_tiles_are_magnified_with_their_boxes_and_empty_ones_thinned(photos, tmp_path):
    out = tmp_path / "zoomed"
    tile_dataset(photos / "train.jsonl", out, TileSpec((4, 4), overlap=0.0, zoom=2.0, whole=False, empty=0.0))
    records = read_records(out / "train.jsonl")
    assert records and all(r.objects for r in records)  # empty tiles: none kept at share 0
    for rec in records:
        x, y = (int(v) for v in rec.id.split("@")[1].split(",")[:2])
        w, h = (int(v) for v in rec.id.split(",")[-1].split("x"))
        assert (rec.width, rec.height) == (2 * w, 2 * h)
        assert rec.magnified == 2.0  # what the run's training scale counts (data/scale.py)
        tile = Image.open(resolve_image(out / "train.jsonl", rec.image))
        assert tile.size == (rec.width, rec.height)
        expected = window_objects([([30.0, 40.0, 60.0, 70.0], SCREW), ([190.0, 140.0, 215.0, 160.0], SCREW)], (x, y), (w, h))
        assert [o.bbox_2d for o in rec.objects] == [[2 * v for v in o.bbox_2d] for o in expected]
    assert not [i for i in check_dataset(out) if i.severity == "error"]


def test_a_dataset_folder_whose_val_file_is_empty_tiles_into_an_empty_val(tmp_path: Path):
    # `data convert|split|import-coco --val-ratio 0` write an empty val.jsonl; tiling that folder was refused
    # ("val.jsonl: no photos"), where data check only warns of it.
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 48), (10, 90, 200)).save(src / "a.jpg")
    line = {"images": ["a.jpg"], "width": 64, "height": 48, "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}
    (src / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (src / "val.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "tile", str(src), str(tmp_path / "t"), "--grid", "2x1"])
    assert result.exit_code == 0, result.output
    assert "0 val tiles" in result.output
    assert (tmp_path / "t" / "train.jsonl").read_text(encoding="utf-8").strip()
    assert (tmp_path / "t" / "val.jsonl").read_text(encoding="utf-8") == ""
    (src / "train.jsonl").write_text("", encoding="utf-8")  # no training photo is still refused
    result = CliRunner().invoke(app, ["data", "tile", str(src), str(tmp_path / "t2")])
    assert result.exit_code == 2 and "train.jsonl: no photos" in result.output, result.output


def test_photos_that_share_an_id_keep_their_tiles_apart(tmp_path: Path):
    # Two sites' IMG_0001 merged into one dataset, one in train and one in val: their tiles took one origin from the
    # shared id, so data check called every val tile a leak of the train photo, and split kept them together.
    src = tmp_path / "src"
    src.mkdir()
    lines = {}
    for name, colour, split, id_ in (("a", (10, 90, 200), "train", "IMG_0001"), ("b", (200, 90, 10), "val", "IMG_0001"),
                                     ("c", (90, 200, 10), "train", "site2/7")):
        Image.new("RGB", (64, 48), colour).save(src / f"{name}.jpg")
        line = {"images": [f"{name}.jpg"], "width": 64, "height": 48, "id": id_,
                "objects": [{"bbox_2d": [4, 5, 60, 40], "desc": "线缆"}]}
        lines[split] = lines.get(split, "") + json.dumps(line, ensure_ascii=False) + "\n"
    for split, text in lines.items():
        (src / f"{split}.jsonl").write_text(text, encoding="utf-8")
    out = tmp_path / "t"
    tile_dataset(src, out, TileSpec((2, 1)), num_teachers=0)
    origins = {split: {tile_origin(r) for r in read_records(out / f"{split}.jsonl")} for split in ("train", "val")}
    assert not origins["train"] & origins["val"], origins
    assert "site2/7" in origins["train"]  # an id no other photo has is kept, to trace a tile back
    assert not [p for p in check_dataset(out) if "a tile of photo" in p.message], check_dataset(out)


def test_a_photo_too_thin_for_a_frame_whose_tiles_fit_is_pointed_to_tiles_only(tmp_path: Path):
    # Its 4x1 tiles fit a frame, the whole photo kept beside them does not: the advice was to cut along the long
    # side, which this grid does, and the same error came back.
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (5000, 20), (10, 90, 200)).save(src / "a.png")
    line = {"images": ["a.png"], "width": 5000, "height": 20, "objects": [{"bbox_2d": [4, 2, 300, 18], "desc": "线缆"}]}
    (src / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "tile", str(src / "train.jsonl"), str(tmp_path / "t"), "--grid", "4x1"])
    assert result.exit_code == 2 and "pass --tiles-only" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["data", "tile", str(src / "train.jsonl"), str(tmp_path / "t"), "--grid", "4x1",
                                      "--tiles-only"])
    assert result.exit_code == 0, result.output


def test_tiles_shrunk_by_zoom_keep_no_box_under_a_pixel(tmp_path: Path):
    # At --zoom 0.25 a 2.5-px part became a 0.6-px box, which data check refuses: the dataset tile wrote failed check.
    src = tmp_path / "src"
    src.mkdir()
    Image.effect_noise((400, 300), 60).convert("RGB").save(src / "a.png")
    objects = [{"bbox_2d": [10, 10, 12.5, 40], "desc": "线缆"}, {"bbox_2d": [100, 100, 300, 200], "desc": "机柜空间/非满载"}]
    line = {"images": ["a.png"], "width": 400, "height": 300, "objects": objects}
    (src / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "t"
    tile_dataset(src / "train.jsonl", out, TileSpec((2, 2), zoom=0.25), num_teachers=0)
    tiles = read_records(out / "train.jsonl")
    assert len(tiles) == 5 and sum(len(t.objects) for t in tiles) >= 4  # the part stays in the whole photo
    assert not [p for p in check_dataset(out) if p.severity == "error"], check_dataset(out)


def test_zoom_on_a_one_tile_grid_is_refused_before_anything_is_written(photos, tmp_path):
    # A 1x1 grid's one region is the whole photo, kept as taken: --zoom 2 wrote every photo unmagnified, without a word.
    result = CliRunner().invoke(app, ["data", "tile", str(photos), str(tmp_path / "t"), "--grid", "1x1", "--zoom", "2"])
    assert result.exit_code == 2 and "a 1x1 grid has none" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "t").exists()
    result = CliRunner().invoke(app, ["data", "tile", str(photos), str(tmp_path / "t"), "--grid", "2x1", "--zoom", "2"])
    assert result.exit_code == 0, result.output
    tiles = [r for r in read_records(tmp_path / "t" / "train.jsonl") if r.size != (400, 300)]  # not the whole photos
    assert tiles and all(r.magnified == 2.0 for r in tiles)


def test_a_part_under_two_pixels_wholly_inside_a_tile_is_in_that_tile_as_in_the_whole_photo(tmp_path: Path):
    # The visibility rule dropped any box under 2 px a side, so the tile holding this 1.5-px part taught "nothing here".
    src = tmp_path / "src"
    src.mkdir()
    Image.effect_noise((400, 300), 60).convert("RGB").save(src / "a.png")
    line = {"images": ["a.png"], "width": 400, "height": 300, "objects": [{"bbox_2d": [50, 50, 51.5, 51.5], "desc": "线缆"}]}
    (src / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "t"
    tile_dataset(src / "train.jsonl", out, TileSpec((2, 2), overlap=0.0), num_teachers=0)
    held = {t.id.split("@")[1]: [o.bbox_2d for o in t.objects] for t in read_records(out / "train.jsonl")}
    assert held["0,0,200x150"] == [[50.0, 50.0, 51.5, 51.5]] and held["0,0,400x300"] == [[50.0, 50.0, 51.5, 51.5]]
    assert not [p for p in check_dataset(out) if p.severity == "error"], check_dataset(out)


def test_a_tile_with_boxes_left_out_as_a_copy_of_another_is_said_and_listed(tmp_path: Path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (800, 400), (255, 255, 255)).save(tmp_path / "images" / "w.png")  # a blank wall, cut in two alike
    write_dataset(tmp_path / "d.jsonl", [ImageRecord(images=["images/w.png"], width=800, height=400, id="w", objects=[
        ObjectAnn(bbox_2d=[500, 100, 600, 200], desc="标签贴纸")])])
    r = CliRunner().invoke(app, ["data", "tile", str(tmp_path / "d.jsonl"), str(tmp_path / "out"), "--grid", "2x1",
                                 "--overlap", "0", "--teachers", "0"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    # Before: the right tile, the one holding the label, was skipped without a word, its bytes the blank left tile's.
    assert "1 tile(s) holding 1 box(es) left out" in said and "w__400_0_400x400.png (as images/train/w__0_0_400x400.png)" in said
    copies = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["tiles"]["copies_with_boxes_left_out"]
    assert copies == [{"tile": "images/train/w__400_0_400x400.png", "same_as": "images/train/w__0_0_400x400.png", "boxes": 1}]


def test_teacher_lists_a_tiling_leaves_out_are_said(tmp_path: Path):
    (tmp_path / "images").mkdir()
    for name in ("s.png", "t.png"):
        Image.new("RGB", (200, 100), (40, 90, 160) if name == "s.png" else (160, 90, 40)).save(tmp_path / "images" / name)
    student = ImageRecord(images=["images/s.png"], width=200, height=100, objects=[ObjectAnn(bbox_2d=[10, 10, 60, 60],
                                                                                             desc="标签贴纸")])
    teacher = ImageRecord(images=["images/t.png"], width=200, height=100, objects=[ObjectAnn(bbox_2d=[20, 20, 70, 70],
                                                                                             desc="标签贴纸")])
    line = {"student": student.model_dump(exclude_none=True), "teachers": [teacher.model_dump(exclude_none=True)]}
    (tmp_path / "d.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["data", "tile", str(tmp_path / "d.jsonl"), str(tmp_path / "out"), "--grid", "2x1",
                                 "--teachers", "0"])
    said = " ".join(r.output.split())
    # Before: the teacher list was dropped without a word.
    assert r.exit_code == 0 and "1 line(s) give teacher photos of their own (the first, line 1)" in said, r.output
