"""Random crops in training: a window of the photo magnified to its frame, boxes by the one visibility rule."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image, ImageDraw

from bbuvl.config import CropConfig
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.data.regions import magnified_record, random_region, window_objects
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_dataset
from bbuvl.encode.chat import SPAN_STUDENT, ChatEncoder, answer_objects, format_answer, image_for_model
from bbuvl.encode.prompts import system_prompt
from bbuvl.train.dataset import ConversationDataset, shown_photo, sources_from

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"
BOX = [200.0, 150.0, 230.0, 180.0]


@pytest.fixture(scope="module")
def contract(tiny_family):
    return CoordinateContract(3136, 448 * 336, family=tiny_family)


@pytest.fixture(scope="module")
def encoder(tiny, tiny_family):
    return ChatEncoder(tiny[1], system_prompt([SCREW], Hierarchy.load(), "zh"), "zh", get_family(tiny_family).assistant_prefix)


@pytest.fixture
def photo_jsonl(tmp_path):
    image = Image.new("RGB", (448, 336), (90, 90, 90))
    ImageDraw.Draw(image).rectangle([int(v) for v in BOX], fill=(230, 40, 40))
    image.save(tmp_path / "p.png")
    rec = {"images": ["p.png"], "width": 448, "height": 336, "objects": [{"bbox_2d": BOX, "desc": SCREW}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def dataset(path, encoder, contract, crop: CropConfig | None, seed: int = 0) -> ConversationDataset:
    return ConversationDataset(sources_from(read_dataset(path), path) * 40, encoder, contract, seed=seed, crop=crop)


def test_a_magnified_record_keeps_what_the_visibility_rule_keeps_at_the_crops_scale():
    record = ImageRecord(images=["p.png"], width=448, height=336, objects=[
        ObjectAnn(bbox_2d=BOX, desc=SCREW), ObjectAnn(bbox_2d=[0, 0, 40, 40], desc=SCREW),
        ObjectAnn(bbox_2d=[180, 100, 260, 130], desc=SCREW)])
    region = (150, 120, 374, 288)  # 224x168: the screw inside, the corner one outside, the third half in
    crop = magnified_record(record, region, (448, 336))
    kept = window_objects([(o.bbox_2d, o.desc) for o in record.objects], region[:2], (224, 168))
    assert [o.bbox_2d for o in crop.objects] == [[2 * v for v in o.bbox_2d] for o in kept]
    assert [100.0, 60.0, 160.0, 120.0] in [o.bbox_2d for o in crop.objects]  # (200-150)*2, (150-120)*2, ...
    assert (crop.width, crop.height, crop.magnified) == (448, 336, 2.0)


def test_a_random_region_has_the_photos_aspect_and_lies_inside_it():
    rng = random.Random(3)
    for _ in range(200):
        x1, y1, x2, y2 = random_region((448, 336), rng, 0.25, 0.5)
        assert 0 <= x1 < x2 <= 448 and 0 <= y1 < y2 <= 336
        assert 0.25 * 448 - 1 <= x2 - x1 <= 0.5 * 448 + 1
        assert abs((x2 - x1) / (y2 - y1) - 448 / 336) < 0.02


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_cropped_sample_teaches_the_crops_boxes_on_the_crops_pixels(photo_jsonl, encoder, contract, tiny):
    ds = dataset(photo_jsonl, encoder, contract, CropConfig(p=1.0, min_side=0.5, max_side=0.5))
    frame = contract.model_size((448, 336))
    for index in range(len(ds)):
        region = ds.crop_for(index)
        assert region is not None
        item = ds[index]
        # The window magnified to the photo's size: its frame is the picture shown (for each family's factor).
        expected = magnified_record(ds.sources[index].student.record, region, (448, 336))
        answer = item.input_ids[item.span_ids == SPAN_STUDENT].tolist()
        taught = encoder.answer_ids([format_answer(expected, contract)])[0]
        assert answer[:len(taught)] == taught and len(answer) - len(taught) <= 2  # then the turn's end
        boxes = [[o.bbox_2d[0] / 448, o.bbox_2d[1] / 336, o.bbox_2d[2] / 448, o.bbox_2d[3] / 336] for o in expected.objects]
        assert item.det_boxes.flatten().tolist() == pytest.approx([v for b in boxes for v in b], abs=1e-6)
    # The pixels: the window, magnified to the photo's frame.
    region = ds.crop_for(0)
    shown = image_for_model(str(photo_jsonl.parent / "p.png"), (448, 336), contract, region)
    assert shown.size == frame
    assert shown.tobytes() == Image.open(photo_jsonl.parent / "p.png").convert("RGB").crop(region).resize(
        frame, Image.BICUBIC).tobytes()


def test_crops_are_drawn_per_seed_epoch_and_index_and_p_zero_is_the_whole_photo(photo_jsonl, encoder, contract):
    crop = CropConfig(p=0.5, min_side=0.25, max_side=0.5)
    first, again = dataset(photo_jsonl, encoder, contract, crop), dataset(photo_jsonl, encoder, contract, crop)
    regions = [first.crop_for(i) for i in range(len(first))]
    assert regions == [again.crop_for(i) for i in range(len(again))]  # a resumed run sees the same crops
    assert 8 <= sum(r is not None for r in regions) <= 32  # about half of 40
    first.set_epoch(1)
    assert [first.crop_for(i) for i in range(len(first))] != regions
    whole = dataset(photo_jsonl, encoder, contract, CropConfig(p=0.0))
    plain = dataset(photo_jsonl, encoder, contract, None)
    assert all(whole.crop_for(i) is None for i in range(len(whole)))
    assert whole[0].input_ids.tolist() == plain[0].input_ids.tolist()


def test_a_crop_config_with_min_above_max_is_refused():
    with pytest.raises(ValueError, match="min_side"):
        CropConfig(p=0.5, min_side=0.6, max_side=0.5)


FRAMES = [(3136, 448 * 336, None), (50176, 50176, 64), (12544, 50176, None), (3136, 1003520, 1280), (3136, 150528, 96)]


def _truth_in_picture(record: ImageRecord, region, mirror: bool, picture, contract: CoordinateContract) -> dict:
    """Each object the window keeps, by label, mapped into the picture shown (its pixels, or 0-1000 of its sides)."""
    x1, y1, x2, y2 = region
    rw, rh = x2 - x1, y2 - y1
    extent = picture if contract.box_scale is None else (contract.box_scale, contract.box_scale)
    out = {}
    for o in window_objects([(o.bbox_2d, o.desc) for o in record.objects], (x1, y1), (rw, rh)):
        b = [o.bbox_2d[0] * extent[0] / rw, o.bbox_2d[1] * extent[1] / rh, o.bbox_2d[2] * extent[0] / rw,
             o.bbox_2d[3] * extent[1] / rh]
        out[o.desc] = [extent[0] - b[2], b[1], extent[0] - b[0], b[3]] if mirror else b
    return out


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_answer_is_in_the_frame_of_the_picture_shown(tmp_path, family):
    """Whole, cropped (the whole photo's window among them) and mirrored, over photo sizes and frames: each answer box
    is the truth the window keeps, mapped into the picture the model is shown, within a unit of rounding (a 109x113
    photo framed at 112x112 under a 64-token budget was taught boxes in a 224x224 frame once cropped)."""
    rng = random.Random(7)
    sizes = [(109, 113), (448, 336), (97, 600), (640, 480)] + [(rng.randint(40, 700), rng.randint(40, 700)) for _ in range(8)]
    checked = 0
    for w, h in sizes:
        Image.new("RGB", (w, h), (90, 90, 90)).save(tmp_path / f"{w}x{h}.png")
        objects = []
        for k in range(6):
            # Sides of a tenth of the photo or more: none is under a unit of any frame, which would be widened to one.
            bx, by = rng.uniform(0, 0.9 * w), rng.uniform(0, 0.9 * h)
            objects.append({"bbox_2d": [round(bx, 1), round(by, 1), round(rng.uniform(bx + 0.1 * w, w), 1),
                                        round(rng.uniform(by + 0.1 * h, h), 1)], "desc": f"{SCREW}{k}"})
        line = {"images": [f"{w}x{h}.png"], "width": w, "height": h, "objects": objects}
        path = tmp_path / f"{w}x{h}.jsonl"
        path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
        src = sources_from(read_dataset(path), path)[0].student
        for low, high, budget in FRAMES:
            contract = CoordinateContract(low, high, max_vision_tokens=budget, family=family)
            for region in (None, (0, 0, w, h), random_region((w, h), rng, 0.3, 0.9)):
                for mirror in (False, True):
                    picture, record = shown_photo(src, contract, region, mirror)
                    assert picture.size == contract.model_size((w, h))
                    answer = {o["label"]: o["bbox_2d"] for o in answer_objects(record, contract)}
                    truth = _truth_in_picture(src.record, region or (0, 0, w, h), mirror, picture.size, contract)
                    assert answer.keys() == truth.keys()
                    extent = picture.size if contract.box_scale is None else (1000, 1000)
                    # Half a unit of rounding, and the record's boxes are kept to a tenth of its pixel.
                    slack = [0.5 + 0.05 * extent[k % 2] / record.size[k % 2] + 1e-6 for k in range(4)]
                    for label, box in answer.items():
                        assert all(abs(a - t) <= e for a, t, e in zip(box, truth[label], slack)), \
                            (w, h, low, high, budget, region, mirror, box, truth[label])
                    assert contract.answer_extent(record.size) == extent  # what the coordinate losses normalise by
                    checked += 1
    assert checked == len(sizes) * len(FRAMES) * 6
