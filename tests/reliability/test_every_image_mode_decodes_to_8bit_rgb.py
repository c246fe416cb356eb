"""Class 4: every mode Pillow can return decodes to the right 8-bit RGB, read back from a real file."""

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.images import load_image

GREY = np.array([[0, 64], [128, 255]], dtype=np.uint8)  # the 8-bit grey every wide mode below encodes
EXPECTED = np.repeat(GREY[:, :, None], 3, axis=2)


def saved(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def cases(tmp_path):
    """(name, file, expected RGB array, conversion note expected?) for each mode, written and re-opened for real."""
    g16 = (GREY.astype(np.uint16) * 257)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=4)
    transparent_index = pal.getpixel((0, 0))
    rgba = np.dstack([rgb, np.array([[0, 255], [255, 255]], dtype=np.uint8)])  # top-left fully transparent
    white_tl = rgb.copy()
    white_tl[0, 0] = 255
    binary = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    return [
        ("1", saved(Image.fromarray(binary).convert("1"), tmp_path / "one.png"), np.repeat(binary[:, :, None], 3, 2), False),
        ("L", saved(Image.fromarray(GREY, "L"), tmp_path / "l.png"), EXPECTED, False),
        ("LA", saved(Image.fromarray(np.dstack([GREY, np.full_like(GREY, 255)]), "LA"), tmp_path / "la.png"), EXPECTED, False),
        ("P+transparency", saved(pal, tmp_path / "p.png", transparency=transparent_index), white_tl, True),
        ("I;16", saved(Image.fromarray(g16), tmp_path / "g16.png"), EXPECTED, True),
        ("I;16B", saved(Image.fromarray(g16.astype(">u2")), tmp_path / "g16b.tif"), EXPECTED, True),
        ("I", saved(Image.fromarray(g16.astype(np.int32), "I"), tmp_path / "i32.tif"), EXPECTED, True),
        ("F", saved(Image.fromarray(GREY.astype(np.float32) / 255.0, "F"), tmp_path / "f.tif"), EXPECTED, True),
        ("CMYK", saved(Image.fromarray(rgb).convert("CMYK"), tmp_path / "cmyk.tif"), rgb, False),
        ("RGBA", saved(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"), white_tl, True),
    ]


@pytest.mark.parametrize("index", range(10))
def test_each_mode_decodes_to_the_right_8bit_rgb(tmp_path, index):
    name, path, expected, noted = cases(tmp_path)[index]
    loaded = load_image(path)
    got = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB" and got.dtype == np.uint8, name
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, (name, loaded.mode, got.tolist())
    assert (loaded.conversion is not None) == noted, (name, loaded.mode, loaded.conversion)


def test_a_16bit_png_is_not_turned_white(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    path = saved(Image.fromarray(ramp), tmp_path / "ramp16.png")
    got = np.asarray(load_image(path).image)[:, :, 0]
    assert (got == 255).mean() < 0.01 and abs(float(got.mean()) - 127.5) < 2


def test_data_check_says_when_an_image_needed_more_than_a_plain_conversion(tmp_path):
    (tmp_path / "images").mkdir()
    saved(Image.fromarray((GREY.astype(np.uint16) * 257)), tmp_path / "images" / "g16.png")
    # Another picture (its negative): the same one in 8 bits, or flipped or turned, would be the 16-bit one's
    # near-copy, which check warns of too.
    saved(Image.fromarray(255 - GREY, "L"), tmp_path / "images" / "l.png")
    rows = ['{"images": ["images/g16.png"], "width": 2, "height": 2, "objects": []}',
            '{"images": ["images/l.png"], "width": 2, "height": 2, "objects": []}']
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    problems = check_dataset(tmp_path / "train.jsonl")
    assert [(p.line, p.severity) for p in problems] == [(1, "warning")]
    assert "16-bit grey (I;16) scaled to 8 bits" in problems[0].message


def one_pass(a: np.ndarray, mode: str) -> np.ndarray:
    """The wide modes' rescaling over the whole photo at once, in 64-bit floats: what the rows at a time must equal."""
    f = a.astype(np.float64)
    finite = f[np.isfinite(f)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = 255.0 / (hi - lo) if hi > lo else 0.0, lo
    return np.clip(np.rint((np.nan_to_num(f, nan=lo, posinf=hi, neginf=lo) - offset) * scale), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("case", ["I;16", "I", "I stretched", "F in [0, 1]", "F stretched", "F with nan and inf",
                                  "F all nan"])
def test_wide_modes_rescaled_a_few_rows_at_a_time_equal_one_pass_over_the_photo(case, monkeypatch, tmp_path):
    # 37 x 23 pixels, 40 pixels a chunk: one row at a time, the extremes in different rows.
    import bbuvl.data.images as images

    monkeypatch.setattr(images, "WIDE_CHUNK_PIXELS", 40)
    rng = np.random.default_rng(7)
    a = {"I;16": lambda: rng.integers(0, 65536, (37, 23)).astype(np.uint16),
         "I": lambda: rng.integers(0, 60000, (37, 23)).astype(np.int32),
         "I stretched": lambda: rng.integers(-70000, 90000, (37, 23)).astype(np.int32),
         "F in [0, 1]": lambda: rng.random((37, 23), dtype=np.float32),
         "F stretched": lambda: (rng.standard_normal((37, 23)) * 1e4).astype(np.float32),
         "F with nan and inf": lambda: np.where(rng.random((37, 23)) < 0.1, np.nan,
                                                np.where(rng.random((37, 23)) < 0.05, np.inf,
                                                         rng.standard_normal((37, 23)) * 300)).astype(np.float32),
         "F all nan": lambda: np.full((37, 23), np.nan, np.float32)}[case]()
    img = Image.fromarray(a) if a.dtype == np.uint16 else Image.fromarray(a, "I" if a.dtype == np.int32 else "F")
    path = saved(img, tmp_path / "wide.tif")
    with Image.open(path) as back:
        back.load()
        rgb, _ = images.convert_to_rgb(back)
        expected = one_pass(np.asarray(back), back.mode)
    assert np.array_equal(np.asarray(rgb), np.repeat(expected[:, :, None], 3, axis=2))
