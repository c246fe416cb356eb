"""The camera: how a synthetic room becomes a photo (focus, light, white balance, noise) and where it looks.

`framing` moves the camera: wide (the cabinet), closeup (near one BBU, the ODF panel or the ground bar,
parts about 50 px in a 448x336 photo) or mixed, which can also hold tiles: one cell of the grid inference cuts a
whole cabinet four times the photo's side into; see docs/synthetic_scenes.md.
"""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
from PIL import Image

from bbuvl.data.coords import box_is_degenerate
from bbuvl.data.regions import grid_regions, tile_side_overlap, window_objects
from bbuvl.data.schema import ObjectAnn, sort_objects
from bbuvl.synthetic.scene import FAULT_LABELS, MIN_SIDE, SS, Box, FaultRate, Scene

def _camera(img: Image.Image, rng: random.Random, noise: np.random.Generator) -> Image.Image:
    """Focus, uneven light and vignette, white balance, contrast and sensor noise of a site photo."""
    w, h = img.size
    if rng.random() < 0.55:  # slight defocus; a down-up resize costs half a Gaussian blur here
        f = rng.uniform(0.55, 0.85)
        img = img.resize((max(1, int(w * f)), max(1, int(h * f))), Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    x = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    y = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    light = np.float32(rng.uniform(0.7, 1.2)) * (1 + np.float32(rng.uniform(-0.4, 0.4)) * x + np.float32(rng.uniform(-0.4, 0.4)) * y)
    light = light * (1 - np.float32(rng.uniform(0.0, 0.8)) * (x * x + y * y))
    balance = np.array([rng.uniform(0.92, 1.08) for _ in range(3)], dtype=np.float32)
    contrast = np.float32(rng.uniform(0.75, 1.15))
    mean = float((a[::4, ::4] * light[::4, ::4, None] * balance).mean())
    a = a * ((light * contrast)[..., None] * balance)
    a += (noise.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(1.5, 6.0)))[..., None]  # luma noise
    a += np.float32(mean * (1 - contrast) + 0.5)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def check_size(size: tuple[int, int]) -> None:
    """Raise ValueError for a photo size too small to draw recognisable parts."""
    if min(size) < MIN_SIDE:
        raise ValueError(f"image size {size[0]}x{size[1]} is too small: both sides must be at least {MIN_SIDE} px")


def check_wide_share(framing: str, wide_share: float, tile_share: float = 0.0) -> None:
    """Raise ValueError for an unknown framing, or a wide or tile share outside [0, 1], together above 1, or set for a
    framing that is not mixed."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got '{framing}'")
    if not 0.0 <= wide_share <= 1.0:
        raise ValueError(f"the wide share is the odds of a wide photo, between 0 and 1; got {wide_share}")
    if not 0.0 <= tile_share <= 1.0 or wide_share + tile_share > 1.0:
        raise ValueError(f"the tile share is the odds of a tile, between 0 and 1 less the wide share ({wide_share}); "
                         f"got {tile_share}")
    if framing != "mixed" and (wide_share != 0.5 or tile_share != 0.0):
        raise ValueError(f"a wide or tile share mixes framings: it needs framing 'mixed', not '{framing}'")


def _painted(rng_seed: int, canvas: tuple[int, int], faults: FaultRate | None) -> tuple[Scene, random.Random]:
    """The scene of `rng_seed` painted on `canvas`, and its random stream (the camera draws on from it).

    With a fault rate, a coin of the photo's own stream makes it faulty; a faulty photo whose draws left every part
    correct is painted again with its first state draws forced wrong, so it holds a fault."""
    faulty = faults is not None and random.Random(rng_seed ^ _FAULT_SALT).random() < faults.photos
    for force in range(0, 8):
        rng = random.Random(rng_seed)
        scene = Scene(rng, canvas, faults, faulty, force)
        scene.paint()
        if not faulty or any(label in FAULT_LABELS for _, label in scene.objects):
            break
    return scene, rng


def render_scene(rng_seed: int, size: tuple[int, int], framing: Framing = "wide",
                 faults: FaultRate | None = None, wide_share: float = 0.5, tile_share: float = 0.0,
                 tile_grid: tuple[int, int] = (3, 3)) -> tuple[Image.Image, list[ObjectAnn]]:
    """One synthetic photo of `size` (width, height) and its objects in its pixels, sorted by (y1, x1).

    `framing`: wide (the cabinet), closeup (near one BBU, the ODF panel or the ground bar) or mixed (wide at odds
    `wide_share`, a tile of `tile_grid` at odds `tile_share`, by a coin seeded from `rng_seed`); the scene is the same
    for a seed, only the camera moves.
    `faults`: how often photos and parts are wrong (None: each part at its own odds, most photos hold a fault).
    """
    check_size(size)
    check_wide_share(framing, wide_share, tile_share)
    if framing == "mixed":
        # closeup below 1 - both shares, then tile, then wide: without tiles the same coin as before they existed,
        # and shares (w, t) keep the close-ups of the wide share w + t, its lower wide coins become tiles
        coin = random.Random(rng_seed ^ _MIXED_SALT).random()
        if 1 - wide_share - tile_share <= coin < 1 - wide_share:
            return _render_tile(rng_seed, size, faults, tile_grid)
        framing = "closeup" if coin < 1 - wide_share else "wide"
    if framing == "closeup":
        return _render_closeup(rng_seed, size, faults)
    return _render_wide(rng_seed, size, faults)


def _render_wide(rng_seed: int, size: tuple[int, int], faults: FaultRate | None) -> tuple[Image.Image, list[ObjectAnn]]:
    """The whole cabinet in a `size` photo."""
    w, h = size
    scene, rng = _painted(rng_seed, (w * SS, h * SS), faults)
    img = _camera(scene.img.reduce(SS), rng, np.random.default_rng(rng_seed))
    objects = []
    for box, label in scene.objects:
        x1, y1, x2, y2 = (round(v / SS, 1) for v in box)
        clipped = [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]
        # A cabinet laid out for a photo far wider than tall (1200x96) runs past its bottom: a part wholly below it
        # clipped to an inverted box, and the run died on it; one clipped under a pixel is what data check refuses.
        if not box_is_degenerate(clipped):
            objects.append(ObjectAnn(bbox_2d=clipped, desc=label))
    return img, sort_objects(objects)


# --- tiles ---------------------------------------------------------------------------------------------
# A whole cabinet predicted through tiles shows the model windows of it that neither a close-up (framed on a
# BBU, the ODF panel or the ground bar) nor the whole frame does: the power supplies' outlets and the rails at about
# a close-up's scale (docs/faults_learning.md, "Tiles among the whole cabinets"). A tile photo is one cell of the
# grid, with inference's default overlap, of the cabinet photographed at TILE_SOURCE times the photo's side, cut
# at the photo's aspect around the cell's centre and resized to the photo.

TILE_SOURCE = 4  # the whole cabinets' side over the photo's: 1792x1344 for 448x336 photos, as the demo predicts
TILE_OVERLAP = 0.15  # inference.tile_overlap's default
_TILE_SALT = 0x711E5


def _render_tile(rng_seed: int, size: tuple[int, int], faults: FaultRate | None,
                 grid: tuple[int, int]) -> tuple[Image.Image, list[ObjectAnn]]:
    """One cell of `grid` cut from the whole cabinet of `rng_seed` photographed at TILE_SOURCE x `size`."""
    w, h = size
    source = (w * TILE_SOURCE, h * TILE_SOURCE)
    cabinet, objects = _render_wide(rng_seed, source, faults)
    cells = grid_regions(source, *grid, overlap=tile_side_overlap(source, grid, TILE_OVERLAP))
    x1, y1, x2, y2 = random.Random(rng_seed ^ _TILE_SALT).choice(cells)
    scale = min((x2 - x1) / w, (y2 - y1) / h)  # source pixels per photo pixel: the photo's aspect inside the cell
    ox, oy = (x1 + x2 - w * scale) / 2, (y1 + y2 - h * scale) / 2
    img = cabinet.resize(size, Image.Resampling.BICUBIC, box=(ox, oy, ox + w * scale, oy + h * scale))
    return img, sort_objects(window_objects([(o.bbox_2d, o.desc) for o in objects], (ox, oy), size, scale=scale))


# --- close-up framing ------------------------------------------------------------------------------
# Inspectors also photograph one BBU, the ODF panel or the ground bar from a hand's length. A close-up is
# the wide scene painted larger (the same seed draws the same rack) and a photo-sized window cut from it,
# so parts keep their look and only their size changes. docs/synthetic_scenes.md shows the numbers.

FRAMINGS: tuple[str, ...] = ("wide", "closeup", "mixed")
Framing = Literal["wide", "closeup", "mixed"]
CLOSEUP_PART = (0.10, 0.13)  # screw/plug size in a close-up, as a fraction of the photo width (45-58 px at 448)
CLOSEUP_PART_MAX = 0.5  # ... and at most this share of its shorter side, as the shapes scene's parts
_CLOSEUP_SALT, _MIXED_SALT = 0xC105E, 0x31BED  # framing draws its own random streams: the scene's stays the same
_FAULT_SALT = 0xFA017


def _render_closeup(rng_seed: int, size: tuple[int, int], faults: FaultRate | None = None) -> tuple[Image.Image, list[ObjectAnn]]:
    """A close-up photo: the scene of `rng_seed` painted at the zoom that gives parts CLOSEUP_PART, then cropped.

    With a fault rate, a faulty photo is framed on one of its faults (an inspector photographs what is wrong), a
    passing one as before: its scene holds no fault anywhere."""
    w, h = size
    framer = random.Random(rng_seed ^ _CLOSEUP_SALT)
    probe = Scene(random.Random(rng_seed), (w * SS, h * SS))
    probe.scale()  # every length in the scene is proportional to the canvas, so d at the photo size sets the zoom
    # A part of 10-13 % of the width is taller than a photo wider than 4:1, and the canvas grew with the square of
    # the aspect: 5.3 GB for one 4000x96 close-up, past any memory at 200:1. It is kept to half the shorter side.
    part = min(framer.uniform(*CLOSEUP_PART) * w, CLOSEUP_PART_MAX * min(w, h))
    zoom = max(1.0, part * SS / probe.d)
    scene, rng = _painted(rng_seed, (round(w * zoom) * SS, round(h * zoom) * SS), faults)
    x0, y0, x1, y1 = framer.choice([b for b, _ in scene.bbus] + scene.panels)
    # look at a point along the target (an ear with its screws, the ports, a plug row), the target's row centred
    fx, fy = framer.uniform(x0, x1), (y0 + y1) / 2 + framer.uniform(-0.25, 0.25) * h * SS
    wrong = [b for b, label in scene.objects if label in FAULT_LABELS] if faults is not None else []
    framer.shuffle(wrong)
    for fault in wrong:  # centred on a fault, shifted by up to a quarter of the photo: it must show in the window
        fx = (fault[0] + fault[2]) / 2 + framer.uniform(-0.25, 0.25) * w * SS
        fy = (fault[1] + fault[3]) / 2 + framer.uniform(-0.25, 0.25) * h * SS
        origin = _origin(fx, fy, scene, size)
        if any(o.desc in FAULT_LABELS for o in _framed_objects(scene.objects, origin, size)):
            break
    ox, oy = _origin(fx, fy, scene, size)
    img = _camera(scene.img.crop((ox, oy, ox + w * SS, oy + h * SS)).reduce(SS), rng, np.random.default_rng(rng_seed))
    return img, _framed_objects(scene.objects, (ox, oy), size)


def _origin(fx: float, fy: float, scene: Scene, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left canvas pixel of a `size` photo looking at (`fx`, `fy`), kept on the canvas."""
    w, h = size
    ox = int(round(min(max(0.0, fx - w * SS / 2), scene.W - w * SS)))
    oy = int(round(min(max(0.0, fy - h * SS / 2), scene.H - h * SS)))
    return ox, oy


def _framed_objects(objects: list[tuple[Box, str]], origin: tuple[int, int], size: tuple[int, int]) -> list[ObjectAnn]:
    """Canvas boxes seen through the window at `origin` (canvas pixels) of a `size` photo (data/regions.py's rule)."""
    return window_objects(objects, origin, size, scale=SS)
