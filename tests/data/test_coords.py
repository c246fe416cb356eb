"""The coordinate contract: smart_resize, stored <-> model frame, EXIF orientation, vendor frame."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from bbuvl.data.coords import (
    CoordinateContract,
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
def test_stored_round_trip_error_is_at_most_one_pixel_after_rounding(data, size, px):
    """Stored -> model (integers) -> stored loses at most half a model pixel, i.e. <= 1 px once rounded in the model frame's scale."""
    c = CoordinateContract(*px)
    mw, mh = c.model_size(size)
    box = data.draw(box_in(size))
    back = c.to_stored(c.to_model(box, size), size)
    sx, sy = size[0] / mw, size[1] / mh
    for i, (a, b) in enumerate(zip(box, back)):
        scale = sx if i % 2 == 0 else sy
        assert abs(a - b) / scale <= 0.5 + 1e-6  # half a model pixel
    assert box_inside(back, size)


@given(st.data(), sizes, pixels)
def test_boxes_stay_inside_both_frames(data, size, px):
    c = CoordinateContract(*px)
    box = data.draw(box_in(size))
    m = c.to_model(box, size)
    assert box_inside(m, c.model_size(size))
    # a box sticking out is clipped, never outside
    out = [box[0] - 50, box[1] - 50, box[2] + 50, box[3] + 50]
    assert box_inside(c.to_model(out, size), c.model_size(size))
    assert box_inside(c.to_stored(c.to_model(out, size), size), size)


def test_vision_tokens_match_grid():
    c = CoordinateContract(12544, 50176)
    w, h = c.model_size((448, 336))
    assert c.vision_tokens((448, 336)) == (w // 14) * (h // 14) // 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_box_matches_pil_exif_transpose(orientation):
    raw = (60, 40)
    arr = np.zeros((raw[1], raw[0]), dtype=np.uint8)
    box = [7, 5, 23, 17]
    arr[box[1] : box[3], box[0] : box[2]] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    img._exif = exif  # exif_transpose reads getexif()
    shown = np.asarray(ImageOps.exif_transpose(img))
    assert (shown.shape[1], shown.shape[0]) == oriented_size(raw, orientation)
    ys, xs = np.nonzero(shown)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == orient_box(box, raw, orientation)


def test_vendor_frame_decided_from_sizes():
    raw = (400, 300)  # pixels as stored in the file, EXIF 6 => shown as 300x400
    f = resolve_vendor_frame((300, 400), raw, 6)
    assert f.annotated_on == "oriented" and f.scale == (1.0, 1.0)
    f = resolve_vendor_frame((400, 300), raw, 6)
    assert f.annotated_on == "raw"
    assert vendor_to_stored([10, 20, 30, 40], f, raw, 6) == orient_box([10, 20, 30, 40], raw, 6)
    f = resolve_vendor_frame((150, 200), raw, 6)  # annotator saw a half-size upright copy
    assert f.annotated_on == "oriented" and f.scale == (2.0, 2.0)
    with pytest.raises(ValueError, match="matches neither"):
        resolve_vendor_frame((500, 500), raw, 6)
    with pytest.raises(ValueError, match="does not match"):
        resolve_vendor_frame((300, 400), raw, 1)
    assert resolve_vendor_frame((400, 300), raw, 3).ambiguous


def test_contract_saved_and_loaded(tmp_path):
    c = CoordinateContract(1000, 2000)
    c.save(tmp_path)
    assert CoordinateContract.load(tmp_path) == c
    with pytest.raises(FileNotFoundError, match="coordinate_contract.json"):
        CoordinateContract.load(tmp_path / "missing")


@given(w=st.integers(28, 4000), h=st.integers(28, 4000), budget=st.integers(1, 400))
@settings(max_examples=200, deadline=None)
def test_the_token_budget_shrinks_only_photos_over_it(w, h, budget):
    if max(w, h) / min(w, h) > min(50, budget):  # a frame is at least one 28-px cell on its short side
        return
    free = CoordinateContract(56 * 56, 28 * 28 * 1280)
    framed = CoordinateContract(56 * 56, 28 * 28 * 1280, max_vision_tokens=budget)
    if free.vision_tokens((w, h)) <= budget:
        assert not framed.over_budget((w, h)) and framed.model_size((w, h)) == free.model_size((w, h))
    else:
        assert framed.over_budget((w, h))
        assert framed.vision_tokens((w, h)) <= budget
        box = [0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h]
        back = framed.to_stored(framed.to_model(box, (w, h)), (w, h))
        cell_w, cell_h = w / framed.model_size((w, h))[0], h / framed.model_size((w, h))[1]
        assert all(abs(a - b) <= max(cell_w, cell_h) for a, b in zip(back, box))


@pytest.mark.parametrize("kwargs", [dict(min_pixels=9000, max_pixels=100), dict(min_pixels=0), dict(factor=-28),
                                    dict(max_vision_tokens=0), dict(max_pixels=1.5), dict(min_pixels=True)])
def test_a_bad_frame_is_refused_where_it_is_built(kwargs):
    with pytest.raises(ValueError):
        CoordinateContract(**kwargs)


def test_the_budget_travels_with_the_contract(tmp_path):
    c = CoordinateContract(3136, 50176, max_vision_tokens=16)
    c.save(tmp_path)
    assert CoordinateContract.load(tmp_path) == c
    (tmp_path / "coordinate_contract.json").write_text('{"min_pixels": 3136, "max_pixels": 50176, "factor": 28}')
    assert CoordinateContract.load(tmp_path).max_vision_tokens is None  # checkpoints saved before the budget was kept


def test_a_checkpoint_that_is_missing_or_a_file_is_named_as_such_and_its_contract_file_is_read(tmp_path):
    # A missing checkpoint was "<it>/coordinate_contract.json: missing", a file in one "<file>/coordinate_contract.json:
    # Not a directory", a path no one typed.
    from bbuvl.config import resolve_frame

    folder = tmp_path / "ckpt"
    CoordinateContract(min_pixels=12544, max_pixels=150528).save(folder)
    (folder / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'gone'}: no such folder \(the checkpoint folder"):
        resolve_frame(checkpoint=tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match=rf"^{folder / 'model.safetensors'}: a file; give the checkpoint folder "
                                                rf"saved by bbuvl train, holding coordinate_contract.json: {folder}$"):
        resolve_frame(checkpoint=folder / "model.safetensors")
    assert resolve_frame(checkpoint=folder / "coordinate_contract.json").max_pixels == 150528  # as eval's --frame takes it
    assert resolve_frame(checkpoint=folder).max_pixels == 150528
