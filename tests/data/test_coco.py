"""COCO <-> records: exact boxes and labels both ways, and every unusable annotation reported."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbuvl.data.coco import coco_to_records, records_to_coco
from bbuvl.data.coords import box_is_degenerate
from bbuvl.data.schema import ImageRecord, ObjectAnn

LABELS = ["螺丝连接点/BBU安装螺丝/连接正确", "标签贴纸", "bbu基带处理单元/华为", "custom/part"]


def test_export_uses_sorted_categories_xywh_boxes_and_sequential_ids():
    r = ImageRecord(images=["images/a.jpg"], width=100, height=80, objects=[
        ObjectAnn(bbox_2d=[10, 20, 30, 60], desc="标签贴纸"),
        ObjectAnn(bbox_2d=[0.5, 1.5, 99.5, 79], desc="bbu基带处理单元/华为"),
    ])
    coco = records_to_coco([r, r.model_copy(update={"objects": []})])
    assert coco["categories"] == [
        {"id": 1, "name": "bbu基带处理单元/华为", "supercategory": "bbu基带处理单元"},
        {"id": 2, "name": "标签贴纸", "supercategory": "标签贴纸"},
    ]
    assert coco["images"] == [
        {"id": 1, "file_name": "images/a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "images/a.jpg", "width": 100, "height": 80},
    ]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 20, 40], "area": 800, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.5, 1.5, 99.0, 77.5], "area": 99.0 * 77.5, "iscrowd": 0},
    ]


def test_export_writes_absolute_image_paths_relative_to_image_root(tmp_path: Path):
    r = ImageRecord(images=[str(tmp_path / "data" / "img" / "a.jpg")], width=10, height=10)
    coco = records_to_coco([r], image_root=tmp_path / "out")
    assert coco["images"][0]["file_name"] == "../data/img/a.jpg"


def test_import_skips_and_reports_unusable_annotations():
    coco = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50}, {"id": 8, "file_name": "b.jpg"}],
        "categories": [{"id": 1, "name": "标签贴纸"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [10, 10, 0.2, 20]},
            {"id": 4, "image_id": 7, "category_id": 1, "bbox": [90, 10, 30, 20]},
            {"id": 5, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 6, "image_id": 7, "category_id": 42, "bbox": [1, 1, 5, 5]},
            {"id": 7, "image_id": 7, "category_id": 1, "bbox": [0, 2, 100.4, 5]},  # overshoot < 1 px: clipped
        ],
    }
    records, errors = coco_to_records(coco, Path("imgs"))
    assert len(records) == 1
    r = records[0]
    assert (r.images, r.size, r.id) == (["imgs/a.jpg"], (100, 50), "7")
    assert [o.bbox_2d for o in r.objects] == [[0, 2, 100, 7], [10, 10, 30, 30]]  # sorted by (y1, x1)
    reasons = {e.get("annotation_id"): e["reason"] for e in errors}
    assert set(reasons) == {None, 2, 3, 4, 5, 6}
    assert "crowd" in reasons[2] and "degenerate" in reasons[3] and "outside" in reasons[4]
    assert "unknown image id" in reasons[5] and "unknown category id 42" in reasons[6]
    assert "width/height" in reasons[None]


def test_import_skips_entries_that_are_no_objects_or_whose_ids_are_ambiguous_and_keeps_the_rest():
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}, None, "b.jpg",
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
                   {"id": 2, "file_name": "c.jpg", "width": 100, "height": 50},  # id 2 twice: b or c?
                   {"id": [3], "file_name": "d.jpg", "width": 100, "height": 50}],
        "categories": [{"id": 1, "name": "标签贴纸"}, {"id": 5, "name": "线缆"}, {"id": 5, "name": "挡风板/已安装"}, 7],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            5,
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 4, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20]},
            {"id": 5, "image_id": [1], "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 6, "image_id": 1, "category_id": {"id": 1}, "bbox": [10, 10, 20, 20]},
            {"id": 7, "image_id": 1, "category_id": 1, "bbox": [True, 10, 20, 20]},
            {"id": 8, "image_id": 1, "category_id": 1, "bbox": ["10", 10, 20, 20]},
            {"id": 9, "image_id": 1, "category_id": 1, "bbox": [10, 10, float("inf"), 20]},
        ],
    }
    records, errors = coco_to_records(coco, Path("imgs"))
    assert [(r.image, [o.bbox_2d for o in r.objects]) for r in records] == [("imgs/a.jpg", [[10, 10, 30, 30]])]
    reasons = {str(e.get("annotation_id", e.get("image_id", e.get("entry")))): e["reason"] for e in errors}
    assert reasons["images[1]"] == "images[1] is null, not an object" and "images[2]" in reasons
    assert reasons["categories[3]"] == "categories[3] is a number, not an object"
    assert reasons["annotations[1]"] == "annotations[1] is a number, not an object"
    assert "image id 2 is listed more than once (also for b.jpg)" in reasons["2"]
    assert "id [3] is neither a whole number nor a string" in reasons["[3]"]  # an id that cannot be a key is named, not used
    assert reasons["3"] == "its image id is listed more than once: which photo it belongs to is unknown"
    assert reasons["4"] == "category id 5 is listed with more than one name (挡风板/已安装, 线缆)"
    assert reasons["5"] == "image_id [1] is neither a whole number nor a string, so it names no entry"
    assert reasons["6"] == 'unknown category id {"id": 1}'  # as the file wrote it
    assert all("bbox must be [x, y, width, height]" in reasons[i] for i in ("7", "8")) and "not a finite" in reasons["9"]


@pytest.mark.parametrize("annotations", [None, {}, "[]"])
def test_a_file_without_an_annotations_list_is_no_coco_detection_file(annotations):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}], "categories": []}
    if annotations is not None:
        coco["annotations"] = annotations
    with pytest.raises(ValueError, match="not a COCO detection file: 'annotations' must be a list of boxes"):
        coco_to_records(coco, Path("imgs"))


boxes = st.tuples(
    st.floats(0, 500, allow_nan=False), st.floats(0, 400, allow_nan=False),
    st.floats(1, 140, allow_nan=False), st.floats(1, 100, allow_nan=False),
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]).filter(lambda b: not box_is_degenerate(b))  # valid boxes only
# One object listed twice is imported once (and refused by `data check`): every object here is another.
objects = st.lists(st.builds(lambda b, d: ObjectAnn(bbox_2d=b, desc=d), boxes, st.sampled_from(LABELS)), max_size=8,
                   unique_by=lambda o: (tuple(o.bbox_2d), o.desc))
records = st.lists(
    st.builds(lambda i, objs: ImageRecord(images=[f"img/{i}.jpg"], width=640, height=500, objects=objs),
              st.integers(0, 10**6), objects),
    min_size=1, max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(records)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_export_then_import_preserves_boxes_and_labels(recs: list[ImageRecord]):
    back, errors = coco_to_records(records_to_coco(recs), Path("."))
    assert errors == []
    assert [r.images for r in back] == [r.images for r in recs]
    for a, b in zip(recs, back):
        assert b.size == a.size
        assert [o.desc for o in b.objects] == [o.desc for o in a.sorted().objects]
        for oa, ob in zip(a.sorted().objects, b.objects):
            assert all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9) for x, y in zip(oa.bbox_2d, ob.bbox_2d))


def test_a_category_name_with_control_characters_is_refused_and_its_photo_left_out_not_kept_empty():
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
                   {"id": 3, "file_name": "c.jpg", "width": 100, "height": 50}],  # no annotations: a clean photo
        "categories": [{"id": 1, "name": "标签贴纸\x1b[2J"}, {"id": 2, "name": "线缆"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 10, 20, 20]}],
    }
    records, errors = coco_to_records(coco, Path("imgs"))
    assert [(r.image, len(r.objects)) for r in records] == [("imgs/b.jpg", 1), ("imgs/c.jpg", 0)]
    reasons = [e["reason"] for e in errors]
    assert reasons[0] == ("category id 1: label '标签贴纸\\x1b[2J' holds control characters ('\\x1b'): a label is "
                          "one line of text; remove them")
    assert reasons[1:] == ["unknown category id 1", "none of its 1 annotations could be used: the photo is left out"]


@pytest.mark.parametrize("width", ["100", True, 99.5])
def test_an_image_size_that_is_no_whole_json_number_is_refused_not_converted(width):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": 50}],
            "categories": [{"id": 1, "name": "线缆"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}]}
    records, errors = coco_to_records(coco, Path("imgs"))
    assert records == []
    assert "is not a whole number" in errors[0]["reason"]
