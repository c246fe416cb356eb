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
