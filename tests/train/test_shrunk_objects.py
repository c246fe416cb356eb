"""Training objects the model frame shrinks under a pixel, or writes as another object's box, are named at the start."""

from __future__ import annotations

import json
import logging

from PIL import Image
import pytest

from bbuvl.train.run_inputs import read_run_inputs

SCREW = "螺丝连接点/地排处螺丝/连接正确"


def dataset(tmp_path, photos: list[tuple[tuple[int, int], list[list[float]]]]):
    """A train.jsonl of one line per (size, boxes), each photo a plain image of that size."""
    lines = []
    for k, (size, boxes) in enumerate(photos):
        Image.new("RGB", size, (30, 90, 40 * k)).save(tmp_path / f"p{k}.png")
        lines.append(json.dumps({"images": [f"p{k}.png"], "width": size[0], "height": size[1],
                                 "objects": [{"bbox_2d": b, "desc": SCREW} for b in boxes]}, ensure_ascii=False) + "\n")
    path = tmp_path / "train.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "under one frame pixel" in r.getMessage()]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_screws_a_large_photo_shrinks_under_a_pixel_and_writes_as_one_box_are_named(run_config, tmp_path, caplog):
    # Four screws on a 4000x3000 photo, under a frame pixel and closer together than a unit of what an answer writes
    # (data check and training take them: no two are one object); a 224x168 photo of the same screws keeps them whole.
    # A unit is a frame pixel for Qwen2.5-VL (16 photo pixels at 252x168): screws of 4 px, 6 px apart. It is a
    # thousandth of each side for the relative families (4 photo pixels across), which write those screws as four
    # boxes: screws of 2 px, side by side, are written as two (docs/families.md).
    cfg = run_config("data.val=null", "data.teachers=null")
    side, step = {"absolute": (4, 6), "relative": (2, 2)}[cfg.model.frame().box_format]
    screws = [[1000 + step * i, 1000, 1000 + side + step * i, 1000 + side] for i in range(4)]
    train = dataset(tmp_path, [((224, 168), [[10 + step * i, 10, 10 + side + step * i, 10 + side] for i in range(4)]),
                               ((4000, 3000), screws), ((4000, 3000), [[0, 0, 400, 300]])])
    cfg = run_config(f"data.train={train}", "data.val=null", "data.teachers=null")
    frame = "x".join(map(str, cfg.model.frame().model_size((4000, 3000))))
    with caplog.at_level(logging.WARNING):
        read_run_inputs(cfg)
    # Before: nothing was said, and the answer wrote three of the four screws as one box, three times
    [note] = notes(caplog)
    # "written one unit wide" was said in every family: a relative answer's unit is finer than a frame pixel, and an
    # object under one (up to 15 pixels of this photo) was written up to 4 units wide
    wide = "; their answer boxes are written one unit wide" if cfg.model.frame().box_format == "absolute" else ""
    assert note.startswith("1 photo(s) of data.train are shown so much smaller in the model frame that 4 object(s) are "
                           f"under one frame pixel (the model cannot see them{wide}), and 2 answer object(s)")
    assert "and 2 answer object(s) are the same box and label as another object of their photo" in note
    assert f"{train}:2: 4000x3000 shown at {frame}, 4 object(s) under a pixel, 2 written again as an earlier one." in note
    assert f"{train}:1" not in note and f"{train}:3" not in note


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_photos_whose_objects_the_frame_keeps_say_nothing(run_config, tmp_path, caplog):
    train = dataset(tmp_path, [((224, 168), [[10, 10, 14, 14], [16, 10, 20, 14]]), ((4000, 3000), [[0, 0, 400, 300]])])
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.train={train}", "data.val=null", "data.teachers=null"))
    assert notes(caplog) == []
