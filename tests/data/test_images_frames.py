"""A file holding several pictures (an animated PNG or WebP, a multi-page TIFF) is refused naming it and its frame
count, as a GIF is refused: Pillow reads it as its first frame, and predict, serve and the data commands answered for
that frame alone without a word. One picture of those formats is still a photo."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.images import ImageError, load_image, open_image

KINDS = {"PNG": ("a.png", "an animated PNG of 3 frames"), "WEBP": ("a.webp", "an animated WebP of 3 frames"),
         "TIFF": ("a.tif", "a multi-page TIFF of 3 pages")}


def pictures(image_format: str, frames: int, **options) -> bytes:
    """A 64x48 file of `image_format` holding `frames` pictures, each of another colour."""
    images = [Image.new("RGB", (64, 48), (60 * i, 90, 200)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, image_format, save_all=True, append_images=images[1:], **options)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", KINDS)
def test_a_file_of_several_pictures_is_refused_naming_it_and_its_frames(tmp_path, image_format):
    name, what = KINDS[image_format]
    path = tmp_path / name
    path.write_bytes(pictures(image_format, 3))
    with pytest.raises(ImageError) as decoded:
        load_image(path)
    with pytest.raises(ImageError) as header:  # `data check --no-decode`, `doctor`, near copies
        with open_image(path, decode=False):
            pass
    for said in (decoded, header):
        assert str(said.value).startswith(f"{path}: {what}; "), said.value
        assert "only the first would be read" in str(said.value)


@pytest.mark.parametrize("image_format", KINDS)
def test_one_picture_of_those_formats_is_still_a_photo(tmp_path, image_format):
    path = tmp_path / KINDS[image_format][0]
    path.write_bytes(pictures(image_format, 1))
    assert load_image(path).size == (64, 48)


def test_a_tiffs_reduced_resolution_pages_are_no_pages_of_their_own(tmp_path):
    # NewSubfileType 1 on each page past the first: a pyramid's levels, or a preview, of the one picture
    path = tmp_path / "pyramid.tif"
    path.write_bytes(pictures("TIFF", 3, tiffinfo={254: 1}))
    assert load_image(path).image.getpixel((0, 0)) == (0, 90, 200)


def test_data_check_names_a_file_of_several_pictures(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(pictures("PNG", 4))
    record = {"images": ["images/a.png"], "width": 64, "height": 48,
              "objects": [{"bbox_2d": [4, 4, 20, 20], "desc": "线缆"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    for decode in (True, False):
        (problem,) = [p for p in check_dataset(tmp_path / "train.jsonl", decode_images=decode) if p.severity == "error"]
        assert f"{Path('images') / 'a.png'}: an animated PNG of 4 frames" in problem.message, problem.message
