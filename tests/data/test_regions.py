"""The visibility rule of a window (data/regions.py) against what the whole photo keeps."""

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
    seen = []  # each visible box alone, clipped, with the share of it the window shows
    for box, label in objects:
        if alone := window_objects([(box, label)], (0, 0), (160, 120)):
            c = alone[0].bbox_2d
            seen.append(((c[2] - c[0]) * (c[3] - c[1]) / ((box[2] - box[0]) * (box[3] - box[1])), c, label))
    kept: list[ObjectAnn] = []
    for _, c, label in sorted(seen, key=lambda t: -t[0]):
        if all(float(box_iou(c, o.bbox_2d)) <= DUPLICATE_IOU for o in kept):
            kept.append(ObjectAnn(bbox_2d=c, desc=label))
    got = window_objects(objects, (0, 0), (160, 120))
    assert got == sort_objects(kept) and len(got) < len(seen)  # some near copies were dropped
