"""Framing of the equipment-room scene: wide exactly as before, close-ups with big parts, mixed from both."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data_synth import synth
from bbuvl.data.check import check_dataset
from bbuvl.data.regions import grid_regions, tile_side_overlap, window_objects
from bbuvl.data.schema import sort_objects
from bbuvl.synthetic.camera import render_scene
from bbuvl.synthetic.dataset import image_seed, synthesize
from bbuvl.synthetic.shapes import render_shapes

CLOSE_SIZE = (448, 336)

# Digests of what the renderer wrote before framing existed (commit 1e4a1b4): wide must not move a pixel.
WIDE_SCENES_SHA256 = "27330ea4c3fba5a9bcedec2f636b894708338d8b650fa6183b15ec3db8f6e9f1"
WIDE_FOLDER_SHA256 = "ea63248a4bbd1cea70d235484eccdf023019dad8cb6e42df8a3269bdfc78f663"


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def closeups() -> list[tuple[np.ndarray, list]]:
    return [(np.asarray(img).astype(np.int32), objs) for img, objs in
            (render_scene(image_seed(0, "train", i), CLOSE_SIZE, framing="closeup") for i in range(10))]


def test_wide_framing_renders_byte_identical_photos_and_folders_to_before(tmp_path):
    h = hashlib.sha256()
    for i in range(4):
        img, objs = render_scene(image_seed(7, "train", i), (320, 240), framing="wide")
        h.update(img.tobytes())
        h.update(json.dumps([o.model_dump(exclude_none=True) for o in objs], ensure_ascii=False).encode())
    assert h.hexdigest() == WIDE_SCENES_SHA256
    synthesize(tmp_path / "d", 3, 1, seed=7, size=(320, 240), num_teachers=2, framing="wide")
    assert folder_digest(tmp_path / "d") == WIDE_FOLDER_SHA256


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_closeup_parts_are_at_least_40_px_in_a_448x336_photo(closeups):
    w, h = CLOSE_SIZE
    sides = []
    for _, objs in closeups:
        for o in objs:
            x1, y1, x2, y2 = o.bbox_2d
            if o.desc.startswith("螺丝连接点") and x1 > 0 and y1 > 0 and x2 < w and y2 < h:  # not cut by the frame
                sides.append(min(x2 - x1, y2 - y1))
    assert len(sides) >= 10 and min(sides) >= 40


def test_closeup_boxes_lie_on_what_they_name(closeups):
    n_cpri = 0
    for pixels, objs in closeups:
        for o in objs:
            x1, y1, x2, y2 = (int(round(v)) for v in o.bbox_2d)
            c = pixels[y1:y2, x1:x2].reshape(-1, 3)
            r, g, b = c[:, 0], c[:, 1], c[:, 2]
            if "/CPRI" in o.desc and (x2 - x1) * (y2 - y1) > 900:
                n_cpri += 1
                assert ((b > r + 60) & (b > g + 20)).mean() > 0.1, o  # the blue plug head
            elif o.desc.startswith("bbu基带处理单元"):
                assert c.std() > 15, o
    assert n_cpri >= 3


def test_closeup_boxes_are_inside_the_photo_and_never_duplicated(closeups):
    for _, objs in closeups:
        for o in objs:
            x1, y1, x2, y2 = o.bbox_2d
            assert 0 <= x1 < x2 <= CLOSE_SIZE[0] and 0 <= y1 < y2 <= CLOSE_SIZE[1] and min(x2 - x1, y2 - y1) >= 2
        assert len({tuple(o.bbox_2d) for o in objs}) == len(objs)


def test_a_closeup_of_a_wide_thin_photo_shows_parts_that_fit_its_height():
    # A part sized by the width alone was 255 px in a 2000x100 photo, and the canvas it was cut from grew with the
    # square of the aspect (5.3 GB for one 4000x96 close-up): parts are at most half the shorter side.
    w, h = 2000, 100
    widths = [o.bbox_2d[2] - o.bbox_2d[0] for i in range(3)
              for o in render_scene(image_seed(0, "train", i), (w, h), framing="closeup")[1] if o.desc.startswith("螺丝连接点")]
    assert widths and max(widths) <= h


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_mixed_framing_takes_each_photo_from_the_wide_or_the_closeup_rendering():
    seen = set()
    for i in range(8):
        seed = image_seed(1, "train", i)
        mixed, _ = render_scene(seed, (200, 150), framing="mixed")
        wide, _ = render_scene(seed, (200, 150))
        close, _ = render_scene(seed, (200, 150), framing="closeup")
        framing = "wide" if mixed.tobytes() == wide.tobytes() else "closeup" if mixed.tobytes() == close.tobytes() else None
        seen.add(framing)
    assert seen == {"wide", "closeup"}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_closeup_folder_is_deterministic_and_passes_data_check(tmp_path):
    synthesize(tmp_path / "a", 4, 1, seed=2, size=(320, 240), num_teachers=2, framing="closeup")
    synthesize(tmp_path / "b", 4, 1, seed=2, size=(320, 240), num_teachers=2, framing="closeup", workers=2)
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")
    assert check_dataset(tmp_path / "a") == []
    assert json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))["framing"] == "closeup"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_wide_share_sets_the_odds_of_a_wide_photo_and_half_is_the_mixed_coin_of_old():
    seeds = [image_seed(3, "train", i) for i in range(16)]
    wide = {s: render_scene(s, (200, 150))[0].tobytes() for s in seeds}
    mixed = {share: {s: render_scene(s, (200, 150), framing="mixed", wide_share=share)[0].tobytes() for s in picked}
             for share, picked in ((0.0, seeds[:4]), (1.0, seeds[:4]), (0.2, seeds), (0.5, seeds))}
    is_wide = {share: [m[s] == wide[s] for s in m] for share, m in mixed.items()}
    assert not any(is_wide[0.0]) and all(is_wide[1.0])
    assert 1 <= sum(is_wide[0.2]) <= 8 < 16  # about 3 of 16
    assert all(mixed[0.5][s] == render_scene(s, (200, 150), framing="mixed")[0].tobytes() for s in seeds[:3])
    # a photo wide at a small share stays wide at a larger one: the close-ups of a small share are a larger one's
    assert all(b for a, b in zip(is_wide[0.2], is_wide[0.5]) if a) and sum(is_wide[0.5]) > sum(is_wide[0.2])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiles_replace_wide_photos_keep_every_close_up_and_show_a_cabinet_cell_at_the_tiles_scale():
    seeds = [image_seed(5, "train", i) for i in range(40)]
    size = (224, 168)
    before = {s: render_scene(s, size, framing="mixed", wide_share=0.5) for s in seeds}
    after = {s: render_scene(s, size, framing="mixed", wide_share=0.25, tile_share=0.25) for s in seeds}
    wide = {s: render_scene(s, size)[0].tobytes() for s in seeds}
    closeups = [s for s in seeds if before[s][0].tobytes() != wide[s]]
    assert closeups and all(after[s][0].tobytes() == before[s][0].tobytes() for s in closeups)  # every close-up kept
    tiles = [s for s in seeds if s not in closeups and after[s][0].tobytes() != wide[s]]
    still_wide = [s for s in seeds if s not in closeups and after[s][0].tobytes() == wide[s]]
    assert tiles and still_wide  # about half of the wide photos became tiles
    # A tile is one cell of the 3x3 grid (overlap 0.15) of the cabinet photographed at 4x the side, at the photo's
    # aspect around the cell's centre, resized to the photo; its boxes are the cabinet's seen through that window.
    source = (size[0] * 4, size[1] * 4)
    cells = grid_regions(source, 3, 3, overlap=tile_side_overlap(source, (3, 3), 0.15))
    for s in tiles:
        img, objects = after[s]
        cabinet, boxes = render_scene(s, source)
        windows = []
        for x1, y1, x2, y2 in cells:
            k = min((x2 - x1) / size[0], (y2 - y1) / size[1])
            ox, oy = (x1 + x2 - size[0] * k) / 2, (y1 + y2 - size[1] * k) / 2
            windows.append((cabinet.resize(size, Image.Resampling.BICUBIC, box=(ox, oy, ox + size[0] * k, oy + size[1] * k)),
                            window_objects([(o.bbox_2d, o.desc) for o in boxes], (ox, oy), size, scale=k)))
        assert any(w.tobytes() == img.tobytes() and sort_objects(o) == objects for w, o in windows), s
        assert 1.4 < k < 1.5  # a 3x3 cell of a 4x cabinet: its parts at 0.7 of their size there
    grid2 = render_scene(tiles[0], size, framing="mixed", wide_share=0.25, tile_share=0.25, tile_grid=(2, 2))
    assert grid2[0].tobytes() != after[tiles[0]][0].tobytes()


def test_a_wide_share_folder_records_its_share_and_passes_data_check(tmp_path):
    synthesize(tmp_path / "a", 3, 1, seed=2, size=(200, 150), num_teachers=1, framing="mixed", wide_share=0.25)
    assert json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))["wide_share"] == 0.25
    assert check_dataset(tmp_path / "a") == []


@pytest.mark.parametrize("kwargs, message", [
    ({"framing": "aerial"}, "framing must be one of"),
    ({"framing": "closeup", "render": render_shapes}, "does not apply"),
    ({"framing": "closeup", "wide_share": 0.2}, "needs framing 'mixed'"),
    ({"framing": "mixed", "wide_share": 1.5}, "between 0 and 1"),
    ({"framing": "closeup", "tile_share": 0.2}, "needs framing 'mixed'"),
    ({"framing": "mixed", "wide_share": 0.6, "tile_share": 0.5}, "tile share .* less the wide share"),
])
def test_impossible_framings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize(tmp_path / "x", 1, 0, size=(200, 150), **kwargs)


def test_synth_command_renders_closeups(tmp_path):
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("synth")(synth)
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "c"), "--n-train", "2", "--n-val", "0", "--size", "200x150",
                                      "--framing", "closeup"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / "summary.json").read_text(encoding="utf-8"))["framing"] == "closeup"
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "d"), "--framing", "aerial"])
    assert result.exit_code == 2 and "--framing" in result.output
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "e"), "--framing", "closeup", "--wide-share", "0.2"])
    assert result.exit_code == 2 and "--framing mixed" in result.output and not (tmp_path / "e").exists()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "f"), "--framing", "closeup", "--tile-share", "0.2"])
    assert result.exit_code == 2 and "--tile-share" in result.output and not (tmp_path / "f").exists()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "g"), "--framing", "mixed", "--wide-share", "0.6",
                                      "--tile-share", "0.5"])
    assert result.exit_code == 2 and "at most 1" in result.output and not (tmp_path / "g").exists()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "h"), "--framing", "mixed", "--tile-share", "0.2",
                                      "--tile-grid", "3by3"])
    assert result.exit_code == 2 and "--tile-grid" in result.output and not (tmp_path / "h").exists()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "t"), "--n-train", "3", "--n-val", "1", "--size", "200x150",
                                      "--framing", "mixed", "--wide-share", "0.1", "--tile-share", "0.1", "--teachers", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "t" / "summary.json").read_text(encoding="utf-8"))
    assert summary["tile_share"] == 0.1 and summary["tile_grid"] == "3x3" and check_dataset(tmp_path / "t") == []
