"""Near-copies a tool changed in tone (data/near_copies.py): a copy made greyscale, darker or lower in contrast is one
photo to `near_copies`, `data check` and `data split`, and says how; a distinct photo just past the bounds is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from bbuvl.data.check import check_dataset
from bbuvl.data.layout import TRAIN, VAL
from bbuvl.data.near_copies import (GREY_LEVELS, NEAR_COPY_LEVELS, TONE_LEVELS, copy_groups, near_copies,
                                     near_copy_entries, photo_print)
from bbuvl.data.schema import ImageRecord, read_records, resolve_image, write_dataset
from bbuvl.data.split import split_photos
from bbuvl.synthetic.dataset import synthesize


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    """A small dataset of distinct synthetic photos of the equipment room."""
    root = tmp_path_factory.mktemp("room")
    synthesize(root, 8, 0, seed=5, size=(320, 240), num_teachers=0)
    return root / TRAIN


def first_photo(room: Path) -> Path:
    """The room's first photo."""
    return resolve_image(room, read_records(room)[0].image)


def changed(photo: Path, change: str, factor: float, dest: Path) -> Path:
    """`photo` made greyscale, or changed in brightness or contrast by `factor` (Pillow's ImageEnhance, as a phone's
    edit), saved as JPEG 90 to `dest`."""
    rgb = Image.open(photo).convert("RGB")
    if change == "greyscale":
        out = rgb.convert("L")
    else:
        out = (ImageEnhance.Brightness if change == "brightness" else ImageEnhance.Contrast)(rgb).enhance(factor)
    out.save(dest, "JPEG", quality=90)
    return dest


def found(*paths: Path) -> list[tuple[int, int, str]]:
    """The near-copies among photo files, as (first, second, how)."""
    return [(n.first, n.second, n.how) for n in near_copies([photo_print(p) for p in paths])]


def test_a_copy_made_greyscale_is_a_near_copy_that_says_so(room, tmp_path):
    photo = first_photo(room)
    grey = changed(photo, "greyscale", 1.0, tmp_path / "grey.jpg")
    assert found(photo, grey) == [(0, 1, "made greyscale")]
    assert found(grey, photo) == [(0, 1, "in colour")]


@pytest.mark.parametrize("change, factor, how, back", [("brightness", 0.8, "made darker", "made brighter"),
                                                       ("brightness", 0.9, "made darker", "made brighter"),
                                                       ("contrast", 0.7, "with less contrast", "with more contrast")])
def test_a_copy_made_darker_or_lower_in_contrast_is_a_near_copy_that_says_how(room, tmp_path, change, factor, how, back):
    photo = first_photo(room)
    copy = changed(photo, change, factor, tmp_path / "copy.jpg")
    assert found(photo, copy) == [(0, 1, how)]
    assert found(copy, photo) == [(0, 1, back)]  # the original is the copy brightened, nothing clipped


def shot(shift: int) -> Image.Image:
    """A photo of the demo's shapes scene: one blue ellipse on a light plain background, `shift` pixels right."""
    image = Image.new("RGB", (224, 224), (170, 165, 160))
    ImageDraw.Draw(image).ellipse([80 + shift, 25, 140 + shift, 120], fill=(38, 78, 218))
    return image


def test_a_distinct_photo_made_greyscale_or_darker_just_past_the_bounds_is_no_copy(tmp_path):
    # Another shot, its one shape a few pixels over, saved greyscale or darker: its luminance, or its print matched in
    # tone, is within the plain bound of the first's but past the tighter ones a greyscale or tone copy is held to.
    shot(0).save(tmp_path / "first.png")
    shot(2).convert("L").save(tmp_path / "grey.jpg", quality=90)
    ImageEnhance.Brightness(shot(3)).enhance(0.8).save(tmp_path / "darker.jpg", quality=90)
    first, grey, darker = (photo_print(tmp_path / name) for name in ("first.png", "grey.jpg", "darker.jpg"))
    assert GREY_LEVELS < float(np.abs(first[..., 0] - grey[..., 0]).max()) <= NEAR_COPY_LEVELS
    y, other = first[..., 0], darker[..., 0]
    matched = [np.concatenate([p[..., 0].ravel() - p[..., 0].mean(), (p[..., 1:] - 128).ravel()]) / p[..., 0].std()
               for p in (first, darker)]
    assert TONE_LEVELS < float(np.abs(matched[0] - matched[1]).max() * max(y.std(), other.std())) <= 2 * TONE_LEVELS
    assert found(tmp_path / "first.png", tmp_path / "grey.jpg", tmp_path / "darker.jpg") == []
    # The same shot, not another, is found both ways.
    shot(0).convert("L").save(tmp_path / "grey.jpg", quality=90)
    ImageEnhance.Brightness(shot(0)).enhance(0.8).save(tmp_path / "darker.jpg", quality=90)
    assert found(tmp_path / "first.png", tmp_path / "grey.jpg", tmp_path / "darker.jpg") == [
        (0, 1, "made greyscale"), (0, 2, "made darker")]


def with_changed_copy(room: Path, folder: Path, change: str, factor: float) -> tuple[list[ImageRecord], ImageRecord]:
    """The room's photos copied into `folder`, and a line for its first photo changed (`changed`) as images/copy.jpg."""
    records = read_records(room)
    (folder / "images").mkdir(parents=True)
    for r in records:
        shutil.copy(resolve_image(room, r.image), folder / r.image)
    changed(folder / records[0].image, change, factor, folder / "images" / "copy.jpg")
    return records, records[0].model_copy(update={"images": ["images/copy.jpg"], "id": "copy"})


def test_check_warns_of_a_greyscale_copy_in_val_naming_both_and_how(room, tmp_path):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, "greyscale", 1.0)
    write_dataset(folder / TRAIN, records)
    write_dataset(folder / VAL, [copy])
    warned = [p for p in check_dataset(folder) if "its pixels are those of" in p.message]
    assert [(Path(p.file).name, p.line, p.severity) for p in warned] == [("val.jsonl", 1, "warning")]
    assert f"{records[0].image} made greyscale at {folder / TRAIN} line 1" in warned[0].message


def test_split_keeps_a_darker_copy_and_its_photo_on_one_side(room, tmp_path):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, "brightness", 0.8)
    write_dataset(folder / "all.jsonl", [*records, copy])
    for seed in range(4):
        result = split_photos(folder / "all.jsonl", tmp_path / f"split{seed}", val_ratio=0.3, seed=seed, num_teachers=0)
        assert result.near_copies == [[records[0].image, "images/copy.jpg"]], seed
        sides = [{Path(r.image).name for r in read_records(tmp_path / f"split{seed}" / name)} for name in (TRAIN, VAL)]
        assert any({Path(records[0].image).name, "copy.jpg"} <= side for side in sides), (seed, sides)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_fixed_cameras_shots_some_in_dimmer_light_are_one_group_in_few_pairs():
    rng = np.random.default_rng(0)
    view = rng.uniform(40, 200, (8, 8, 3)).astype(np.float32)
    shots = [view + rng.integers(-3, 4, view.shape).astype(np.float32) for _ in range(600)]
    # Every third in dimmer light: its luminance, and its colour about grey, scaled (up to 30 levels off the others)
    shots = [s if i % 3 else ((s - [0, 128, 128]) * 0.85 + [0, 128, 128]).astype(np.float32) for i, s in enumerate(shots)]
    pairs = near_copies(shots, block=256)
    assert copy_groups(len(shots), [(p.first, p.second) for p in pairs]) == [list(range(len(shots)))]
    assert len(pairs) < 3 * len(shots)
    assert any(p.how == "made brighter" for p in pairs)


def test_a_darker_copy_is_compared_where_one_of_the_two_spans_enough_luminance_and_the_other_three_quarters():
    rng = np.random.default_rng(1)
    for top, found_one in ((134.0, True), (126.0, False)):  # the photo's luminance spans about 34 levels, then 26
        photo = np.stack([rng.uniform(100, top, (8, 8)), rng.uniform(90, 170, (8, 8)), rng.uniform(90, 170, (8, 8))],
                         axis=-1).astype(np.float32)
        photo[0, 0, 0], photo[0, 1, 0] = 100, top
        darker = ((photo - [0, 128, 128]) * 0.8 + [0, 128, 128]).astype(np.float32)  # spans 27, then 21
        assert [(p.first, p.second, p.how) for p in near_copies([photo, darker])] == (
            [(0, 1, "made darker")] if found_one else []), top


def test_an_importers_note_of_a_darker_or_greyscale_copy_says_how_and_how_it_was_compared(room, tmp_path):
    photo = first_photo(room)
    copies = [changed(photo, change, 0.8, tmp_path / f"{change}.jpg") for change in ("greyscale", "brightness")]
    groups, entries = near_copy_entries(["a.jpg", "grey.jpg", "darker.jpg"], [photo_print(p) for p in (photo, *copies)],
                                        "converted")
    assert groups == [[0, 1, 2]]
    assert [(e["file"], e["near_copy_of"]) for e in entries] == [("grey.jpg", "a.jpg"), ("darker.jpg", "a.jpg")]
    assert entries[0]["reason"].startswith("its pixels are those of a.jpg made greyscale (seen small and upright, in "
                                           "luminance, no value differs by more than")
    assert entries[1]["reason"].startswith("its pixels are those of a.jpg made darker (seen small and upright, matched "
                                           "in brightness and contrast, no value differs by more than")
