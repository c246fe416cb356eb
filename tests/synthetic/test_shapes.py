"""The shapes scene: deterministic, learnable (class = colour), tight non-overlapping boxes, a valid dataset folder."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data_synth import synth
from bbuvl.data.check import check_dataset
from bbuvl.data.labels import SEP, Hierarchy
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.synthetic.dataset import image_seed
from bbuvl.synthetic.shapes import (
    COLOUR_JITTER,
    MAX_SHAPES,
    SHAPE_CLASSES,
    SHAPE_LABELS,
    SIDE_RANGE,
    background_colour,
    render_shapes,
    synthesize_shapes,
)
from bbuvl.encode.prompts import system_prompt

SIZE = (320, 240)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "d"
    synthesize_shapes(out, 12, 4, seed=5, size=SIZE, min_objects=1, max_objects=3, num_teachers=3)
    return out


@pytest.fixture(scope="module")
def photos() -> list[tuple[np.ndarray, list]]:
    return [(np.asarray(img).astype(np.int32), objs) for img, objs in
            (render_shapes(image_seed(0, "train", i), SIZE, 1, 3) for i in range(150))]


def test_same_seed_writes_byte_identical_files_whatever_the_number_of_workers(shapes_set, tmp_path):
    synthesize_shapes(tmp_path / "again", 12, 4, seed=5, size=SIZE, min_objects=1, max_objects=3, num_teachers=3, workers=2)
    assert file_hashes(tmp_path / "again") == file_hashes(shapes_set)
    synthesize_shapes(tmp_path / "other", 12, 4, seed=6, size=SIZE, min_objects=1, max_objects=3, num_teachers=3)
    assert file_hashes(tmp_path / "other")["train.jsonl"] != file_hashes(shapes_set)["train.jsonl"]


def test_every_box_side_is_15_to_40_percent_of_the_photo_side_and_boxes_never_overlap(photos):
    counts = set()
    for _, objs in photos:
        counts.add(len(objs))
        for o in objs:
            x1, y1, x2, y2 = o.bbox_2d
            assert all(v == int(v) for v in o.bbox_2d) and 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1], o
            assert SIDE_RANGE[0] <= (x2 - x1) / SIZE[0] <= SIDE_RANGE[1], o
            assert SIDE_RANGE[0] <= (y2 - y1) / SIZE[1] <= SIDE_RANGE[1], o
        for a, b in itertools.combinations(objs, 2):
            (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.bbox_2d, b.bbox_2d
            assert ax2 <= bx1 or bx2 <= ax1 or ay2 <= by1 or by2 <= ay1, (a, b)
    assert counts == {1, 2, 3}


def test_positions_spread_over_the_whole_photo(photos):
    centres = np.array([[(o.bbox_2d[0] + o.bbox_2d[2]) / 2 / SIZE[0], (o.bbox_2d[1] + o.bbox_2d[3]) / 2 / SIZE[1]]
                        for _, objs in photos for o in objs])
    assert centres.min(0).max() < 0.15 and centres.max(0).min() > 0.85  # reaches every border
    assert np.histogram2d(centres[:, 0], centres[:, 1], bins=3, range=[[0, 1], [0, 1]])[0].min() > 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_box_is_the_tight_box_of_its_drawn_pixels_and_their_colour_is_the_class(photos):
    colour = {c.label: np.array(c.rgb) for c in SHAPE_CLASSES}
    for pixels, objs in photos:
        outside = np.ones(pixels.shape[:2], dtype=bool)
        for o in objs:
            x1, y1, x2, y2 = (int(v) for v in o.bbox_2d)
            outside[y1:y2, x1:x2] = False
        bg = pixels.reshape(-1, 3)[np.argmax(outside)]
        drawn = (pixels != bg).any(-1)
        assert not (drawn & outside).any()  # a plain background: nothing is drawn outside the boxes
        for o in objs:
            x1, y1, x2, y2 = (int(v) for v in o.bbox_2d)
            ys, xs = np.nonzero(drawn[y1:y2, x1:x2])
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x2 - x1, y2 - y1), o  # touches every side
            shape = pixels[y1:y2, x1:x2][drawn[y1:y2, x1:x2]]
            assert np.abs(shape - colour[o.desc]).max() <= COLOUR_JITTER, o  # a flat fill of the class colour
            assert min(colour, key=lambda label: np.abs(shape.mean(0) - colour[label]).sum()) == o.desc


def test_the_jpeg_files_hold_the_rendered_photos(shapes_set):
    for rec in read_records(shapes_set / "train.jsonl")[:4]:
        img, objs = render_shapes(image_seed(5, "train", int(rec.id.split("_")[1])), SIZE, 1, 3)
        with Image.open(resolve_image(shapes_set / "train.jsonl", rec.image)) as im:
            stored = np.asarray(im.convert("RGB")).astype(np.int32)
        assert np.abs(stored - np.asarray(img).astype(np.int32)).mean() < 2  # only JPEG differences
        assert [o.bbox_2d for o in rec.objects] == [o.bbox_2d for o in objs]


def test_labels_are_four_real_labels_and_colours_are_far_from_each_other_and_from_backgrounds():
    hierarchy = Hierarchy.load()
    assert len(set(SHAPE_LABELS)) == 4 and all(hierarchy.is_valid(label) for label in SHAPE_LABELS)
    assert len({label.split(SEP)[0] for label in SHAPE_LABELS}) == 4  # distinct at every hierarchy level
    rgb = np.array([c.rgb for c in SHAPE_CLASSES])
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)) > 150
    rng = random.Random(0)
    backgrounds = np.array([background_colour(rng) for _ in range(3000)])
    assert (backgrounds.max(1) - backgrounds.min(1)).max() <= 16 < 110 < (rgb.max(1) - rgb.min(1)).min() - 2 * COLOUR_JITTER
    assert np.linalg.norm(backgrounds[:, None] - rgb[None], axis=-1).min() > 70 + np.sqrt(3) * COLOUR_JITTER


def test_the_folder_passes_data_check_and_the_prompt_names_every_class(shapes_set):
    assert check_dataset(shapes_set) == []
    labels = json.loads((shapes_set / "labels.json").read_text(encoding="utf-8"))["labels"]
    assert set(labels) == set(SHAPE_LABELS)
    prompt = system_prompt(sorted(labels), Hierarchy.load())
    assert all(label in prompt for label in SHAPE_LABELS)
    summary = json.loads((shapes_set / "summary.json").read_text(encoding="utf-8"))
    assert summary["scene"] == "shapes" and summary["objects_per_photo"] == [1, 3] and summary["images"]["train"] == 12


def test_one_object_photos_hold_exactly_one_shape_and_the_most_shapes_always_find_room():
    assert all(len(render_shapes(s, SIZE, 1, 1)[1]) == 1 for s in range(50))
    assert all(len(render_shapes(s, SIZE, MAX_SHAPES, MAX_SHAPES)[1]) == MAX_SHAPES for s in range(30))


@pytest.mark.parametrize("low, high", [(0, 1), (3, 2), (1, MAX_SHAPES + 1)])
def test_impossible_object_counts_are_refused(low, high, tmp_path):
    with pytest.raises(ValueError, match="objects per photo"):
        synthesize_shapes(tmp_path / "x", 2, 0, min_objects=low, max_objects=high)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("synth")(synth)
    return app


def test_synth_command_writes_a_shapes_dataset_and_names_the_classes(tmp_path):
    args = ["synth", str(tmp_path / "s"), "--scene", "shapes", "--n-train", "3", "--n-val", "1", "--size", "200x150",
            "--min-objects", "1", "--max-objects", "1"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "s" / "train.jsonl")
    assert len(records) == 3 and all(len(r.objects) == 1 and r.size == (200, 150) for r in records)
    assert "red = bbu基带处理单元/华为" in result.output


@pytest.mark.parametrize("args, message", [
    (["--scene", "shapes", "--framing", "closeup"], "--framing"),
    (["--min-objects", "2"], "--scene shapes"),
    (["--scene", "circles"], "--scene"),
    (["--scene", "shapes", "--max-objects", "9"], "--max-objects"),
    (["--scene", "shapes", "--min-objects", "3", "--max-objects", "2"], "objects per photo"),
    (["--object-px", "10-24"], "--scene shapes"),
    (["--scene", "shapes", "--object-px", "24-10"], "MIN-MAX"),
    (["--scene", "shapes", "--object-px", "ten"], "MIN-MAX"),
    (["--scene", "shapes", "--object-px", "2-3"], "object sides"),
    (["--scene", "shapes", "--object-px", "10-300"], "half its shorter side"),
])
def test_synth_command_rejects_options_of_the_other_scene(tmp_path, args, message):
    result = CliRunner().invoke(cli(), ["synth", str(tmp_path / "d"), "--n-train", "1", "--n-val", "0", *args])
    assert result.exit_code == 2 and message in result.output


def test_small_shapes_have_every_side_within_the_pixel_range_tight_and_apart():
    for seed in range(60):
        img, objs = render_shapes(seed, (448, 336), 1, 8, object_px=(10, 24))
        pixels = np.asarray(img).astype(int)
        assert objs
        for o in objs:
            x1, y1, x2, y2 = (int(v) for v in o.bbox_2d)
            assert 10 <= x2 - x1 <= 24 and 10 <= y2 - y1 <= 24, o  # the drawn box is the planned one (touches every side)
            patch = pixels[y1:y2, x1:x2]
            colour = np.array(next(c.rgb for c in SHAPE_CLASSES if c.label == o.desc))
            assert (np.abs(patch - colour).max(-1) <= COLOUR_JITTER).any(), o
        for a, b in itertools.combinations(objs, 2):
            ax1, ay1, ax2, ay2 = a.bbox_2d
            bx1, by1, bx2, by2 = b.bbox_2d
            assert ax2 <= bx1 or bx2 <= ax1 or ay2 <= by1 or by2 <= ay1


def test_synth_command_writes_small_shapes_and_records_their_size(tmp_path):
    out = tmp_path / "small"
    result = CliRunner().invoke(cli(), ["synth", str(out), "--scene", "shapes", "--n-train", "6", "--n-val", "2",
                                        "--size", "448x336", "--object-px", "10-24"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["object_px"] == [10, 24]
    for rec in read_records(out / "train.jsonl"):
        for o in rec.objects:
            x1, y1, x2, y2 = o.bbox_2d
            assert 10 <= x2 - x1 <= 24 and 10 <= y2 - y1 <= 24
