"""`data convert` names why a feature gives no box: a point or a line drawn as a feature was "degenerate ... after
clipping", which nothing clipped; a box left thin by clipping or by --resize says which."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.coords import CoordinateContract

SIZE = (640, 480)


def export(src: Path, geometries: list[list]) -> None:
    """One photo and its annotation, a 线缆 of each coordinates in `geometries` and a good box to keep the photo."""
    src.mkdir()
    Image.new("RGB", SIZE, (90, 100, 110)).save(src / "p.jpg", "JPEG")
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": c},
                 "properties": {"contentZh": {"标签": "线缆"}}} for c in geometries]
    features.append({"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [[300, 300], [400, 400]]},
                     "properties": {"contentZh": {"标签": "标签贴纸"}}})
    (src / "p.json").write_text(json.dumps({"info": {"width": SIZE[0], "height": SIZE[1]},
                                            "markResult": {"features": features}}, ensure_ascii=False),
                                encoding="utf-8")


def reasons(out: Path) -> list[str]:
    return [json.loads(line)["reason"] for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_point_a_line_and_a_clipped_sliver_each_say_why_they_give_no_box(tmp_path):
    export(tmp_path / "export", [[100, 100], [[10, 10], [10, 300]], [[-3, 10], [0.5, 50]]])

    convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0))

    assert reasons(tmp_path / "out") == [
        "box [100, 100, 100, 100] is degenerate (0.0x0.0 px) (a point or a line, not a box)",
        "box [10, 10, 10, 300] is degenerate (0.0x290.0 px) (a point or a line, not a box)",
        "box [-3, 10, 0.5, 50] is degenerate (0.5x40.0 px) once clipped to the image",
    ]


def test_a_box_made_thin_by_resize_says_so(tmp_path):
    export(tmp_path / "export", [[[100, 100], [101.5, 200]]])
    frame = CoordinateContract(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 40)

    convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0, frame=frame))

    (reason,) = reasons(tmp_path / "out")
    assert reason.startswith("box [100, 100, 101.5, 200] is degenerate (0.")
    assert reason.endswith(f" px) once scaled to the model frame's {frame.model_size(SIZE)[0]}x{frame.model_size(SIZE)[1]}")


def test_boxes_written_as_fractions_of_the_photo_say_so(tmp_path):
    # A platform that writes 0-1: each box was "degenerate ... after clipping", and the photo lost with no word of why
    export(tmp_path / "export", [[[0.1, 0.2], [0.3, 0.4]]])

    convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0))

    assert reasons(tmp_path / "out") == [
        "box [0.1, 0.2, 0.3, 0.4] is degenerate (0.2x0.2 px) (its coordinates lie within 0-1: fractions of the photo's "
        "sides? The platform's boxes are in pixels)"]
