"""The one coordinate contract: stored image <-> model frame <-> answer coordinates <-> vendor frame.

Every Qwen VL family resizes an image with `smart_resize` (sides multiples of the family's factor, pixel count
within [min_pixels, max_pixels]). Qwen2.5-VL then reads and writes boxes in absolute pixels of that resized
image; Qwen3-VL and Qwen3.5 write integers relative to the image's sides, 0 to 1000 (data/families.py).
Datasets stay family-neutral, in stored-image pixels: every conversion between the stored file, the model
frame, a family's answer coordinates and the frame an annotator saw lives here (docs/families.md).
Sizes are always `(width, height)`; boxes are always `[x1, y1, x2, y2]` (left, top, right, bottom).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

from PIL import Image

from bbuvl.atomic import write_text_atomic
from bbuvl.data.jsonfile import json_kind, read_json
from bbuvl.data.families import DEFAULT_FAMILY, RELATIVE_SCALE, BoxConvention, family_of, get_family

Box = list[float]
Size = tuple[int, int]

FACTOR = 28  # Qwen2.5-VL: patch 14 x spatial merge 2
MAX_ASPECT = 200
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280
CONTRACT_FILE = "coordinate_contract.json"
EXPORT_FRAME_FILE = "bbuvl_frame.json"  # `bbuvl model export`: the frame its checkpoint trained in, budget included


@lru_cache(maxsize=65536)
def _smart_resize_rule(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers' Qwen2-VL `smart_resize`, line for line (cached: every record of a dataset asks it again).

    Not imported from transformers: its module pulls in torch and the image processors (6-7 s on 2 cores), which
    `eval`, `data check` and the other data-only commands should not pay. A property test holds it equal to
    transformers' own function over random sizes and pixel bounds.
    """
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def aspect_problem(size: Size) -> str | None:
    """Why no model frame holds a `size` photo (sides further apart than MAX_ASPECT:1, which Qwen's image processor
    refuses), as advice; None when one does."""
    w, h = size
    if w <= 0 or h <= 0 or max(w, h) <= MAX_ASPECT * min(w, h):
        return None
    return (f"{w}x{h}, {max(w, h) / min(w, h):.1f} times as {'wide' if w > h else 'tall'} as it is "
            f"{'tall' if w > h else 'wide'}: the model frame takes at most {MAX_ASPECT}:1 (crop or split the photo)")


def smart_resize(
    height: int, width: int, factor: int = FACTOR, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS
) -> tuple[int, int]:
    """Qwen's resize rule: `(height, width)` of the model frame for an image of `height` x `width`."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} exceeds {MAX_ASPECT}")
    return _smart_resize_rule(height, width, factor, min_pixels, max_pixels)


def within_aspect(frame: Size) -> Size:
    """A `smart_resize` frame with its long side cut to MAX_ASPECT times its short one where rounding carried it past.

    smart_resize checks the photo's aspect, then rounds each side to whole cells: a 7919x41 strip (193:1) keeps one
    cell of height and becomes 7924x28 (283:1), which every image processor refuses when the frame is handed to it
    (encode/chat.py hands it the frame, resized already). Cutting the long side keeps the frame within the token
    budget and `max_pixels` (widening the short side would not) and nearer the photo's own aspect: no frame is ever
    further from 1:1 than MAX_ASPECT, which the photo itself was not either (docs/families.md, "An export's frame").
    """
    w, h = frame
    if w > MAX_ASPECT * h:
        return (MAX_ASPECT * h, h)
    if h > MAX_ASPECT * w:
        return (w, MAX_ASPECT * w)
    return frame


def scale_box(box: Sequence[float], src: Size, dst: Size) -> Box:
    """Rescale a box from an image of size `src` to one of size `dst`."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def clip_box(box: Sequence[float], size: Size) -> Box:
    """Clip a box to the image `[0, width] x [0, height]`."""
    w, h = size
    return [min(max(box[0], 0.0), w), min(max(box[1], 0.0), h), min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)]


def box_inside(box: Sequence[float], size: Size, tol: float = 0.0) -> bool:
    """True when the box lies within the image (with `tol` pixels of slack)."""
    w, h = size
    return -tol <= box[0] and -tol <= box[1] and box[2] <= w + tol and box[3] <= h + tol


def box_is_degenerate(box: Sequence[float], min_side: float = 1.0) -> bool:
    """True when the box is inverted or thinner than `min_side` pixels on either side."""
    return (box[2] - box[0]) < min_side or (box[3] - box[1]) < min_side


def round_box(box: Sequence[float]) -> list[int]:
    """Integer box (what the model reads and writes)."""
    return [int(round(v)) for v in box]


def round_box_with_area(box: Sequence[float], extent: Size) -> list[int]:
    """`round_box` of a box inside `[0, W] x [0, H]`, with every side at least one unit.

    A part smaller than a unit of the answer's extent rounds to a side of zero; the answer grammar writes no box
    without area (docs/constrained_decoding.md), so the side becomes the unit nearest the part's middle: each end
    moves at most one unit.
    """
    out = round_box(box)
    for lo, hi, side in ((0, 2, extent[0]), (1, 3, extent[1])):
        if out[hi] > out[lo] or side < 1:
            continue
        r = out[lo]
        below = (box[lo] + box[hi]) / 2 < r
        start = r - 1 if (below and r >= 1) or r >= side else r
        out[lo], out[hi] = start, start + 1
    return out


# --- EXIF orientation --------------------------------------------------------------------------

ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def oriented_size(raw: Size, orientation: int) -> Size:
    """Size of the image after applying EXIF `orientation` (what a viewer shows)."""
    return (raw[1], raw[0]) if orientation in ROTATING_ORIENTATIONS else raw


def orient_box(box: Sequence[float], raw: Size, orientation: int) -> Box:
    """Map a box from the raw pixel grid of a file to its EXIF-oriented grid (PIL's `exif_transpose`)."""
    W, H = raw
    x1, y1, x2, y2 = box
    if orientation in (0, 1):
        return [x1, y1, x2, y2]
    if orientation == 2:  # mirror horizontal
        return [W - x2, y1, W - x1, y2]
    if orientation == 3:  # rotate 180
        return [W - x2, H - y2, W - x1, H - y1]
    if orientation == 4:  # mirror vertical
        return [x1, H - y2, x2, H - y1]
    if orientation == 5:  # transpose
        return [y1, x1, y2, x2]
    if orientation == 6:  # viewer rotates 90 clockwise: (x, y) -> (H - y, x)
        return [H - y2, x1, H - y1, x2]
    if orientation == 7:  # transverse: (x, y) -> (H - y, W - x)
        return [H - y2, W - x2, H - y1, W - x1]
    if orientation == 8:  # viewer rotates 90 counter-clockwise: (x, y) -> (y, W - x)
        return [y1, W - x2, y2, W - x1]
    raise ValueError(f"invalid EXIF orientation {orientation}")


# Pillow's own default for Image.MAX_IMAGE_PIXELS (int(1024 * 1024 * 1024 // 4 // 3)).
PILLOW_DEFAULT_PIXELS = 89_478_485


def pixel_bound() -> int:
    """The pixels an image may hold and still be read without Pillow's decompression-bomb warning: its
    MAX_IMAGE_PIXELS as set now, or its default where a program switched the check off (None), so that what bbu-vl
    writes stays readable by a Pillow that keeps it on."""
    return Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS is not None else PILLOW_DEFAULT_PIXELS


@dataclass(frozen=True)
class VendorFrame:
    """How an annotator's frame relates to the stored (EXIF-oriented) image."""

    annotated_on: Literal["raw", "oriented"]
    scale: tuple[float, float]  # stored/annotated per axis, after choosing the grid
    # True when the sizes could not tell raw from oriented: a flipped photo, a square one turned, or a square annotation
    # of a nearly square turned one (oriented is assumed)
    ambiguous: bool


def resolve_vendor_frame(vendor: Size, raw: Size, orientation: int, aspect_tol: float = 0.02) -> VendorFrame:
    """Decide from sizes alone whether annotations were drawn on the raw or the EXIF-oriented image.

    Raises ValueError when the vendor size matches neither grid's aspect ratio.
    """
    oriented = oriented_size(raw, orientation)
    rotates = orientation in ROTATING_ORIENTATIONS and raw[0] != raw[1]

    def aspect_err(a: Size, b: Size) -> float:
        return abs(math.log((a[0] / a[1]) / (b[0] / b[1])))

    if not rotates:
        if aspect_err(vendor, oriented) > aspect_tol:
            raise ValueError(f"annotated size {vendor[0]}x{vendor[1]} does not match image {oriented[0]}x{oriented[1]}")
        one_shape = orientation in (2, 3, 4) or orientation in ROTATING_ORIENTATIONS  # flipped, or square and turned
        return VendorFrame("oriented", (oriented[0] / vendor[0], oriented[1] / vendor[1]), one_shape)
    if min(aspect_err(vendor, oriented), aspect_err(vendor, raw)) > aspect_tol:
        raise ValueError(
            f"annotated size {vendor[0]}x{vendor[1]} matches neither the raw {raw[0]}x{raw[1]} "
            f"nor the EXIF-rotated {oriented[0]}x{oriented[1]} image"
        )
    # The nearer grid is read from the sides, not from the two aspect errors: the grids are one shape turned, so the
    # oriented one is at least as near exactly when the annotation's long side lies along its long side. A square
    # annotation of a nearly square photo is as near both, and compared as logs rounding chose (1000x991 displayed,
    # 1000x990 the raw grid, its boxes turned a quarter): it is taken as displayed, as viewers show the photo.
    along = (vendor[0] - vendor[1]) * (oriented[0] - oriented[1])
    if along >= 0:
        return VendorFrame("oriented", (oriented[0] / vendor[0], oriented[1] / vendor[1]), along == 0)
    return VendorFrame("raw", (raw[0] / vendor[0], raw[1] / vendor[1]), False)


def vendor_to_stored(box: Sequence[float], frame: VendorFrame, raw: Size, orientation: int) -> Box:
    """Map a box drawn in the annotator's frame to the stored, EXIF-oriented image's pixels."""
    sx, sy = frame.scale
    scaled = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    if frame.annotated_on == "raw":
        return orient_box(scaled, raw, orientation)
    return scaled


# --- the model frame ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinateContract:
    """The image frame a model was trained with and how its answers write boxes.

    Smart_resize bounds, the family's factor, the vision-token budget, and the family's box convention. Built
    once from the run config (`ModelConfig.frame`), saved with every checkpoint and read back by prediction,
    evaluation and serving, so every stage resizes every photo the same way and reads every answer in the
    convention it was trained with (docs/architecture.md, docs/families.md). `factor` and `box_format` default
    to the family's; a saved file that disagrees with its family is refused.
    """

    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS
    factor: int | None = None
    max_vision_tokens: int | None = None  # per image after the 2x2 merge; a larger photo is shrunk to fit
    family: str = DEFAULT_FAMILY
    box_format: BoxConvention | None = None

    def __post_init__(self) -> None:
        fam = get_family(self.family)
        if self.factor is None:
            object.__setattr__(self, "factor", fam.factor)
        if self.box_format is None:
            object.__setattr__(self, "box_format", fam.box_format)
        for name in ("min_pixels", "max_pixels", "factor", "max_vision_tokens"):
            value = getattr(self, name)
            if value is None and name == "max_vision_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")
        if self.min_pixels > pixel_bound():
            # Every photo would be enlarged to it: gigabytes a photo (`data convert --resize` took 4 GB and 49 s for
            # one at 10^9), into a frame no reader opens and no model holds.
            raise ValueError(f"min_pixels ({self.min_pixels}) would enlarge every photo past the {pixel_bound()} "
                             f"pixels Pillow reads without a decompression-bomb warning (Qwen's default is {QWEN_MIN_PIXELS})")
        if (self.factor, self.box_format) != (fam.factor, fam.box_format):
            raise ValueError(f"{fam.name} resizes to multiples of {fam.factor} and writes {fam.box_format} boxes, "
                             f"but this contract says factor {self.factor} and {self.box_format} boxes")

    @property
    def box_scale(self) -> int | None:
        """The far-edge value of relative answer coordinates; None when answers are absolute frame pixels."""
        return RELATIVE_SCALE if self.box_format == "relative" else None

    def _bounded_size(self, size: Size, min_pixels: int, max_pixels: int) -> Size:
        h, w = smart_resize(size[1], size[0], self.factor, min_pixels, max_pixels)
        return within_aspect((w, h))

    def over_budget(self, size: Size) -> bool:
        """Whether a stored image of `size` would exceed `max_vision_tokens` within the pixel bounds alone."""
        if self.max_vision_tokens is None:
            return False
        w, h = self._bounded_size(size, self.min_pixels, self.max_pixels)
        return (w // self.factor) * (h // self.factor) > self.max_vision_tokens

    def model_size(self, size: Size) -> Size:
        """`(width, height)` of the model frame for a stored image of `size` (shrunk to the token budget; never past
        MAX_ASPECT:1)."""
        if self.over_budget(size):
            # The budget outranks min_pixels: a photo it shrinks is never pushed back up past it.
            cell = self.factor * self.factor
            return self._bounded_size(size, cell, self.max_vision_tokens * cell)
        return self._bounded_size(size, self.min_pixels, self.max_pixels)

    def vision_tokens(self, size: Size) -> int:
        """Number of `<|image_pad|>` tokens the LLM sees for an image of `size` (after the 2x2 merge)."""
        w, h = self.model_size(size)
        return (w // self.factor) * (h // self.factor)

    def answer_extent(self, size: Size) -> Size:
        """Largest x and y an answer may write for a stored image of `size` (its frame, or the relative scale)."""
        if self.box_format == "relative":
            return (RELATIVE_SCALE, RELATIVE_SCALE)
        return self.model_size(size)

    def to_model(self, box: Sequence[float], size: Size) -> list[int]:
        """Stored-image box -> the integer box an answer writes: model-frame pixels, or 0-1000 of each side, never
        a side of zero."""
        extent = self.answer_extent(size)
        return round_box_with_area(clip_box(scale_box(box, size, extent), extent), extent)

    def to_stored(self, box: Sequence[float], size: Size) -> Box:
        """Answer box (model-frame pixels, or 0-1000 relative) -> stored-image box (clipped to the image)."""
        return clip_box(scale_box(box, self.answer_extent(size), size), size)

    def from_unit(self, box: Sequence[float], size: Size) -> Box:
        """Box in units of the image's sides (`[0, 1]`, the detection head's output) -> stored-image box."""
        w, h = size
        return [box[0] * w, box[1] * h, box[2] * w, box[3] * h]

    def to_dict(self) -> dict[str, int | str | None]:
        """Plain dict for JSON."""
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write `coordinate_contract.json` into a checkpoint folder."""
        return write_text_atomic(Path(directory) / CONTRACT_FILE, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "CoordinateContract":
        """Read the contract a checkpoint was trained with (`directory` the checkpoint folder, or its contract file)."""
        given = Path(directory)
        path = given if given.name == CONTRACT_FILE and given.is_file() else given / CONTRACT_FILE
        if path is not given:  # a checkpoint not there, or a file in one, read as its contract missing or "Not a directory"
            inside = given.is_file() and (given.parent / CONTRACT_FILE).is_file()
            what = f"the checkpoint folder saved by bbuvl train, holding {CONTRACT_FILE}{f': {given.parent}' if inside else ''}"
            if not given.is_dir():
                raise FileNotFoundError(f"{given}: " + (f"a file; give {what}" if given.exists() else f"no such folder ({what})"))
        try:
            fields = read_json(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: missing; this checkpoint was not saved by bbuvl train") from e
        known = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: holds {json_kind(fields)}, expected a JSON object with {', '.join(known)}")
        unknown = [k for k in fields if k not in known]
        if unknown:
            raise ValueError(f"{path}: unknown key {', '.join(map(repr, unknown))} (a contract holds {', '.join(known)})")
        try:
            # Contracts saved before families existed hold no family: they were all Qwen2.5-VL's.
            return cls(**fields)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def export_frame(path: str | Path) -> CoordinateContract | None:
    """The frame the checkpoint an export came from trained in: its pixel bounds and vision-token budget, which the
    export's image processor holds only in part (model/export.py `frame_gap`); None: no such file (a base model, an
    export written before it). ValueError naming the file when it is no frame of the folder's family.

    The one reader of it: `bbuvl predict -c EXPORT` frames photos by it and `bbuvl.infer.openai_answers` reads a stock
    server's answers by it (docs/families.md, "An export's frame"); here, below both, where reading it loads no torch.
    """
    file = Path(path) / EXPORT_FRAME_FILE
    if not file.is_file():
        return None
    fields = read_json(file, "export frame")
    if not isinstance(fields, dict):
        raise ValueError(f"{file}: holds {json_kind(fields)}, expected a JSON object (`bbuvl model export` writes one)")
    try:
        frame = CoordinateContract(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: {e}") from None
    if frame.family != family_of(path).model_type:
        raise ValueError(f"{file}: a {frame.family} frame, but {path} holds a {family_of(path).model_type} model")
    return frame
