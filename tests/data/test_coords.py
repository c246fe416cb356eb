"""The coordinate contract: smart_resize, stored <-> model frame, EXIF orientation, vendor frame."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps

from bbuvl.data.coords import (
    MAX_ASPECT,
    CoordinateContract,
    VendorFrame,
    box_inside,
    orient_box,
    oriented_size,
    resolve_vendor_frame,
    smart_resize,
    vendor_to_stored,
)

sizes = st.tuples(st.integers(28, 4000), st.integers(28, 4000)).filter(lambda s: max(s) / min(s) <= 200)
pixels = st.sampled_from([(3136, 1003520), (12544, 50176), (256 * 28 * 28, 1280 * 28 * 28), (3136, 12845056)])


@st.composite
def box_in(draw, size):
    w, h = size
    x1 = draw(st.floats(0, w - 1))
    y1 = draw(st.floats(0, h - 1))
    x2 = draw(st.floats(x1 + 1, w))
    y2 = draw(st.floats(y1 + 1, h))
    return [x1, y1, x2, y2]


def _transformers_smart_resize():
    try:  # transformers 5: the PIL image processor's module (the other one needs torchvision)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf
    except ImportError:  # transformers 4
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf
    return hf


@settings(deadline=None)  # the first call imports transformers
@given(sizes, pixels)
def test_smart_resize_obeys_qwen_rules_and_equals_transformers(size, px):
    w, h = size
    hb, wb = smart_resize(h, w, min_pixels=px[0], max_pixels=px[1])
    assert hb % 28 == 0 and wb % 28 == 0
    assert hb * wb <= px[1] or min(hb, wb) == 28  # Qwen never goes below one patch on the short side
    assert hb * wb >= px[0]
    assert (hb, wb) == tuple(_transformers_smart_resize()(h, w, factor=28, min_pixels=px[0], max_pixels=px[1]))


strips = st.tuples(st.integers(1, 120), st.floats(100, MAX_ASPECT), st.booleans()).map(
    lambda t: (max(t[0], math.floor(t[0] * t[1])), t[0])[::-1 if t[2] else 1])
bounds = st.sampled_from([(3136, 1003520, 1280), (3136, 1003520, None), (50176, 50176, 64), (12544, 50176, None),
                          (3136, 150528, 250), (200704, 1003520, 1280)])


@settings(max_examples=400, deadline=None)
@given(strips, bounds, st.sampled_from(["qwen2_5_vl", "qwen3_vl"]))
@example((7919, 41), (3136, 1003520, 1280), "qwen2_5_vl")  # 193:1, which smart_resize alone frames at 7924x28
def test_no_frame_passes_the_aspect_limit_and_the_processor_takes_it_as_it_is(size, bound, family):
    """A photo up to MAX_ASPECT:1 gets a frame no further from square, in whole cells, that the image processor's
    smart_resize keeps as it is (encode/chat.py hands it the frame), and smart_resize's own frame wherever that is
    within the limit: a stock processor given the photo frames it alike."""
    c = CoordinateContract(bound[0], bound[1], max_vision_tokens=bound[2], family=family)
    f = c.factor
    w, h = c.model_size(size)
    assert w % f == 0 and h % f == 0 and max(w, h) <= MAX_ASPECT * min(w, h)
    assert smart_resize(h, w, f, w * h, w * h) == (h, w)
    low, high = (f * f, bound[2] * f * f) if c.over_budget(size) else bound[:2]
    sh, sw = smart_resize(size[1], size[0], f, low, high)
    if max(sw, sh) <= MAX_ASPECT * min(sw, sh):
        assert (w, h) == (sw, sh)
    else:  # the long side is cut to the limit: fewer pixels, never past the bounds or the budget
        assert min(w, h) == min(sw, sh) and max(w, h) == MAX_ASPECT * min(sw, sh) < max(sw, sh)
    assert c.vision_tokens(size) == (w // f) * (h // f)


def test_a_strip_rounding_carries_past_the_aspect_limit_is_framed_at_the_limit():
    c = CoordinateContract(3136, 1003520, max_vision_tokens=1280)
    assert c.model_size((7919, 41)) == (5600, 28) and c.model_size((41, 7919)) == (28, 5600)
    assert CoordinateContract(3136, 1003520, family="qwen3_vl").model_size((7919, 41)) == (6400, 32)


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(ValueError, match="aspect"):
        smart_resize(28, 28 * 201)


@settings(max_examples=300)
@given(st.data(), sizes, pixels)
def test_model_frame_round_trip_within_one_model_pixel(data, size, px):
    c = CoordinateContract(*px)
    mw, mh = c.model_size(size)
    mbox = data.draw(box_in((mw, mh)))
    mbox = [round(v) for v in mbox]
    back = c.to_model(c.to_stored(mbox, size), size)
    assert max(abs(a - b) for a, b in zip(back, mbox)) <= 1


@settings(max_examples=300)
@given(st.data(), sizes, pixels)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_stored_round_trip_error_is_at_most_one_pixel_after_rounding(data, size, px):
    """Stored -> model (integers) -> stored loses at most half a model pixel, or one where a side under one model
    pixel is widened to one."""
    c = CoordinateContract(*px)
    mw, mh = c.model_size(size)
    box = data.draw(box_in(size))
    back = c.to_stored(c.to_model(box, size), size)
    sx, sy = size[0] / mw, size[1] / mh
    for i, (a, b) in enumerate(zip(box, back)):
        scale = sx if i % 2 == 0 else sy
        lo, hi = (box[0], box[2]) if i % 2 == 0 else (box[1], box[3])
        widened = round(hi / scale) == round(lo / scale)  # a side under one model pixel is written one wide
        assert abs(a - b) / scale <= (1.0 if widened else 0.5) + 1e-6
    assert box_inside(back, size)
    assert back[2] > back[0] and back[3] > back[1]


def test_a_side_under_one_unit_is_written_one_unit_wide():
    """The answer grammar writes no box without area, so training never asks for one (data/coords.py)."""
    c = CoordinateContract(12544, 50176)
    size = (4000, 3000)
    mw, mh = c.model_size(size)
    x, y = 100 * mw / 4000, 100 * mh / 3000  # where the stored pixel 100 lands in the model frame
    box = c.to_model([100.0, 100.0, 101.0, 101.0], size)
    assert box[2] - box[0] == 1 and box[3] - box[1] == 1
    assert box[0] <= x <= box[2] and box[1] <= y <= box[3]  # the unit that holds the part
    assert c.to_model([3999.5, 2999.5, 4000.0, 3000.0], size) == [mw - 1, mh - 1, mw, mh]
    assert c.to_model([0.0, 0.0, 0.2, 0.2], size) == [0, 0, 1, 1]


def test_a_zero_width_box_on_the_far_edge_is_written_as_the_last_unit_inside_the_frame():
    # Rounded, its two ends are the frame's side and its middle is no lower: the unit is the one before the edge, not
    # the one past it (data/coords.py round_box_with_area).
    c = CoordinateContract(12544, 50176)
    size = (4000, 3000)
    mw, mh = c.model_size(size)
    assert c.to_model([4000.0, 1000.0, 4000.0, 2000.0], size)[0::2] == [mw - 1, mw]
    assert c.to_model([1000.0, 3000.0, 2000.0, 3000.0], size)[1::2] == [mh - 1, mh]
    for box in ([4000.0, 0.0, 4000.0, 3000.0], [0.0, 3000.0, 4000.0, 3000.0]):
        assert box_inside(c.to_model(box, size), (mw, mh))


def _marked(size: tuple[int, int], box: tuple[int, int, int, int], orientation: int) -> Image.Image:
    """A white photo of `size` with a red `box` on its raw pixel grid, tagged with EXIF `orientation`, read back."""
    import io

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())
    buf.seek(0)
    return Image.open(buf)


def _red(img: Image.Image) -> list[int]:
    a = np.asarray(img.convert("RGB")).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 1] < 100))
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_box_on_the_raw_grid_lands_where_pillow_shows_it_for_every_exif_orientation(orientation):
    # Pillow's exif_transpose is what a viewer shows and what is stored; a box off the middle and wider than high, in
    # a photo wider than high, tells every mirror and turn apart (corners swapped, axes swapped, one side mirrored).
    raw, box = (64, 48), (10, 5, 30, 15)
    shown = ImageOps.exif_transpose(_marked(raw, box, orientation))
    assert oriented_size(raw, orientation) == shown.size
    assert orient_box(box, raw, orientation) == _red(shown)


@pytest.mark.parametrize("orientation, frame, expected", [
    (1, "oriented", [20.0, 63.0, 200.0, 126.0]),  # the photo as drawn on: each side by its own axis's ratio
    (6, "raw", [63.0, 20.0, 126.0, 200.0]),  # its raw grid: scaled on that grid first, then turned upright
])
def test_a_vendor_box_is_scaled_by_each_axis_own_ratio(orientation, frame, expected):
    # 128x96 against a 256x189 grid: aspects 1.6 % apart, inside the tolerance, so x and y scale apart (2 and 1.96875,
    # both exact in binary) and the numbers are exact.
    f = resolve_vendor_frame((128, 96), (256, 189), orientation)
    assert (f.annotated_on, f.scale, f.ambiguous) == (frame, (2.0, 1.96875), False)
    assert vendor_to_stored([10, 32, 100, 64], f, (256, 189), orientation) == expected


@pytest.mark.parametrize("raw", [(1000, 990), (1000, 991), (100, 99), (99, 100), (4032, 3990)])
@pytest.mark.parametrize("orientation", [6, 8])
def test_a_square_annotation_of_a_nearly_square_turned_photo_is_read_as_displayed_and_said_to_be_assumed(raw,
                                                                                                          orientation):
    # Its shape is as near the raw grid's as the displayed one's: the sizes cannot tell them apart, so it is read as
    # viewers show the photo, as a square photo's is (docs/data_coco.md). Compared as two logs, rounding chose: 1000x990
    # was read on its raw grid (its boxes turned a quarter) and 1000x991 as displayed.
    shown = oriented_size(raw, orientation)
    f = resolve_vendor_frame((500, 500), raw, orientation)
    assert (f.annotated_on, f.ambiguous) == ("oriented", True)
    assert vendor_to_stored([50, 100, 250, 400], f, raw, orientation) == pytest.approx(
        [50 * shown[0] / 500, 100 * shown[1] / 500, 250 * shown[0] / 500, 400 * shown[1] / 500], abs=1e-9)


def test_a_nearly_square_annotation_of_a_nearly_square_turned_photo_is_read_on_the_nearer_grid():
    raw = (1000, 990)
    assert resolve_vendor_frame((1000, 991), raw, 6) == VendorFrame("raw", (1.0, 990 / 991), False)
    assert resolve_vendor_frame((991, 1000), raw, 6) == VendorFrame("oriented", (990 / 991, 1.0), False)
    # A photo shown flipped, or square and turned, has one shape on both grids: displayed, and said to be assumed.
    assert resolve_vendor_frame((500, 500), (1000, 1000), 6) == VendorFrame("oriented", (2.0, 2.0), True)
    assert resolve_vendor_frame((500, 495), (1000, 990), 3) == VendorFrame("oriented", (2.0, 2.0), True)
    assert resolve_vendor_frame((500, 495), (1000, 990), 1) == VendorFrame("oriented", (2.0, 2.0), False)
