"""`dataset_stats` counts labels per level, objects per image, sizes and vision tokens correctly."""

from __future__ import annotations

import json

import pytest

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.data.stats import dataset_stats

OK = "螺丝连接点/BBU安装螺丝/连接正确"
WRONG = "螺丝连接点/BBU安装螺丝/连接错误"
STICKER = "标签贴纸"


def rec(size: tuple[int, int], labels: list[str]) -> ImageRecord:
    objs = [ObjectAnn(bbox_2d=[i, i, i + 10, i + 10], desc=d) for i, d in enumerate(labels)]
    return ImageRecord(images=["x.jpg"], width=size[0], height=size[1], objects=objs)


def test_counts_per_label_and_per_level_sum_to_the_object_count():
    s = dataset_stats([rec((640, 480), [OK, OK, WRONG]), rec((640, 480), [STICKER])], CoordinateContract())
    assert s["images"] == 2 and s["objects"] == 4
    assert s["labels"] == {OK: 2, STICKER: 1, WRONG: 1}
    assert s["levels"]["1"] == {"螺丝连接点": 3, STICKER: 1}
    assert s["levels"]["2"] == {"螺丝连接点/BBU安装螺丝": 3, STICKER: 1}
    assert s["levels"]["3"] == s["labels"]
    assert all(sum(level.values()) == 4 for level in s["levels"].values())


def test_a_label_typed_with_spaces_around_its_parts_counts_in_its_category():
    # Before: level 1 held '螺丝连接点' and '螺丝连接点 ', two rows that read alike.
    s = dataset_stats([rec((640, 480), ["螺丝连接点 / BBU安装螺丝 / 连接正确", "螺丝连接点/CPRI光缆和BBU连接点/连接正确"])],
                      CoordinateContract())
    assert s["levels"]["1"] == {"螺丝连接点": 2}
    assert s["levels"]["2"] == {"螺丝连接点/BBU安装螺丝": 1, "螺丝连接点/CPRI光缆和BBU连接点": 1}


def test_a_datasets_labels_json_counts_each_level_as_stats_does():
    from bbuvl.data.layout import label_counts

    counts = label_counts([rec((640, 480), ["螺丝连接点 / BBU安装螺丝 / 连接正确", WRONG, "ｂｂｕ基带处理单元/华为"])])
    assert counts["levels"]["1"] == {"螺丝连接点": 2, "bbu基带处理单元": 1}


def test_objects_per_image_summary_and_histogram():
    records = [rec((100, 100), [STICKER] * n) for n in (0, 2, 3, 12, 60)]
    per = dataset_stats(records, CoordinateContract())["objects_per_image"]
    assert (per["min"], per["median"], per["max"]) == (0, 3, 60)
    assert per["mean"] == 77 / 5
    assert per["histogram"] == {"0": 1, "1-3": 2, "4-10": 0, "11-20": 1, "21-50": 0, ">50": 1}


def test_image_sizes_and_vision_tokens_follow_the_contract():
    contract = CoordinateContract(min_pixels=56 * 56, max_pixels=28 * 28 * 64)
    records = [rec((224, 224), []), rec((224, 224), []), rec((1000, 800), [])]
    s = dataset_stats(records, contract)
    assert s["image_sizes"] == {"distinct": 2, "min": [224, 224], "max": [1000, 800], "counts": {"224x224": 2, "1000x800": 1}}
    small, large = contract.vision_tokens((224, 224)), contract.vision_tokens((1000, 800))
    assert small == 64 and large <= 64
    vt = s["vision_tokens"]
    assert (vt["min"], vt["max"], vt["total"]) == (min(small, large), max(small, large), 2 * small + large)
    assert (vt["min_pixels"], vt["max_pixels"]) == (56 * 56, 28 * 28 * 64)


def test_stats_of_no_records_are_empty_and_json_serialisable():
    s = dataset_stats([], CoordinateContract())
    assert s["images"] == 0 and s["labels"] == {} and s["vision_tokens"]["total"] == 0
    json.dumps(s)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_records_are_counted_as_they_come_and_none_is_kept():
    # `data stats` held every record of its files at once: 280 MB for 20,000 photos of 15 boxes. It reads them as a
    # stream now, so the statistics of a generator must count each record once, and keep none of them.
    import tracemalloc

    def photos(n: int):
        for i in range(n):
            yield rec((640 + i % 3, 480), [OK, STICKER] * 15)

    tracemalloc.start()
    try:
        s = dataset_stats(photos(200), CoordinateContract())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s["images"] == 200 and s["objects"] == 6000 and s["labels"] == {OK: 3000, STICKER: 3000}
    assert s["image_sizes"]["distinct"] == 3 and s["vision_tokens"]["total"] > 0
    assert peak < 2**20, peak  # 200 records of 30 boxes, kept, are about 4.5 MB; counted as they come, 0.05
