"""The scale a run trained at: frame pixels per pixel of the photo as taken, over the training photos."""

from __future__ import annotations

import pytest

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.scale import SCALE_FILE, TrainingScale, frame_scale, photo_scale
from bbuvl.data.schema import ImageRecord


def record(width: int, height: int, magnified: float | None = None) -> ImageRecord:
    return ImageRecord(images=["a.jpg"], width=width, height=height, magnified=magnified)


def test_a_photo_shrunk_to_the_frame_is_shown_at_frame_over_stored_pixels():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    assert photo_scale(record(448, 336), contract) == pytest.approx(1.0)
    assert photo_scale(record(1792, 1344), contract) == pytest.approx(0.25)


def test_a_frame_of_another_aspect_than_the_photo_shows_it_at_the_mean_over_both_sides(tmp_path):
    # configs/demo.yaml's frame holds a 320x240 photo as 308x252 (whole patches): 0.9625 across, 1.05 down. The scale
    # is the mean over both sides, sqrt(308 * 252 / (320 * 240)), and training_scale.json writes it at 4 decimals.
    contract = CoordinateContract(min_pixels=12544, max_pixels=150528, max_vision_tokens=192)
    assert contract.model_size((320, 240)) == (308, 252)
    assert frame_scale((320, 240), contract) == pytest.approx(1.0052985, abs=1e-7)
    assert frame_scale((240, 320), contract) == pytest.approx(1.0052985, abs=1e-7)  # the same photo turned
    TrainingScale.of([record(320, 240)] * 3, contract).save(tmp_path)
    assert TrainingScale.load(tmp_path).median == 1.0053


def test_a_magnified_tile_counts_its_magnification():
    # A 224x168 region written at zoom 2 is a 448x336 photo that the frame shows whole: 2 frame pixels per pixel
    # of the photo it was cut from.
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    assert photo_scale(record(448, 336, magnified=2.0), contract) == pytest.approx(2.0)


def test_the_median_and_range_over_the_photos_and_a_round_trip(tmp_path):
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    records = [record(1792, 1344)] + [record(448, 336, magnified=2.0)] * 8 + [record(448, 336)]
    scale = TrainingScale.of(records, contract)
    assert (scale.median, scale.photos) == (2.0, 10)
    assert (scale.low, scale.high) == (0.25, 2.0)
    scale.save(tmp_path)
    assert TrainingScale.load(tmp_path) == scale


def test_no_file_is_no_scale_and_a_bad_one_is_an_error_naming_it(tmp_path):
    assert TrainingScale.load(tmp_path) is None
    (tmp_path / SCALE_FILE).write_text('{"median": -1, "low": 1, "high": 1, "photos": 3}')
    with pytest.raises(ValueError, match=SCALE_FILE):
        TrainingScale.load(tmp_path)
    (tmp_path / SCALE_FILE).write_text('{"median": 1}')
    with pytest.raises(ValueError, match=SCALE_FILE):
        TrainingScale.load(tmp_path)
    for sides in ('[1, 2]', '"x"', '{"螺丝连接点": -5}', '{"螺丝连接点": "big"}'):
        for key in ("part_sides", "part_long_sides"):
            (tmp_path / SCALE_FILE).write_text(f'{{"median": 1, "low": 1, "high": 1, "photos": 3, "{key}": {sides}}}',
                                               encoding="utf-8")
            with pytest.raises(ValueError, match=SCALE_FILE):
                TrainingScale.load(tmp_path)
    with pytest.raises(ValueError, match="no training photos"):
        TrainingScale.of([], CoordinateContract())


def test_random_crops_count_at_their_magnification():
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    photos = [record(448, 336)] * 4
    always_half = TrainingScale.of(photos, contract, crop_p=1.0, crop_sides=(0.5, 0.5))
    assert (always_half.low, always_half.median, always_half.high) == (2.0, 2.0, 2.0)
    mixed = TrainingScale.of(photos, contract, crop_p=0.6, crop_sides=(0.25, 0.5))  # crops magnify 2x to 4x
    assert mixed.low == 1.0 and 2.0 < mixed.median < 2.5 and 3.0 < mixed.high < 4.0 and mixed.photos == 4


def test_each_category_keeps_the_90th_percentile_side_of_its_boxes_at_the_frame():
    from bbuvl.data.schema import ImageRecord, ObjectAnn

    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336)
    screws = [ObjectAnn(bbox_2d=[0, 0, s, s], desc="螺丝连接点/BBU安装螺丝/连接正确") for s in (40, 50, 60)]
    bbu = ObjectAnn(bbox_2d=[0, 0, 800, 200], desc="bbu基带处理单元/华为")
    big = ImageRecord(images=["a.jpg"], width=896, height=672, objects=[*screws, bbu])  # shown at half size
    scale = TrainingScale.of([big], contract)
    assert scale.part_sides == {"bbu基带处理单元": 200.0, "螺丝连接点": 30.0}
    assert scale.part_long_sides == {"bbu基带处理单元": 400.0, "螺丝连接点": 30.0}  # longest side, for who answers
