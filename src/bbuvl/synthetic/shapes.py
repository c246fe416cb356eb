"""Shapes: the sanity task for the whole vision -> language -> box chain.

Flat coloured shapes on a plain muted background, 1-3 per photo, each labelled by its COLOUR alone
(the form - rectangle, ellipse or triangle - is noise the model must ignore). Every box side is 15-40 %
of the photo's side and boxes sit uniformly at random without overlapping, so no constant box scores
(`bbuvl.eval.prior.best_constant_box` measures how little). Boxes are the tight pixel box of what was
drawn, integers in the stored image. The four colours and their labels are in docs/synthetic_scenes.md.

With `object_px=(lo, hi)` every box side is instead lo..hi pixels: the small-object variant, whose parts sit
below one vision token at the model's frame (docs/synthetic_scenes.md, "Small shapes").

Photo `i` depends only on its seed; the dataset is written by `bbuvl.synthetic.dataset.synthesize`, so the
folder is the same as the equipment room's and byte-identical for a seed whatever the workers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Literal

from PIL import Image, ImageDraw

from bbuvl.data.schema import ObjectAnn, sort_objects
from bbuvl.synthetic.camera import check_size
from bbuvl.synthetic.dataset import synthesize

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeClass:
    """One class: a strongly distinct hue and the real label it stands for."""

    colour: str
    rgb: RGB
    label: str


# Four categories of the shipped hierarchy, one per hierarchy depth (2, 3, 2, 1 parts), so label accuracy
# is exercised at every level; the colours are mnemonic (Huawei red, "correct" green, sticker yellow).
SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("red", (216, 38, 38), "bbu基带处理单元/华为"),
    ShapeClass("green", (34, 168, 60), "螺丝连接点/BBU安装螺丝/连接正确"),
    ShapeClass("blue", (38, 78, 218), "挡风板/已安装"),
    ShapeClass("yellow", (238, 202, 30), "标签贴纸"),
)
SHAPE_LABELS = tuple(c.label for c in SHAPE_CLASSES)
FORMS = ("rectangle", "ellipse", "triangle")
SIDE_RANGE = (0.15, 0.40)  # box width / photo width and box height / photo height, drawn independently
MAX_SHAPES = 8  # rejection sampling places 8 in ~2 ms a photo; at 10 one photo in 100 found no room, at 11 two in 5
COLOUR_JITTER = 10  # per channel: a class is a hue, not one exact pixel value
# Background: a grey with a slight tint per channel. Its chroma (max - min channel) is at most 16 where every
# class colour's is above 110 after jitter, and no background comes within 70 RGB units of one.
BACKGROUND_GREY = (80, 190)
BACKGROUND_TINT = 8
GAP = 2  # pixels between boxes, so JPEG blur of one shape never falls inside another's box
_PLACE_TRIES, _RESTARTS = 100, 200


def _jitter(rng: random.Random, rgb: RGB, amount: int) -> RGB:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def background_colour(rng: random.Random) -> RGB:
    """A grey or muted tone, far from every class colour."""
    return _jitter(rng, (rng.randint(*BACKGROUND_GREY),) * 3, BACKGROUND_TINT)


MIN_OBJECT_PX = 4  # below this a triangle's tight box is a few pixels of JPEG blur


def check_request(size: tuple[int, int], min_objects: int, max_objects: int,
                  object_px: tuple[int, int] | None = None) -> None:
    """Raise ValueError for a photo too small, an object count or an object size the scene cannot place."""
    check_size(size)
    if not 1 <= min_objects <= max_objects <= MAX_SHAPES:
        raise ValueError(f"objects per photo (--min-objects, --max-objects) must satisfy 1 <= min ({min_objects}) <= max "
                         f"({max_objects}) <= {MAX_SHAPES}")
    if object_px is not None:
        lo, hi = object_px
        if not MIN_OBJECT_PX <= lo <= hi:
            raise ValueError(f"object sides (--object-px) must satisfy {MIN_OBJECT_PX} <= min ({lo}) <= max ({hi}) pixels")
        if hi > min(size) // 2:
            raise ValueError(f"object sides (--object-px) up to {hi} px do not leave room for {max_objects} shapes in a "
                             f"{size[0]}x{size[1]} photo: keep them at most half its shorter side ({min(size) // 2} px)")


def side_ranges(size: tuple[int, int], object_px: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """(min, max) box width and height in pixels: SIDE_RANGE of the photo's sides, or `object_px` for both."""
    if object_px is not None:
        return object_px, object_px
    w, h = size
    return ((math.ceil(SIDE_RANGE[0] * w), math.floor(SIDE_RANGE[1] * w)),
            (math.ceil(SIDE_RANGE[0] * h), math.floor(SIDE_RANGE[1] * h)))


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] + GAP and b[0] < a[2] + GAP and a[1] < b[3] + GAP and b[1] < a[3] + GAP


def place_boxes(rng: random.Random, size: tuple[int, int], n: int,
                object_px: tuple[int, int] | None = None) -> list[Box]:
    """`n` non-overlapping boxes, sides from `side_ranges`, positions uniform (rejection sampling)."""
    w, h = size
    (wlo, whi), (hlo, hhi) = side_ranges(size, object_px)
    for _ in range(_RESTARTS):  # a photo whose last box finds no room starts again: every layout stays equally likely
        boxes: list[Box] = []
        for _ in range(n):
            for _ in range(_PLACE_TRIES):
                bw, bh = rng.randint(wlo, whi), rng.randint(hlo, hhi)
                x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
                box = (x, y, x + bw, y + bh)
                if not any(_overlap(box, b) for b in boxes):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == n:
            return boxes
    raise ValueError(f"could not place {n} non-overlapping shapes in a {w}x{h} photo")


def _draw_form(draw: ImageDraw.ImageDraw, form: str, w: int, h: int, rng: random.Random) -> None:
    """Fill `form` so that it touches all four sides of the `w` x `h` mask."""
    if form == "rectangle":
        draw.rectangle([0, 0, w - 1, h - 1], fill=255)
    elif form == "ellipse":
        draw.ellipse([0, 0, w - 1, h - 1], fill=255)
    else:  # a triangle with its base on one side and its apex anywhere along the opposite one
        side, t = rng.randrange(4), rng.random()
        ax, ay = round(t * (w - 1)), round(t * (h - 1))
        draw.polygon({0: [(0, h - 1), (w - 1, h - 1), (ax, 0)], 1: [(0, 0), (w - 1, 0), (ax, h - 1)],
                      2: [(0, 0), (0, h - 1), (w - 1, ay)], 3: [(w - 1, 0), (w - 1, h - 1), (0, ay)]}[side], fill=255)


def render_shapes(seed: int, size: tuple[int, int], min_objects: int = 1, max_objects: int = 3,
                  object_px: tuple[int, int] | None = None) -> tuple[Image.Image, list[ObjectAnn]]:
    """One photo of `size` with `min_objects`..`max_objects` shapes and their tight boxes, sorted by (y1, x1)."""
    check_request(size, min_objects, max_objects, object_px)
    rng = random.Random(seed)
    img = Image.new("RGB", size, background_colour(rng))
    objects = []
    for x1, y1, x2, y2 in place_boxes(rng, size, rng.randint(min_objects, max_objects), object_px):
        cls, form = rng.choice(SHAPE_CLASSES), rng.choice(FORMS)
        mask = Image.new("L", (x2 - x1, y2 - y1), 0)
        _draw_form(ImageDraw.Draw(mask), form, *mask.size, rng)
        img.paste(_jitter(rng, cls.rgb, COLOUR_JITTER), (x1, y1, x2, y2), mask)
        mx1, my1, mx2, my2 = mask.getbbox()  # the drawn pixels, not the planned box: tight by construction
        objects.append(ObjectAnn(bbox_2d=[float(x1 + mx1), float(y1 + my1), float(x1 + mx2), float(y1 + my2)], desc=cls.label))
    return img, sort_objects(objects)


def synthesize_shapes(
    out: Path,
    n_train: int,
    n_val: int,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    min_objects: int = 1,
    max_objects: int = 3,
    object_px: tuple[int, int] | None = None,
    fmt: Literal["jsonl", "vendor"] = "jsonl",
    num_teachers: int = 10,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a shapes dataset folder (or platform export) into `out`, laid out like `bbuvl data synth`'s; returns its summary."""
    check_request(size, min_objects, max_objects, object_px)
    render = partial(render_shapes, min_objects=min_objects, max_objects=max_objects, object_px=object_px)
    about = {"scene": "shapes", "objects_per_photo": [min_objects, max_objects]}
    if object_px is not None:
        about["object_px"] = list(object_px)
    return synthesize(out, n_train, n_val, seed=seed, size=size, fmt=fmt, num_teachers=num_teachers, workers=workers,
                      progress=progress, render=render, about=about)
