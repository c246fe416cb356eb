"""The visibility rule of a window (data/regions.py) against what the whole photo keeps."""

import pytest

from bbuvl.data.regions import magnified_record, window_objects
from bbuvl.data.schema import ImageRecord, ObjectAnn


def test_a_box_under_two_pixels_wholly_inside_a_window_is_kept_as_the_whole_photo_keeps_it() -> None:
    screw = ([40.0, 30.0, 41.5, 31.5], "screw")
    kept = window_objects([screw], (20, 20), (50, 50))
    assert [(o.bbox_2d, o.desc) for o in kept] == [([20.0, 10.0, 21.5, 11.5], "screw")]


def test_a_strip_under_two_pixels_of_a_box_the_window_cuts_is_still_dropped() -> None:
    # 3 px wide, 1.5 px of it inside the window: half shows, but a strip that thin is a part's edge
    assert window_objects([([48.5, 10.0, 51.5, 13.0], "screw")], (0, 0), (50, 50)) == []
    assert len(window_objects([([47.5, 10.0, 51.5, 14.0], "screw")], (0, 0), (50, 50))) == 1


def test_a_training_crop_keeps_the_tiny_part_it_holds_magnified() -> None:
    record = ImageRecord(images=["a.png"], width=200, height=100,
                         objects=[ObjectAnn(bbox_2d=[120.0, 40.0, 121.5, 41.2], desc="screw")])
    crop = magnified_record(record, (100, 0, 200, 100), (200, 200))
    assert [(o.bbox_2d, o.desc) for o in crop.objects] == [([40.0, 80.0, 43.0, 82.4], "screw")]



@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_of_near_copies_made_by_clipping_the_more_visible_stays_as_a_box_at_a_time_kept_it() -> None:
    """The duplicate check compares each box with every box kept so far in one call (a tile of 1,156 screws took 19 s a
    box at a time); it keeps exactly what that loop kept, on boxes that clipping makes near copies of one another."""
    import random

    from bbuvl.data.boxes import box_iou
    from bbuvl.data.check import DUPLICATE_IOU
    from bbuvl.data.schema import sort_objects

    rng = random.Random(7)
    objects = []
    for i in range(300):
        x, y = rng.uniform(-20, 180), rng.uniform(-20, 130)
        box = [x, y, x + rng.uniform(2, 40), y + rng.uniform(2, 40)]
        objects.append((box, f"l{i % 3}"))
        if i % 4 == 0:  # a copy reaching further out of the window: the same box once clipped
            objects.append(([box[0] - rng.uniform(0, 30), box[1], box[2], box[3]], f"l{(i + 1) % 3}"))
    seen = []  # each visible box alone, clipped, as given, with the share of it the window shows
    for box, label in objects:
        if alone := window_objects([(box, label)], (0, 0), (160, 120)):
            c = alone[0].bbox_2d
            seen.append(((c[2] - c[0]) * (c[3] - c[1]) / ((box[2] - box[0]) * (box[3] - box[1])), c, box, label))
    kept: list[tuple[list[float], list[float]]] = []  # (clipped, as given) of each box kept

    def made_alike(c, box, c_kept, box_kept) -> bool:
        cut = c != [round(v, 1) for v in box] or c_kept != [round(v, 1) for v in box_kept]
        return (float(box_iou(c, c_kept)) > DUPLICATE_IOU and cut
                and float(box_iou(box, box_kept)) <= DUPLICATE_IOU)

    objs = []
    for _, c, box, label in sorted(seen, key=lambda t: -t[0]):
        if not any(made_alike(c, box, ck, bk) for ck, bk in kept):
            kept.append((c, box))
            objs.append(ObjectAnn(bbox_2d=c, desc=label))
    got = window_objects(objects, (0, 0), (160, 120))
    assert got == sort_objects(objs) and len(got) < len(seen)  # some near copies were dropped


# A BBU and the cabinet space it fills: different labels, IoU 0.98, both in the whole photo (`data check` accepts it).
BBU = ([100.0, 100.0, 300.0, 200.0], "bbu基带处理单元/华为")
SPACE = ([100.0, 100.0, 300.0, 204.0], "机柜空间/满载")


def test_two_near_identical_boxes_wholly_inside_a_crop_or_tile_both_stay_as_the_whole_photo_teaches_them() -> None:
    record = ImageRecord(images=["x.jpg"], width=640, height=480,
                         objects=[ObjectAnn(bbox_2d=b, desc=d) for b, d in (BBU, SPACE)])
    crop = magnified_record(record, (0, 0, 480, 360), record.size)
    assert sorted(o.desc for o in crop.objects) == sorted([BBU[1], SPACE[1]])
    tile = window_objects([BBU, SPACE], (0, 0), (400, 300))
    assert [(o.bbox_2d, o.desc) for o in tile] == [BBU, SPACE]


def test_two_boxes_only_clipping_made_alike_keep_the_more_visible_and_two_alike_before_both_stay() -> None:
    # The cabinet space runs far past the window's bottom: clipped, it is the BBU's box; the BBU shows whole.
    tall = ([100.0, 100.0, 300.0, 400.0], "机柜空间/满载")
    assert [o.desc for o in window_objects([BBU, tall], (0, 0), (400, 200))] == [BBU[1]]
    # Both cut by the window, but already that close in the whole photo, which teaches both.
    assert len(window_objects([BBU, SPACE], (150, 0), (400, 300))) == 2
