"""Tiles and zoom: predict on parts of a photo at the checkpoint's frame, and merge the boxes back.

A wide photo is shrunk into the model's frame, where a screw can be less than one vision token. A region
(a tile of a grid, or a container found by a first pass) is cropped from the stored photo and resized so that
it holds as many pixels as the whole photo's frame: the model sees it magnified by `zoom`. Its boxes come back
through the coordinate contract into the resized crop's pixels, then are divided by the zoom and moved by the
crop's offset into the stored photo's pixels.

Merging (docs/tiles.md): an object cut by a region's inner edge shows as a part in one region and whole in its
neighbour; boxes of one label that overlap by intersection over the smaller box are one object. Of a group, a
box that touches no inner edge ("complete") wins, the one from the most magnified region first; a group with
only cut parts becomes their union, which is how an object larger than every tile survives without a
whole-photo pass.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence, overload

import numpy as np
from PIL import Image

from bbuvl.data.coords import MAX_ASPECT, CoordinateContract
from bbuvl.data.images import stored_region
from bbuvl.data.labels import label_at_level
from bbuvl.data.regions import MAX_GRID, Region, Size, grid_regions, strided_regions, tile_side_overlap
from bbuvl.data.scale import SCALE_SLACK, frame_scale
from bbuvl.data.text import label_key, spelling_of
from bbuvl.infer.tile_refine import refine_thin



@dataclass(frozen=True)
class TiledDetection:
    """One box found in one region, already in the stored photo's pixels."""

    bbox_2d: list[float]
    label: str
    score: float
    zoom: float  # how magnified the region was (1.0 = the whole photo at its frame)
    cut: bool  # touches an inner edge of its region: the object may continue beyond it
    whole: bool = False  # found by the whole-photo pass
    cut_across: tuple[bool, bool] = (False, False)  # which of its sides an inner edge cuts: (left or right, top or bottom)


@dataclass
class RegionPass:
    """What one pass over one photo cost and found: regions, their vision tokens, raw answers."""

    regions: list[Region] = field(default_factory=list)
    vision_tokens: int = 0
    raws: list[str | None] = field(default_factory=list)


def auto_grid(size: Size, contract: CoordinateContract, scale: float) -> tuple[int, int]:
    """The grid whose tiles, at the whole photo's frame, show the photo at `scale` frame pixels per stored pixel.

    `scale` is what the checkpoint trained at (frame side / stored side, 1.0 for photos never shrunk). A photo
    the frame already shows at that scale or finer needs one tile.
    """
    # The scale a checkpoint trained at is the frame's mean over both sides (data/scale.py:photo_scale), and a tile is
    # shown at the mean too (zoomed_size: the frame's pixels in the tile's aspect); one side alone is off by the
    # frame's rounding to whole patches, so a photo of the training photos' own size was cut 1x2, and one of twice
    # their sides 2x3 (Qwen2.5-VL at the shapes demo's frame, 252x168 for 640x480).
    shown = frame_scale(size, contract)
    # `scale` is mostly read back from a file that rounds it (data/scale.py, SCALE_DECIMALS): up to half a unit of its
    # last decimal above the scale measured, which cut the training photos' own size 2x2 at 10 times one pass's cost.
    n = max(1, min(MAX_GRID, math.ceil((scale - SCALE_SLACK) / shown)))
    return n, n


def grid_shape(regions: Sequence[Region]) -> tuple[int, int]:
    """The columns and rows of tiles cut as a grid (a grid, strided or not, starts its tiles on shared columns and
    rows); (1, 1) for no tiles, the whole photo."""
    return (len({r[0] for r in regions}), len({r[1] for r in regions})) if regions else (1, 1)


def tile_step(regions: Sequence[Region]) -> float:
    """The longest step from one tile's start to the next, along either axis, as a share of a tile's side (0 for a
    single tile): what a stride asked for became, once the grid's MAX_GRID tiles a side capped it."""
    if not regions:
        return 0.0
    x1, y1, x2, y2 = regions[0]
    xs, ys = sorted({r[0] for r in regions}), sorted({r[1] for r in regions})
    return max([(b - a) / (x2 - x1) for a, b in zip(xs, xs[1:])] + [(b - a) / (y2 - y1) for a, b in zip(ys, ys[1:])],
               default=0.0)


def zoomed_size(region: Region, photo_size: Size, contract: CoordinateContract, zoom: float | None = None) -> Size:
    """The size a region's crop is resized to: `zoom` frame pixels per stored pixel, or by default as many pixels as
    the whole photo's frame holds, in the region's aspect; the frame's bounds and token budget still apply."""
    rw, rh = region[2] - region[0], region[3] - region[1]
    if zoom is None and tuple(region) == (0, 0, *photo_size):
        # The whole photo at its own frame, as a pass without tiles shows it: through the scale below, rounding framed a
        # 320x240 photo 336x252 where its frame is 308x252 (108 vision tokens for 99, and other answers).
        return contract.model_size(photo_size)
    if zoom is None:
        fw, fh = contract.model_size(photo_size)
        zoom = math.sqrt(fw * fh / (rw * rh))
    w, h = max(1, round(rw * zoom)), max(1, round(rh * zoom))
    # Rounding can carry a region at smart_resize's aspect limit past it (a 20x4000 photo's whole pass, 21x4209): the
    # short side is rounded up instead.
    if w < h and h > MAX_ASPECT * w:
        w = math.ceil(h / MAX_ASPECT)
    elif h < w and w > MAX_ASPECT * h:
        h = math.ceil(w / MAX_ASPECT)
    return contract.model_size((w, h))


def region_zoom(region: Region, photo_size: Size, contract: CoordinateContract, zoom: float | None = None) -> float:
    """How many times finer the region's frame shows the photo than the whole photo's frame does."""
    zw, _ = zoomed_size(region, photo_size, contract, zoom)
    fw, _ = contract.model_size(photo_size)
    return (zw / (region[2] - region[0])) / (fw / photo_size[0])


def crop_region(image: Image.Image, region: Region, contract: CoordinateContract, zoom: float | None = None,
                size: Size | None = None) -> Image.Image:
    """The region of the stored photo, resized (bicubic) to its `zoomed_size`; `size`: the stored photo's when `image`
    is it decoded at a reduced scale (data/images.py: a JPEG past Pillow's pixel limit)."""
    size = size or image.size
    return stored_region(image, size, region, zoomed_size(region, size, contract, zoom))


def to_photo(box: Sequence[float], region: Region, crop_size: Size) -> list[float]:
    """A box in a resized crop's pixels -> the stored photo's pixels."""
    sx = (region[2] - region[0]) / crop_size[0]
    sy = (region[3] - region[1]) / crop_size[1]
    return [region[0] + box[0] * sx, region[1] + box[1] * sy, region[0] + box[2] * sx, region[1] + box[3] * sy]


def inner_edges(box: Sequence[float], region: Region, photo_size: Size, margin: float) -> tuple[bool, bool]:
    """Whether `box` reaches within `margin` pixels of a side of `region` that is not the photo's border: (its left or
    right side, its top or bottom side)."""
    x1, y1, x2, y2 = region
    w, h = photo_size
    return ((x1 > 0 and box[0] <= x1 + margin) or (x2 < w and box[2] >= x2 - margin),
            (y1 > 0 and box[1] <= y1 + margin) or (y2 < h and box[3] >= y2 - margin))


def intersection_over_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection area over the smaller box's area: `[N, 4]`, `[M, 4]` -> `[N, M]` (0 for empty boxes)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def _join_parts(found: Sequence[TiledDetection], min_overlap: float) -> list[TiledDetection]:
    """Cut boxes of one label that cross each other, each spanning the other's extent along one axis, become their union.

    Two parts of one object from side-by-side tiles meet in the strip the tiles share and span the same rows (or
    columns); linking is transitive so the four parts of an object cut by a tile corner join as one.
    """
    parts = [d for d in found if d.cut]
    boxes = np.array([d.bbox_2d for d in parts], dtype=np.float64).reshape(-1, 4)
    label = _label_codes([d.label for d in parts])
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(parts)):
        # Against every later part of its label in one step: a Python step per pair took 0.1 s for 1,000 parts
        crossing = (label[i + 1:] == label[i]) & _crossing(boxes[i], boxes[i + 1:], min_overlap)
        for j in (i + 1 + np.flatnonzero(crossing)).tolist():
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(parts)):
        groups.setdefault(root(i), []).append(i)
    joined = [TiledDetection([float(boxes[g, 0].min()), float(boxes[g, 1].min()), float(boxes[g, 2].max()), float(boxes[g, 3].max())],
                             parts[g[0]].label, max(parts[k].score for k in g), max(parts[k].zoom for k in g), True)
              for g in groups.values()]
    return [d for d in found if not d.cut] + joined


def _crossing(a: np.ndarray, b: np.ndarray, min_overlap: float) -> np.ndarray:
    """Whether box `a` `[4]` and each of `b` `[M, 4]` overlap, one spanning at least `min_overlap` of the narrower
    extent along x or y: `[M]`."""
    ox = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    oy = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    span_x = ox / np.maximum(1e-9, np.minimum(a[2] - a[0], b[:, 2] - b[:, 0]))
    span_y = oy / np.maximum(1e-9, np.minimum(a[3] - a[1], b[:, 3] - b[:, 1]))
    return (ox > 0) & (oy > 0) & (np.maximum(span_x, span_y) >= min_overlap)


def _label_codes(labels: Sequence[str]) -> np.ndarray:
    """One integer per distinct label `[N]`: labels compared as arrays, not string by string."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(label, len(codes)) for label in labels], dtype=np.int64)


def merge_detections(found: Sequence[TiledDetection], min_overlap: float = 0.6) -> list[TiledDetection]:
    """One box per object: parts cut by tile edges are joined first, then same-label boxes that overlap by
    >= `min_overlap` of the smaller box are grouped, best score first.

    A group's box is its complete box from the most magnified region (ties: the higher score), or, when every
    member is cut, the union of the members. Its score is the group's best.
    """
    found = _join_parts(found, min_overlap)
    order = sorted(range(len(found)), key=lambda i: -found[i].score)
    boxes = np.array([found[i].bbox_2d for i in order], dtype=np.float64).reshape(-1, 4)
    label = _label_codes([found[i].label for i in order])
    free = np.ones(len(order), dtype=bool)
    merged = []
    for i in range(len(order)):
        if not free[i]:
            continue
        # One row of overlaps per group, among the free boxes of its label: an N x N matrix of them and of labels
        # took 0.7 s for 2,000 boxes. A box is always in its own group: a zero-area box (clipped to a region's edge)
        # overlaps nothing, itself included.
        rest = np.flatnonzero(free & (label == label[i]))  # i first: every better box is taken
        members = rest[(intersection_over_smaller(boxes[i:i + 1], boxes[rest])[0] >= min_overlap) | (rest == i)]
        free[members] = False
        merged.append(_merged([found[order[m]] for m in members]))
    return merged


def _merged(group: list[TiledDetection]) -> TiledDetection:
    """One group's detection, its best-scored member first: see `merge_detections`."""
    complete = [d for d in group if not d.cut]
    if complete:
        best = max(complete, key=lambda d: (round(d.zoom, 6), d.score))
        box = list(best.bbox_2d)
    else:
        box = [min(d.bbox_2d[0] for d in group), min(d.bbox_2d[1] for d in group),
               max(d.bbox_2d[2] for d in group), max(d.bbox_2d[3] for d in group)]
    top = group[0]
    return TiledDetection(box, top.label, top.score, max(d.zoom for d in group), not complete)


def check_containers(containers: Sequence[str], labels: Sequence[str],
                     option: str = "--zoom-into / inference.zoom_containers") -> None:
    """Raise ValueError naming each zoom container (or other category `option` names) that is no category (first label
    level) of `labels`, the checkpoint's vocabulary: such a container would never be found, and the zoom pass would
    silently never run."""
    categories = sorted({label_at_level(label, 1) for label in labels})
    known = {label_key(c) for c in categories}  # another spelling (a zero-width space, NFD) is the category still
    unknown = [c for c in containers if label_key(c) not in known]
    if not unknown or not labels:
        return
    hints = []
    for c in unknown:
        close = difflib.get_close_matches(c.strip(), categories, n=1, cutoff=0.5)
        level = label_at_level(c.strip(), 1)
        hint = (f"did you mean '{level}'? a category is the first level of a label" if level in categories
                else f"did you mean '{close[0]}'?" if close else "")
        hints.append(f"'{c}'" + (f" ({hint})" if hint else ""))
    raise ValueError(f"{option}: {', '.join(hints)} is no category of this checkpoint's "
                     f"labels, so it would never be found; its categories: {', '.join(categories)}")


def category_spellings(categories: Sequence[str], labels: Sequence[str]) -> tuple[str, ...]:
    """`categories` (zoom containers, refined categories) each spelt as the checkpoint's `labels` spell it: the
    regions and the refinement compare categories as written, so another spelling would never match, and nothing
    would be zoomed into or refined."""
    spell = spelling_of(label_at_level(label, 1) for label in labels)
    return tuple(spell(c) for c in categories)


def container_regions(found: Sequence[TiledDetection], containers: Sequence[str], photo_size: Size,
                      margin: float = 0.1) -> list[Region]:
    """A region around each box whose category (first label level) is one of `containers`, grown by `margin`."""
    wanted = {c.strip() for c in containers}
    w, h = photo_size
    regions = []
    for d in found:
        if label_at_level(d.label, 1) not in wanted:
            continue
        x1, y1, x2, y2 = d.bbox_2d
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        region = (max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my)), min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my)))
        if region[2] - region[0] >= 2 and region[3] - region[1] >= 2 and region not in regions:
            regions.append(region)
    return regions


class RegionCrops(Sequence[Image.Image]):
    """The zoomed crops of a photo's regions, each cut from the photo and resized only when it is read, and then held
    by its reader alone: a pass holds the crops of one forward pass, where every region's was cut ahead (the 257 of
    a 12000x9000 photo at `tiles: auto`, 155 MB at a 448x336 frame; bench/huge_photo_memory.py)."""

    def __init__(self, image: Image.Image, regions: Sequence[Region], sizes: Sequence[Size], size: Size) -> None:
        self.image, self.regions, self.sizes, self.size = image, list(regions), list(sizes), size

    def __len__(self) -> int:
        return len(self.regions)

    @overload
    def __getitem__(self, i: int) -> Image.Image: ...

    @overload
    def __getitem__(self, i: slice) -> list[Image.Image]: ...

    def __getitem__(self, i: int | slice) -> Image.Image | list[Image.Image]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return stored_region(self.image, self.size, self.regions[i], self.sizes[i])


# (crops, whether they are tiles rather than the whole photo) -> per crop, its boxes (crop pixels, label, score), raw
# answer. The crops are cut as they are read (`RegionCrops`): read them a forward pass at a time.
PredictImages = Callable[[Sequence[Image.Image], bool], list[tuple[list[tuple[list[float], str, float]], str | None]]]


def predict_regions(predict: PredictImages, image: Image.Image, regions: Sequence[Region], contract: CoordinateContract,
                    zoom: float | None = None, size: Size | None = None) -> tuple[list[TiledDetection], RegionPass]:
    """Run `predict` on every region's zoomed crop (cut as `predict` reads it); every box comes back in the stored
    photo's pixels.

    `predict(crops, tiles)` returns, per crop, its `[(box in the crop's pixels, label, score)]` and its raw answer;
    it is called once for the whole photo (`tiles` False) and once for the other regions, tiles or zoomed
    containers (`tiles` True), which may be predicted otherwise (`inference.tile_queries`). The whole photo is always
    shown at its frame; other regions at `zoom` (`zoomed_size`). `size`: the stored photo's, when `image` is smaller.
    A box is marked cut when it reaches within one of its region's model cells of an inner edge: a part ends there,
    and a whole object marked cut by mistake still survives the merge (a group of cut boxes keeps their union).
    """
    size = size or image.size
    whole = (0, 0, *size)
    # Each crop's size is known without cutting it (`crop_region` resizes to exactly this)
    sizes = [zoomed_size(r, size, contract, None if r == whole else zoom) for r in regions]
    answers: list = [None] * len(regions)
    for tiles in (False, True):
        picked = [i for i, r in enumerate(regions) if (r != whole) == tiles]
        if picked:
            crops = RegionCrops(image, [regions[i] for i in picked], [sizes[i] for i in picked], size)
            for i, answer in zip(picked, predict(crops, tiles)):
                answers[i] = answer
    found, cost = [], RegionPass(list(regions))
    for region, crop_size, (objects, raw) in zip(regions, sizes, answers):
        magnified = region_zoom(region, size, contract, None if region == whole else zoom)
        cell = contract.factor * (region[2] - region[0]) / contract.model_size(crop_size)[0]
        cost.vision_tokens += contract.vision_tokens(crop_size)
        cost.raws.append(raw)
        for box, label, score in objects:
            photo_box = to_photo(box, region, crop_size)
            across = inner_edges(photo_box, region, size, cell)
            found.append(TiledDetection(photo_box, label, score, magnified, any(across), region == whole, across))
    return found, cost


@dataclass(frozen=True)
class TilePlan:
    """How one photo is cut: a grid (or `auto`), the overlap, a whole-photo pass, and zoom into containers."""

    grid: tuple[int, int] | None = None  # None with `auto` False: no tiles
    auto: bool = False
    overlap: float = 0.15  # share of a tile's side its neighbour also covers
    stride: float | None = None  # tiles keep the grid's size and start at most this share of a side apart (None: the grid)
    zoom: float | None = None  # frame pixels per stored pixel for tiles and containers (None: the whole frame's pixels)
    whole: bool = True  # also predict the whole photo, for objects no tile holds whole
    containers: tuple[str, ...] = ()  # categories whose boxes the first pass zooms into
    container_margin: float = 0.1
    min_overlap: float = 0.6  # intersection over the smaller box at which two boxes of one label are one object
    train_scale: float = 1.0  # frame pixels per stored pixel the checkpoint trained at (for `auto`)
    # Who answers for what when tiles and the whole photo are both predicted (docs/tiles.md, "Big parts"): a box
    # whose side is at least `whole_above` of a tile's side is the whole pass's to find (a tile sees only part of
    # it), a smaller one the tiles' (None: both answer for every box); with `drop_cut`, a tile's box that its
    # region's inner edge cuts is no part at all.
    whole_above: float | None = None
    drop_cut: bool = False
    # (category, median side in frame pixels) of the checkpoint's training boxes: with these, `auto` zooms until the
    # whole pass's parts come out at the size they trained at (`part_zoom`); without, it uses `train_scale`.
    part_sides: tuple[tuple[str, float], ...] = ()
    # The same sizes for `whole_above`: a category trained at a side of at least `whole_above` of a tile's frame side
    # is one a tile cannot hold, the whole pass's alone; the others are the tiles' alone. With `whole_by_longest`,
    # these are the categories' longest sides, compared with the tile frame's longest side (a long thin air baffle
    # does not fit a tile however small its area).
    whole_sides: tuple[tuple[str, float], ...] = ()
    whole_by_longest: bool = False
    # Categories whose whole-pass boxes take their short side and state from the tiles' pieces (infer/tile_refine.py).
    refine: tuple[str, ...] = ()

    def frame_side(self, tile: Region, size: Size, contract: CoordinateContract) -> float:
        """The side of `tile`'s frame that `whole_categories` compares with: its longest with `whole_by_longest`, else
        the square root of its area."""
        w, h = zoomed_size(tile, size, contract, self.zoom)
        return max(w, h) if self.whole_by_longest else math.sqrt(w * h)

    def whole_categories(self, frame_side: float) -> set[str]:
        """The categories trained at a side of at least `whole_above` x `frame_side` (a tile's frame): the whole
        pass's alone, as `answering` splits them (none without `whole_above` or trained sizes)."""
        if self.whole_above is None:
            return set()
        return {c for c, side in self.whole_sides if side >= self.whole_above * frame_side}

    def tiles(self, size: Size, contract: CoordinateContract, scale: float | None = None) -> list[Region]:
        """The grid's regions for a photo of `size` (none when the plan has no grid, one tile is the whole photo);
        `auto` shows the photo at `scale` frame pixels per stored pixel when given, else at `train_scale`.

        A photo near smart_resize's aspect limit (a 20x4000 strip) cut across its short side gives slivers no frame
        holds, and one such tile would fail the whole photo: the grid loses a cut along the tiles' short side until
        every tile can be framed."""
        grid = auto_grid(size, contract, scale or self.train_scale) if self.auto else self.grid
        while grid is not None and grid != (1, 1):
            regions = grid_regions(size, *grid, overlap=tile_side_overlap(size, grid, self.overlap))
            x1, y1, x2, y2 = regions[0]
            if self.stride is not None:
                regions = strided_regions(size, (x2 - x1, y2 - y1), self.stride, least=grid)
            if all(self.framable(r, size, contract) for r in regions):
                return regions
            cols, rows = grid
            grid = (max(1, cols - 1), rows) if x2 - x1 < y2 - y1 else (cols, max(1, rows - 1))
        return []

    def framable(self, region: Region, size: Size, contract: CoordinateContract) -> bool:
        """Whether the model can be shown `region` of a photo of `size` at the plan's zoom (its aspect within
        smart_resize's limit once zoomed)."""
        try:
            zoomed_size(region, size, contract, self.zoom)
        except ValueError:
            return False
        return True


@dataclass
class TiledResult:
    """A photo's merged objects and what the passes cost."""

    objects: list[TiledDetection]
    vision_tokens: int
    regions: list[Region]
    raws: list[str | None]  # each region's raw answer, in `regions` order
    raw: str  # JSON: [{"region": [x1, y1, x2, y2], "raw": answer}, ...]


PART_SCORE = 0.3  # whole-pass boxes at least this sure tell `auto` how large the photo's parts are
PART_TOLERANCE = 1.5  # parts shown within this factor of their trained size get no tiles (a close-up's 1.1 is noise)


def part_zoom(found: Sequence[TiledDetection], part_sides: Sequence[tuple[str, float]], size: Size,
              contract: CoordinateContract) -> float | None:
    """How many times the whole photo's frame must be magnified for its parts to show at their trained size.

    Per category, the median over the whole pass's boxes (score >= PART_SCORE) of trained side / side at the whole
    frame; the category whose boxes trained smallest decides, since tiles exist for the smallest parts. None when the
    whole pass found none of the trained categories.
    """
    trained = dict(part_sides)
    frame = frame_scale(size, contract)
    ratios: dict[str, list[float]] = {}
    for d in found:
        category = label_at_level(d.label, 1)
        x1, y1, x2, y2 = d.bbox_2d
        side = math.sqrt(max(0.0, (x2 - x1) * (y2 - y1))) * frame
        if d.whole and d.score >= PART_SCORE and category in trained and side > 0:
            ratios.setdefault(category, []).append(trained[category] / side)
    if not ratios:
        return None
    smallest = min(ratios, key=lambda c: trained[c])
    return float(np.median(ratios[smallest]))


def answering(found: Sequence[TiledDetection], tile: Size | None, plan: TilePlan,
              tile_frame_side: float | None = None) -> list[TiledDetection]:
    """The boxes each pass answers for under `plan`'s rules, for tiles of `tile` (width, height) stored pixels.

    With `whole_above`, the whole pass keeps the boxes at least that share of a tile's side along either axis and the
    tiles keep the smaller ones. With the trained part sizes too (`plan.whole_sides`), the split is also by category:
    a category trained at a side of at least `whole_above` x `tile_frame_side` (the tile's side at its frame, its
    longest with `plan.whole_by_longest`) is the whole pass's alone, the others the tiles' alone. A tile sees a piece
    of a BBU, a complete box the merge would prefer to the whole pass's BBU, and the whole pass's big box of screws is
    wrong (docs/tiles.md, "Big parts").
    With `drop_cut`, a tile's box cut by its region's inner edge is dropped.
    """
    if tile is None:
        return list(found)
    big_categories = plan.whole_categories(tile_frame_side) if tile_frame_side is not None else set()
    kept = []
    for d in found:
        x1, y1, x2, y2 = d.bbox_2d
        big = plan.whole_above is not None and max((x2 - x1) / tile[0], (y2 - y1) / tile[1]) >= plan.whole_above
        if big_categories and plan.whole and (label_at_level(d.label, 1) in big_categories) != d.whole:
            continue
        if d.whole:
            if plan.whole_above is None or big:
                kept.append(d)
        elif not (plan.drop_cut and d.cut) and not (big and plan.whole):
            kept.append(d)
    return kept


def first_regions(size: Size, plan: TilePlan, contract: CoordinateContract) -> list[Region]:
    """The first pass's regions: the whole photo (when asked, or needed to find containers), then the tiles."""
    whole: Region = (0, 0, *size)
    regions = ([whole] if plan.whole or plan.containers else []) + plan.tiles(size, contract)
    return regions or [whole]


def predict_tiled(predict: PredictImages, image: Image.Image, plan: TilePlan, contract: CoordinateContract,
                  size: Size | None = None) -> TiledResult:
    """Whole-photo pass (when asked or needed by zoom), tiles, zoom into containers; then one merge. `size`: the
    stored photo's, when `image` is it decoded at a reduced scale; regions and boxes are in its pixels."""
    size = size or image.size
    whole_region: Region = (0, 0, *size)
    found: list[TiledDetection] = []
    passes: list[RegionPass] = []
    if plan.auto and plan.part_sides and plan.whole:
        # The whole pass first: how large its parts come out sets the grid (`part_zoom`).
        dets, cost = predict_regions(predict, image, [whole_region], contract, plan.zoom, size)
        zoom = part_zoom(dets, plan.part_sides, size, contract)
        frame = contract.model_size(size)[0] / size[0]
        if zoom is not None and zoom < PART_TOLERANCE:  # parts already near their trained size: no tiles
            tiles = []
        else:
            tiles = plan.tiles(size, contract, None if zoom is None else frame * zoom)
        more, more_cost = predict_regions(predict, image, tiles, contract, plan.zoom, size)
        dets += more
        cost = RegionPass(cost.regions + more_cost.regions, cost.vision_tokens + more_cost.vision_tokens,
                          cost.raws + more_cost.raws)
    else:
        first = first_regions(size, plan, contract)
        dets, cost = predict_regions(predict, image, first, contract, plan.zoom, size)
        tiles = [r for r in first if r != whole_region]
    frame_side = plan.frame_side(tiles[0], size, contract) if tiles else None
    answered = answering(dets, (tiles[0][2] - tiles[0][0], tiles[0][3] - tiles[0][1]) if tiles else None, plan,
                         frame_side)
    found += refine_thin(answered, [d for d in dets if not d.whole], plan.refine) if tiles and plan.whole else answered
    passes.append(cost)
    if plan.containers:
        # A container box thinner than smart_resize's aspect limit is no region to zoom into: its first-pass box stays.
        zoom_regions = [r for r in container_regions(merge_detections(found, plan.min_overlap), plan.containers, size,
                                                     plan.container_margin)
                        if r != whole_region and plan.framable(r, size, contract)]
        dets, cost = predict_regions(predict, image, zoom_regions, contract, plan.zoom, size)
        found += dets
        passes.append(cost)
    regions = [r for p in passes for r in p.regions]
    raws = [raw for p in passes for raw in p.raws]
    raw = json.dumps([{"region": list(r), "raw": a} for r, a in zip(regions, raws)], ensure_ascii=False)
    return TiledResult(merge_detections(found, plan.min_overlap), sum(p.vision_tokens for p in passes), regions, raws, raw)



def plan_cost(size: Size, plan: TilePlan, contract: CoordinateContract) -> int:
    """Vision tokens the plan's first pass costs for a photo of `size` (zoomed containers come on top)."""
    whole = (0, 0, *size)
    return sum(contract.vision_tokens(zoomed_size(r, size, contract, None if r == whole else plan.zoom))
               for r in first_regions(size, plan, contract))
