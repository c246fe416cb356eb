"""A JPEG past Pillow's decompression-bomb limit (a phone's 200 MP mode) is read at a reduced scale by every command,
and everything they write is still in the stored photo's pixels: predictions (one pass and tiles), the server's
answers, `data convert`'s records, `data tile`'s tiles, training's model input and few-shot crops each give what the
same photo gives decoded in full. Pillow's own constant is lowered so that a 2000x1500 photo counts as one past the
limit (twice 1,000,000 pixels); each command refused it before (docs/serving.md, "Photos past Pillow's pixel limit")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app as data_app
from bbuvl.data.schema import read_records, resolve_image
from tests.serve.conftest import engine, keys, serve  # noqa: F401 - the serving tests' fixtures

BIG = (2000, 1500)
LOWERED = 1_000_000  # Pillow refuses past twice this: the 3.0 M pixel photo is past it, its half (0.75 M) not


@pytest.fixture(scope="module")
def big(small_dataset, tmp_path_factory) -> tuple[Path, list]:
    """A small-dataset photo enlarged to 2000x1500 with a grain, as a quality-90 JPEG, and its record's objects in
    its pixels."""
    record = read_records(small_dataset / "val.jsonl")[0]
    small = Image.open(resolve_image(small_dataset / "val.jsonl", record.image)).convert("RGB")
    grain = np.random.default_rng(0).integers(-12, 12, (BIG[1], BIG[0], 3))
    pixels = np.clip(np.asarray(small.resize(BIG, Image.BICUBIC), dtype=int) + grain, 0, 255).astype("uint8")
    path = tmp_path_factory.mktemp("big") / "phone.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    sx, sy = BIG[0] / small.width, BIG[1] / small.height
    objects = [o.model_copy(update={"bbox_2d": [round(o.bbox_2d[0] * sx, 1), round(o.bbox_2d[1] * sy, 1),
                                                round(o.bbox_2d[2] * sx, 1), round(o.bbox_2d[3] * sy, 1)]})
               for o in record.objects]
    return path, objects


def boxes(objects) -> list[list[float]]:  # noqa: ANN001
    """The box of each detection (a result's or an answer's): the 2-step tiny model's labels are near ties, which a
    pixel's difference may swap, its boxes not."""
    return [d.bbox_2d if hasattr(d, "bbox_2d") else d["bbox_2d"] for d in objects]


def assert_same_boxes(a: list, b: list, tolerance: float = 2.0) -> None:
    """As many boxes, each within `tolerance` stored pixels of one of the others, both ways."""
    assert a and len(a) == len(b), (a, b)
    far = np.abs(np.array(a)[:, None, :] - np.array(b)[None, :, :]).max(axis=2)  # [len(a), len(b)]
    assert far.min(axis=1).max() <= tolerance and far.min(axis=0).max() <= tolerance, (a, b)


@pytest.mark.parametrize("tiles", [None, "2x2"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_gives_the_boxes_and_regions_of_the_photo_decoded_in_full(engine, big, monkeypatch, tiles):  # noqa: F811
    path, _ = big
    options = {"tiles": tiles} if tiles else {}
    [full] = engine.predictor.predict([path], "head", **options)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    [read] = engine.predictor.predict([path], "head", **options)
    assert (read.width, read.height, read.error) == (*BIG, None) == (full.width, full.height, full.error)
    assert (read.tiled, read.vision_tokens) == (full.tiled, full.vision_tokens)  # the same regions, at the same frames
    if tiles is None:
        assert_same_boxes(boxes(read.objects), boxes(full.objects))
    # tiled, the 2-step model's near-tie labels merge its boxes one way or the other: the next test's detector is sure


def red_blocks(crops: list[Image.Image], tiles: bool) -> list[tuple[list[tuple[list[float], str, float]], None]]:
    """A detector that is sure: the box around each crop's red pixels, in the crop's pixels."""
    found = []
    for crop in crops:
        a = np.asarray(crop, dtype=int)
        ys, xs = np.nonzero((a[..., 0] > 170) & (a[..., 1] < 90) & (a[..., 2] < 90))
        found.append(([([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)], "red", 1.0)]
                       if len(xs) else [], None))
    return found


def test_tiles_and_their_boxes_are_the_photo_decoded_in_fulls(tmp_path, monkeypatch):
    from bbuvl.data.coords import CoordinateContract
    from bbuvl.data.images import load_image
    from bbuvl.infer.tiles import TilePlan, predict_tiled

    grain = np.random.default_rng(1).integers(90, 140, (BIG[1], BIG[0], 3))
    grain[310:620, 1210:1590] = (220, 30, 30)  # a red block across the middle of the 2x2 grid's right tiles
    path = tmp_path / "phone.jpg"
    Image.fromarray(grain.astype("uint8")).save(path, quality=90)
    contract, plan = CoordinateContract(min_pixels=12544, max_pixels=50176), TilePlan(grid=(2, 2))
    full = predict_tiled(red_blocks, load_image(path).image, plan, contract)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    loaded = load_image(path)
    assert loaded.image.size == (1000, 750)
    read = predict_tiled(red_blocks, loaded.image, plan, contract, loaded.size)
    assert read.regions == full.regions and read.vision_tokens == full.vision_tokens and len(read.regions) == 5
    assert len(read.objects) == len(full.objects) >= 1
    for a, b in zip(read.objects, full.objects):
        # a crop's pixel is at most 7.8 stored pixels (the whole photo at its frame): within one of them
        assert np.abs(np.array(a.bbox_2d) - np.array(b.bbox_2d)).max() <= 8, (a, b)
        assert np.abs(np.array(b.bbox_2d) - [1210, 310, 1590, 620]).max() <= 8, b  # where the block lies


def test_the_server_answers_it_in_the_stored_photos_pixels(serve, engine, big, monkeypatch):  # noqa: F811
    path, _ = big
    [full] = engine.predictor.predict([path], "head")
    client = serve()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    r = client.detect_file(path)
    assert r.status == 200, r.body  # 413 before: Pillow's check fired inside Image.open
    answer = r.json()
    assert (answer["width"], answer["height"]) == BIG
    assert_same_boxes(boxes(answer["objects"]), boxes(full.objects))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 250x188 at 1/8 is past 40,000 pixels
    r = client.detect_file(path)
    assert r.status == 413 and r.json()["error"]["kind"] == "image_too_large", r.body
    assert "1/8" in r.json()["error"]["message"]


def vendor_export(folder: Path, photo: Path, objects: list) -> Path:
    """A vendor export of the one photo and its objects (the platform's ExtentPolygon boxes)."""
    folder.mkdir()
    (folder / "phone.jpg").write_bytes(photo.read_bytes())
    features = [{"type": "Feature", "properties": {"contentZh": {"标签": o.desc}},
                 "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]}}
                for o in objects for x1, y1, x2, y2 in [o.bbox_2d]]
    (folder / "phone.json").write_text(json.dumps({"markResult": {"type": "FeatureCollection", "features": features}},
                                                  ensure_ascii=False), encoding="utf-8")
    return folder


def test_data_convert_copies_it_whole_with_its_boxes_in_its_stored_pixels(big, tmp_path, monkeypatch):
    photo, objects = big
    src = vendor_export(tmp_path / "export", photo, objects)
    runner = CliRunner()
    ok = runner.invoke(data_app, ["convert", str(src), str(tmp_path / "full"), "--val-ratio", "0", "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    r = runner.invoke(data_app, ["convert", str(src), str(tmp_path / "big"), "--val-ratio", "0", "--workers", "1"])
    assert r.exit_code == 0, r.output  # 'image too large' before, the photo left out
    [full], [read] = read_records(tmp_path / "full" / "train.jsonl"), read_records(tmp_path / "big" / "train.jsonl")
    assert (read.width, read.height) == BIG and read.objects == full.objects
    # an upright RGB JPEG is copied as it is, never enlarged back from its reduced decode
    assert (tmp_path / "big" / read.image).read_bytes() == photo.read_bytes()


def test_data_convert_writes_a_turned_one_at_its_decodes_size_with_its_boxes_scaled_to_it(big, tmp_path, monkeypatch):
    photo, objects = big
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: upright 1500x2000, so its pixels must be encoded again
    turned = tmp_path / "turned.jpg"
    Image.open(photo).save(turned, quality=90, exif=exif)
    box = objects[0].model_copy(update={"bbox_2d": [100.0, 200.0, 700.0, 900.0]})  # in the upright frame
    src = vendor_export(tmp_path / "export", turned, [box])
    runner = CliRunner()
    ok = runner.invoke(data_app, ["convert", str(src), str(tmp_path / "full"), "--val-ratio", "0", "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    r = runner.invoke(data_app, ["convert", str(src), str(tmp_path / "big"), "--val-ratio", "0", "--workers", "1"])
    assert r.exit_code == 0, r.output
    [full], [read] = read_records(tmp_path / "full" / "train.jsonl"), read_records(tmp_path / "big" / "train.jsonl")
    # written at the half it decoded at, never enlarged back to 3 M pixels it does not hold
    assert (full.width, full.height, read.width, read.height) == (1500, 2000, 750, 1000)
    assert Image.open(tmp_path / "big" / read.image).size == (750, 1000)
    assert read.objects[0].bbox_2d == [v / 2 for v in full.objects[0].bbox_2d] == [50.0, 100.0, 350.0, 450.0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_data_tile_cuts_the_tiles_of_the_photo_decoded_in_full(big, tmp_path, monkeypatch):
    photo, objects = big
    dataset = tmp_path / "train.jsonl"
    dataset.write_text(json.dumps({"images": [str(photo)], "width": BIG[0], "height": BIG[1], "id": "phone",
                                   "objects": [o.model_dump(exclude_none=True) for o in objects]},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
    runner = CliRunner()
    # 3x3, tiles only: each tile under the lowered limit's own warning size, which data tile keeps its tiles within
    tile = ["--grid", "3x3", "--tiles-only", "--teachers", "0"]
    ok = runner.invoke(data_app, ["tile", str(dataset), str(tmp_path / "full"), *tile])
    assert ok.exit_code == 0, ok.output
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    r = runner.invoke(data_app, ["tile", str(dataset), str(tmp_path / "big"), *tile])
    assert r.exit_code == 0, r.output
    full, read = read_records(tmp_path / "full" / "train.jsonl"), read_records(tmp_path / "big" / "train.jsonl")
    assert [(t.id, t.width, t.height, t.objects) for t in read] == [(t.id, t.width, t.height, t.objects) for t in full]
    monkeypatch.undo()
    assert len(full) == 9
    for a, b in zip(full, read):
        pa = np.asarray(Image.open(tmp_path / "full" / a.image), dtype=float)
        pb = np.asarray(Image.open(tmp_path / "big" / b.image), dtype=float)
        assert pa.shape == pb.shape and np.abs(pa - pb).mean() < 8, a.image


def test_training_shows_the_model_the_frame_of_the_photo_decoded_in_full(big, monkeypatch):
    from bbuvl.data.coords import CoordinateContract
    from bbuvl.encode.chat import image_for_model

    photo, _ = big
    contract = CoordinateContract(min_pixels=12544, max_pixels=50176)
    region = (400, 300, 1400, 1050)
    full = [image_for_model(str(photo), BIG, contract, r) for r in (None, region)]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    read = [image_for_model(str(photo), BIG, contract, r) for r in (None, region)]
    for a, b in zip(full, read):
        assert a.size == b.size == contract.model_size(BIG)
        assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean() < 4


def test_few_shot_crops_are_cut_where_its_boxes_lie(big, tmp_path, monkeypatch):
    from bbuvl.fewshot.crops import write_crops

    photo, objects = big
    dataset = tmp_path / "train.jsonl"
    dataset.write_text(json.dumps({"images": [str(photo)], "width": BIG[0], "height": BIG[1],
                                   "objects": [o.model_dump(exclude_none=True) for o in objects]},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
    # the smallest part's crops: a crop is written at the stored photo's own scale, and a large one's PNG takes seconds
    smallest = min(objects, key=lambda o: (o.bbox_2d[2] - o.bbox_2d[0]) * (o.bbox_2d[3] - o.bbox_2d[1])).desc
    write_crops(dataset, tmp_path / "full", classes=[smallest])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    write_crops(dataset, tmp_path / "big", classes=[smallest])
    monkeypatch.undo()
    crops = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*.png"))
    assert crops and crops == sorted(p.relative_to(tmp_path / "big") for p in (tmp_path / "big").rglob("*.png"))
    for name in crops:
        a = np.asarray(Image.open(tmp_path / "full" / name), dtype=float)
        b = np.asarray(Image.open(tmp_path / "big" / name), dtype=float)
        assert a.shape == b.shape and np.abs(a - b).mean() < 8, name


def flat_photo(path: Path) -> Path:
    """A 2000x1500 JPEG of one grey: its reduced decode's pixels are its full decode's."""
    Image.new("RGB", BIG, (120, 120, 120)).save(path, quality=90)
    return path


def test_a_picture_of_predictions_without_the_photos_size_draws_them_where_they_lie(tmp_path, monkeypatch):
    from bbuvl.eval.draw import LabelNamer, prediction_picture
    from bbuvl.eval.fonts import FontChoice

    path = flat_photo(tmp_path / "phone.jpg")
    font = FontChoice(None)
    objects = [{"bbox_2d": [400.0, 300.0, 1200.0, 900.0], "label": "标签贴纸", "score": 0.9}]
    full, _ = prediction_picture(path, objects, font, LabelNamer(font))  # a predictions line without width and height
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    read, problem = prediction_picture(path, objects, font, LabelNamer(font))
    assert problem is None and read.size == full.size
    moved = np.abs(np.asarray(read, dtype=int) - np.asarray(full, dtype=int)).max(axis=2) > 60
    assert moved.mean() < 0.001, moved.mean()  # the box drawn at half its place had moved 1.6% of the picture


def test_an_openai_answer_and_predicts_tile_cost_are_in_the_stored_photos_pixels(tmp_path, monkeypatch):
    from bbuvl.cli.predict import first_photo_size
    from bbuvl.data.coords import CoordinateContract
    from bbuvl.infer.batch import PredictJob
    from bbuvl.infer.openai_answers import prediction_line

    path = flat_photo(tmp_path / "phone.jpg")
    contract = CoordinateContract(min_pixels=12544, max_pixels=50176)
    fw, fh = contract.model_size(BIG)
    text = json.dumps([{"bbox_2d": [fw // 4, fh // 4, fw // 2, fh // 2], "label": "标签贴纸"}], ensure_ascii=False)
    full = prediction_line("phone.jpg", path, text, contract)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    read = prediction_line("phone.jpg", path, text, contract)
    assert (read["width"], read["height"]) == BIG and read["objects"] == full["objects"]
    assert first_photo_size(PredictJob(["phone.jpg"], tmp_path / "out.jsonl", root=tmp_path)) == BIG


def block_photo(path: Path) -> Path:
    """A 2000x1500 JPEG of grey grain with a red block at (1210, 310, 1590, 620)."""
    grain = np.random.default_rng(1).integers(90, 140, (BIG[1], BIG[0], 3))
    grain[310:620, 1210:1590] = (220, 30, 30)
    Image.fromarray(grain.astype("uint8")).save(path, quality=90)
    return path


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_few_shot_support_crops_and_served_crops_are_cut_where_their_boxes_lie(tmp_path, monkeypatch):
    from bbuvl.data.images import load_image
    from bbuvl.fewshot.backbones import load_backbone
    from bbuvl.fewshot.embed import ImageItem, embed_items
    from bbuvl.serve.fewshot import FewShotRescorer

    path = block_photo(tmp_path / "phone.jpg")
    red, grey = [1230.0, 330.0, 1570.0, 600.0], [200.0, 900.0, 600.0, 1300.0]
    items = [ImageItem(path, box, size=BIG) for box in (red, grey)]
    backbone = load_backbone("pixels:16", "cpu")
    [(_, full)] = list(embed_items(items, backbone))
    for label, box in (("red", red), ("grey", grey)):  # each class the crop of its box, from the full decode
        (tmp_path / "support" / label).mkdir(parents=True)
        load_image(path).region(box, (170, 135)).save(tmp_path / "support" / label / "a.png")
    rescorer = FewShotRescorer.load(tmp_path / "support", "pixels:16", 0.5, "cpu", watch_s=0)
    served_full = [{"bbox_2d": red}, {"bbox_2d": grey}]
    rescorer.rescore(load_image(path).image, served_full)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    [(embedded, read)] = list(embed_items(items, backbone))  # the support's crops: refused as 'resized since' before
    assert len(embedded) == 2 and np.abs(read - full).max() < 0.05
    loaded = load_image(path)
    served = [{"bbox_2d": red}, {"bbox_2d": grey}]
    rescorer.rescore(loaded.image, served, loaded.size)  # a served photo's crops, as serve's engine cuts them
    assert [o["fewshot"]["label"] for o in served] == [o["fewshot"]["label"] for o in served_full] == ["red", "grey"]
    assert [o["unknown"] for o in served] == [False, False]


def test_predicts_tile_cost_reads_the_first_photos_header_alone(tmp_path):
    from bbuvl.cli.predict import first_photo_size
    from bbuvl.infer.batch import PredictJob

    exif = Image.Exif()
    exif[0x0112] = 6
    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(
        whole, quality=90, exif=exif)
    # its second half cut off: only decoding the pixels would find it (a 200 MP photo was decoded whole, 5 s, to say
    # what its tiles cost, then again to predict it)
    (tmp_path / "cut.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert first_photo_size(PredictJob(["cut.jpg"], tmp_path / "out.jsonl", root=tmp_path)) == (1500, 2000)
