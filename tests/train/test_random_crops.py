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
from bbuvl.encode.chat import SPAN_STUDENT, ChatEncoder, format_answer, image_for_model
from bbuvl.encode.prompts import system_prompt
from bbuvl.train.dataset import ConversationDataset, sources_from

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


def test_a_cropped_sample_teaches_the_crops_boxes_on_the_crops_pixels(photo_jsonl, encoder, contract, tiny):
    ds = dataset(photo_jsonl, encoder, contract, CropConfig(p=1.0, min_side=0.5, max_side=0.5))
    frame = contract.model_size((448, 336))
    for index in range(len(ds)):
        region = ds.crop_for(index)
        assert region is not None
        item = ds[index]
        expected = magnified_record(ds.sources[index].student.record, region, frame)
        answer = item.input_ids[item.span_ids == SPAN_STUDENT].tolist()
        taught = encoder.answer_ids([format_answer(expected, contract)])[0]
        assert answer[:len(taught)] == taught and len(answer) - len(taught) <= 2  # then the turn's end
        boxes = [[o.bbox_2d[0] / frame[0], o.bbox_2d[1] / frame[1], o.bbox_2d[2] / frame[0], o.bbox_2d[3] / frame[1]]
                 for o in expected.objects]
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
