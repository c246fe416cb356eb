"""Synthetic equipment-room photos with exact boxes: the demo's dataset and most tests' fixture.

Each photo is a frontal view of an open rack cabinet (or a close-up of one BBU in it), drawn with
Pillow only. Every label has one consistent look, so a model can learn it from a few hundred photos:

- BBU: grey panel with a red logo and red top bar (Huawei), blue panel with lighter board strips and
  a navy badge (ZTE), slim charcoal unit with slanted-bar logo and ports in pairs (Ericsson).
- BBU mounting screw on the ears: a cross-head disc when correct; an empty hole or a raised, tilted
  head on its shank when wrong. Ground-bar screws: hex heads on a copper bar with a lug (correct),
  an empty hole or a raised head (wrong).
- CPRI plug (white body, blue head, orange/aqua fibre) in a BBU port: fully seated when correct; half
  out (the dark port shows above it) or crooked when wrong. ODF pigtail plug (green body, yellow
  boot and fibre) in the ODF panel at the top of the cabinet: the same two faults.
- Ground terminal on a cabinet post: ring lug held by a nut, angled towards its wire (correct); lug
  hanging loose below an empty hole (wrong).
- Air baffle: a ribbed plate next to a BBU (installed) or a black 1U void with bare brackets (not
  installed). Cabinet space: the rail-to-rail mounting area, "not full" when it shows a perforated
  back panel of 2U or more.
- Label sticker: a yellow (sometimes white) tag with text lines. Cable: a bundle of thick cables with
  ties in a side channel or on the ceiling ladder.
Unlabelled clutter (other equipment, rails, neighbouring cabinets, fibres, ground wires, extinguisher)
and camera effects (light, white balance, contrast, blur, noise, distance) keep it from being trivial.

The camera that photographs the room (light, noise, wide or close-up framing) is camera.py; the
annotation platform's export format is export.py; writing a dataset of photos is dataset.py.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bbuvl.data.coords import box_inside
from bbuvl.data.labels import SEP

SS = 2  # draw at twice the size and reduce: anti-aliased edges, like a real photo
ODF_UNITS, GROUND_BAR_UNITS = 1.9, 1.5  # rack height of the ODF panel with its fibre tray, of the ground-bar zone
MAX_OBJECTS = 20
MIN_SIDE = 96

BBU_CAT = "bbu基带处理单元"
BRANDS = ("华为", "中兴", "爱立信")
MOUNT_SCREW, CPRI, PIGTAIL, GROUND_TERMINAL, GROUND_BAR_SCREW = (
    "BBU安装螺丝", "CPRI光缆和BBU连接点", "BBU尾纤和ODF连接点", "BBU接地线机柜接地端", "地排处螺丝",
)
BAFFLE = {True: "挡风板/已安装", False: "挡风板/未安装"}
SPACE = {True: "机柜空间/满载", False: "机柜空间/非满载"}
STICKER, CABLE = "标签贴纸", "线缆"


def point_label(kind: str, ok: bool) -> str:
    """Canonical label of a connection point of `kind` (e.g. CPRI) in state correct/wrong."""
    return SEP.join(("螺丝连接点", kind, "连接正确" if ok else "连接错误"))


# The states the scene draws wrong: what an inspector must flag (the hierarchy file marks them for the product).
FAULT_LABELS = frozenset((
    *(point_label(k, False) for k in (MOUNT_SCREW, CPRI, PIGTAIL, GROUND_TERMINAL, GROUND_BAR_SCREW)), BAFFLE[False],
))

ALL_LABELS = (
    *(f"{BBU_CAT}/{b}" for b in BRANDS),
    *(point_label(k, ok) for k in (MOUNT_SCREW, CPRI, PIGTAIL, GROUND_TERMINAL, GROUND_BAR_SCREW) for ok in (True, False)),
    *BAFFLE.values(), *SPACE.values(), STICKER, CABLE,
)

Box = list[float]
RGB = tuple[int, int, int]

WALLS: tuple[RGB, ...] = ((222, 220, 212), (205, 208, 205), (230, 226, 215), (188, 194, 197), (214, 209, 194))
FLOORS: tuple[RGB, ...] = ((150, 150, 148), (118, 121, 125), (172, 166, 154), (96, 104, 110))
CABINETS: tuple[RGB, ...] = ((36, 38, 42), (28, 29, 32), (66, 68, 72), (178, 181, 184))
RAIL: RGB = (150, 152, 157)
SILVER: RGB = (196, 198, 203)
COPPER: RGB = (190, 118, 62)
YELLOW_GREEN = ((214, 190, 36), (40, 140, 60))
CABLE_COLOURS: tuple[RGB, ...] = ((24, 24, 26), (78, 80, 86), (36, 62, 140), (140, 28, 30), (200, 200, 196))
BRAND_COLOURS: dict[str, tuple[RGB, RGB]] = {  # front panel, boards
    "华为": ((196, 198, 202), (176, 179, 184)),
    "中兴": ((34, 86, 162), (64, 118, 190)),
    "爱立信": ((44, 46, 51), (70, 72, 78)),
}


def _tone(c: RGB, f: float) -> RGB:
    return tuple(max(0, min(255, int(round(v * f)))) for v in c)  # type: ignore[return-value]


def _jit(rng: random.Random, c: RGB, a: int = 8) -> RGB:
    return tuple(max(0, min(255, v + rng.randint(-a, a))) for v in c)  # type: ignore[return-value]


def _union(a: Box, b: Box) -> Box:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _ordered(b: Box) -> Box:
    return [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]


def _overlaps(a: Box, b: Box, pad: float = 0.0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def _rotate_point(p: tuple[float, float], centre: tuple[float, float], new_centre: tuple[float, float], deg: float):
    """Where a sprite pixel lands after `Image.rotate(deg, expand=True)` (counter-clockwise on screen)."""
    t = math.radians(deg)
    dx, dy = p[0] - centre[0], p[1] - centre[1]
    return (new_centre[0] + dx * math.cos(t) + dy * math.sin(t), new_centre[1] - dx * math.sin(t) + dy * math.cos(t))


def _bezier(p0, p1, p2, n: int = 16) -> list[tuple[float, float]]:
    return [
        ((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0], (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1])
        for t in (i / n for i in range(n + 1))
    ]


def _font(size: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled font: the same glyphs on every machine with this Pillow, unlike system fonts.
    return ImageFont.load_default(max(6, int(size)))


@dataclass(frozen=True)
class FaultRate:
    """How often a scene is wrong: `photos` is the share of photos with any fault, `parts` the share of parts drawn
    wrong in such a photo (the others show none). Field photos mostly pass (docs/synthetic_scenes.md, "Faults")."""

    photos: float
    parts: float = 0.3

    def __post_init__(self) -> None:
        for name in ("photos", "parts"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault rate: {name} must be a share between 0 and 1, got {v}")


@dataclass
class _Slot:
    """One horizontal band of the mounting area."""

    kind: Literal["bbu", "baffle", "clutter", "empty"]
    units: float
    brand: str = ""
    installed: bool = True
    screws_per_ear: int = 1
    y0: float = 0.0
    y1: float = 0.0

    @property
    def labelled(self) -> int:
        """Objects this slot always labels: a BBU with its mounting screws, or a baffle."""
        return 1 + 2 * self.screws_per_ear if self.kind == "bbu" else int(self.kind == "baffle")


class Scene:
    """Paints one photo on a supersampled canvas and records every labelled box as it is drawn."""

    def __init__(self, rng: random.Random, size: tuple[int, int], faults: FaultRate | None = None,
                 faulty: bool = False, force: int = 0):
        """`faults` None draws each part's state at its own odds; otherwise only a `faulty` photo has wrong parts,
        and its first `force` state draws come out wrong (so that a faulty photo is never drawn without a fault)."""
        self.rng = rng
        self.faults, self.faulty, self.force = faults, faulty, force
        self.W, self.H = size
        self.img = Image.new("RGB", size)
        self.draw = ImageDraw.Draw(self.img)
        self.objects: list[tuple[Box, str]] = []
        self.busy: list[Box] = []  # labelled boxes and features a sticker must not cover
        self.reserved = 0  # mandatory objects planned but not drawn yet
        self.fibres: list[tuple[list[tuple[float, float]], RGB, float]] = []
        self.bbus: list[tuple[Box, str]] = []
        self.panels: list[Box] = []  # the ODF panel and the ground bar: what a close-up may frame besides a BBU

    # --- bookkeeping -------------------------------------------------------------------------

    def add(self, box: Box, label: str, reserved: bool = False, blocks: bool = True) -> None:
        self.objects.append(([float(v) for v in box], label))
        if blocks:
            self.busy.append(box)
        if reserved:
            self.reserved -= 1

    def part_ok(self, p_wrong: float) -> bool:
        """Whether the next part is drawn correct: at odds `p_wrong` of wrong, or by the photo's fault rate."""
        r = self.rng.random()  # drawn either way: the scene's random stream does not depend on the fault rate
        if self.faults is None:
            return r > p_wrong
        if self.faulty and self.force > 0:
            self.force -= 1
            return False
        return not (self.faulty and r < self.faults.parts)

    def room(self, n: int = 1) -> bool:
        return len(self.objects) + self.reserved + n <= MAX_OBJECTS

    def free(self, box: Box, pad: float = 0.0) -> bool:
        return box_inside(box, (self.W, self.H), tol=-2) and not any(_overlaps(box, b, pad) for b in self.busy)

    def paste(self, sprite: Image.Image, angle: float, anchor: tuple[float, float], at: tuple[float, float]):
        """Rotate an RGBA `sprite` by `angle` degrees (counter-clockwise) and paste it with its pixel `anchor`
        at `at`. Returns the box of its opaque pixels and a map from sprite pixels to canvas pixels."""
        rot = sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        old, new = (sprite.width / 2, sprite.height / 2), (rot.width / 2, rot.height / 2)
        a = _rotate_point(anchor, old, new, angle)
        ox, oy = int(round(at[0] - a[0])), int(round(at[1] - a[1]))
        self.img.paste(rot, (ox, oy), rot)
        ab = rot.getchannel("A").point(lambda v: 255 if v > 96 else 0).getbbox()

        def to_canvas(pt: tuple[float, float]) -> tuple[float, float]:
            q = _rotate_point(pt, old, new, angle)
            return (ox + q[0], oy + q[1])

        return [ox + ab[0], oy + ab[1], ox + ab[2], oy + ab[3]], to_canvas

    # --- layout ------------------------------------------------------------------------------

    def scale(self) -> None:
        """Camera distance: the rack unit `u` and the screw/plug size `d`, both proportional to the canvas."""
        rng = self.rng
        self.closeup = rng.random() < 0.12
        frac = rng.uniform(0.84, 0.96) if self.closeup else rng.uniform(0.52, 0.82)
        self.u = min(self.W * frac / 10.5, self.H * 0.9 / (2.6 if self.closeup else 4.0))
        self.d = min(max(0.62 * self.u, 0.038 * self.W), 0.8 * self.u)  # screw/plug size: visible after downsizing

    def paint(self) -> None:
        """Choose camera distance and cabinet geometry, plan the rack, then paint back to front."""
        rng = self.rng
        self.scale()
        u, d = self.u, self.d
        self.ew = max(0.8 * u, 1.3 * d)  # BBU ear / rail width
        self.iw = 9.0 * u + 2 * self.ew  # rail to rail
        self.pw = max(0.9 * u, 1.5 * d)  # cabinet post
        self.cw_l, self.cw_r = rng.uniform(0.8, 1.4) * u, rng.uniform(0.8, 1.4) * u  # side cable channels
        total = self.iw + self.cw_l + self.cw_r + 2 * self.pw
        slack = max(0.0, (self.W - total) / 2)
        left = (self.W - total) / 2 + rng.uniform(-1, 1) * slack * 0.85
        self.cab_x0 = left
        self.ix0 = left + self.pw + self.cw_l
        self.ix1 = self.ix0 + self.iw
        self.cab_x1 = self.ix1 + self.cw_r + self.pw
        self.cab_colour = _jit(rng, rng.choice(CABINETS), 5)
        self.plan_stack()
        self.background()
        self.cabinet()
        self.paint_stack()
        for painter, want in ((self.ground_terminal, self.want_terminal), (self.cables, self.want_cables), (self.stickers, self.want_stickers)):
            self.reserved -= want - painter(want)  # release what found no room

    def plan_stack(self) -> None:
        """What each rack slot holds, where the stack sits, and the object budget it commits."""
        rng, u = self.rng, self.u
        margin = 0.35 * u
        visible = (self.H - 2 * margin) / u
        slots: list[_Slot] = []
        self.use_odf = self.use_gbar = False
        if self.closeup:  # one BBU filling the frame; the rack above and below runs out of the photo
            slots = self._bbu_with_baffles(rng.choice(BRANDS))
            top = margin + rng.uniform(0, max(0.0, visible - sum(s.units for s in slots))) * u
            bottom = top + sum(s.units for s in slots) * u
            while top > 0:
                slots.insert(0, _Slot("clutter", rng.choice((1.0, 2.0))))
                top -= slots[0].units * u
            while bottom < self.H:
                slots.append(_Slot("clutter", rng.choice((1.0, 2.0))))
                bottom += slots[-1].units * u
            self.stack_y0 = top
            self.full = True
        else:
            self.use_odf = rng.random() < 0.55 and visible >= 7.5
            self.use_gbar = rng.random() < 0.5 and visible >= 6.5
            extra = ODF_UNITS * self.use_odf + GROUND_BAR_UNITS * self.use_gbar
            for _ in range(rng.choices((1, 2, 3), (0.5, 0.4, 0.1))[0]):
                slots += self._bbu_with_baffles(rng.choice(BRANDS))
            for _ in range(rng.choice((0, 0, 1, 2))):
                slots.insert(rng.randint(0, len(slots)), _Slot("clutter", rng.choice((1.0, 1.0, 2.0))))
            self.full = rng.random() < 0.5
            if not self.full:
                empty = _Slot("empty", float(rng.choice((2, 2, 3, 4))))
                where = rng.random()
                slots.insert(len(slots) if where < 0.6 else 0 if where < 0.8 else rng.randint(0, len(slots)), empty)
            slots = self._fit(slots, visible - extra)
            self.full = not any(s.kind == "empty" for s in slots)
            height = sum(s.units for s in slots) + extra
            self.stack_y0 = margin + (rng.uniform(0, max(0.0, visible - height)) + ODF_UNITS * self.use_odf) * u
        y = self.stack_y0
        for s in slots:
            s.y0, s.y1 = y, y + s.units * u
            y = s.y1
        self.slots = slots
        self.stack_y1 = y
        self.reserved = sum(s.labelled for s in slots) + (not self.closeup)  # ... + the cabinet space
        # optional parts get their share up front, or CPRI plugs would always eat the whole budget
        spare = MAX_OBJECTS - self.reserved - 2
        self.want_terminal = min(spare, int(not self.closeup and rng.random() < 0.85))
        self.want_cables = min(spare - self.want_terminal, rng.choices((0, 1, 2), (0.3, 0.5, 0.2))[0])
        self.want_stickers = min(spare - self.want_terminal - self.want_cables, rng.choices((0, 1, 2, 3), (0.2, 0.4, 0.3, 0.1))[0])
        self.reserved += self.want_terminal + self.want_cables + self.want_stickers

    def _bbu_with_baffles(self, brand: str) -> list[_Slot]:
        rng = self.rng
        units = 1.7 if brand == "爱立信" else 2.0
        per_ear = 2 if units >= 2 and rng.random() < 0.5 else 1
        out = [_Slot("bbu", units, brand=brand, screws_per_ear=per_ear)]
        if rng.random() < 0.4:
            out.insert(0, _Slot("baffle", 1.0, installed=self._baffle_ok()))
        if rng.random() < 0.55:
            out.append(_Slot("baffle", 1.0, installed=self._baffle_ok()))
        return out

    def _baffle_ok(self) -> bool:
        if self.faults is None:
            return self.rng.random() < 0.55
        return self.part_ok(0.45)

    @staticmethod
    def _fit(slots: list[_Slot], avail: float) -> list[_Slot]:
        """Drop clutter, shrink then drop free space, drop baffles, then BBUs (never the last one) until the
        stack fits `avail` rack units and leaves room in the object budget. One BBU always fits: u <= 0.9 H / 4."""

        def too_big() -> bool:
            return sum(s.units for s in slots) > avail or 1 + sum(s.labelled for s in slots) > MAX_OBJECTS - 3

        for kind in ("clutter", "empty", "baffle", "bbu"):
            while too_big() and any(s.kind == kind for s in slots):
                if kind == "bbu" and sum(s.kind == "bbu" for s in slots) == 1:
                    break
                victim = [s for s in slots if s.kind == kind][-1]
                if kind == "empty" and victim.units > 2:
                    victim.units -= 1
                else:
                    slots.remove(victim)
        return slots

    # --- background and cabinet ---------------------------------------------------------------

    def background(self) -> None:
        """Wall, floor, ceiling ladder and the unlabelled things around the cabinet."""
        rng, u = self.rng, self.u
        wall = _jit(rng, rng.choice(WALLS), 6)
        self.draw.rectangle([0, 0, self.W, self.H], fill=wall)
        self.cab_y0 = self.stack_y0 - (ODF_UNITS * self.use_odf + rng.uniform(0.6, 1.4)) * u
        self.cab_y1 = self.stack_y1 + (GROUND_BAR_UNITS * self.use_gbar + rng.uniform(0.5, 1.2)) * u
        if self.closeup:
            self.cab_y0, self.cab_y1 = -u, self.H + u
        floor_y = self.cab_y1 - rng.uniform(0, 0.3) * u
        if floor_y < self.H:
            self._floor(floor_y, wall)
        self.ladder_y = self._ladder() if self.cab_y0 > 2.2 * u and not self.closeup else None
        self._neighbour_cabinets()
        if rng.random() < 0.35 and floor_y < self.H:
            self._extinguisher(floor_y)

    def _floor(self, floor_y: float, wall: RGB) -> None:
        """Tiled floor in perspective from the cabinet's foot to the camera."""
        rng, dr, u = self.rng, self.draw, self.u
        floor = _jit(rng, rng.choice(FLOORS), 6)
        dr.rectangle([0, floor_y, self.W, self.H], fill=floor)
        dr.line([(0, floor_y), (self.W, floor_y)], fill=_tone(wall, 0.8), width=max(2, int(0.06 * u)))
        step, y = 0.5 * u, floor_y
        while y < self.H:  # tile joints, spacing growing towards the camera
            step *= 1.35
            y += step
            dr.line([(0, y), (self.W, y)], fill=_tone(floor, 0.82), width=max(1, int(0.04 * u)))
        vx = self.W / 2 + rng.uniform(-0.3, 0.3) * self.W
        for k in range(-6, 7):
            x_far = vx + k * 1.5 * u
            dr.line([(x_far, floor_y), (vx + (x_far - vx) * 3.2, self.H)], fill=_tone(floor, 0.85), width=max(1, int(0.04 * u)))

    def _ladder(self) -> float:
        """The ceiling cable ladder above the cabinet; returns its top."""
        rng, dr, u = self.rng, self.draw, self.u
        ly = self.cab_y0 - rng.uniform(1.2, 2.0) * u
        lc = _jit(rng, (120, 124, 128), 10)
        for yy in (ly, ly + 0.5 * u):
            dr.rectangle([0, yy, self.W, yy + 0.1 * u], fill=lc)
        x = rng.uniform(0, u)
        while x < self.W:
            dr.rectangle([x, ly, x + 0.08 * u, ly + 0.6 * u], fill=_tone(lc, 0.85))
            x += 0.9 * u
        return ly

    def _neighbour_cabinets(self) -> None:
        """Closed cabinets (perforated doors) beside ours: equipment-room context, never labelled."""
        rng, dr, u = self.rng, self.draw, self.u
        for side in (-1, 1):
            edge = self.cab_x0 if side < 0 else self.cab_x1
            gap = rng.uniform(0.2, 2.5) * u
            x0, x1 = (edge - gap - 11 * u, edge - gap) if side < 0 else (edge + gap, edge + gap + 11 * u)
            if (side < 0 and x1 <= 0) or (side > 0 and x0 >= self.W) or rng.random() < 0.3:
                continue
            colour = _jit(rng, rng.choice(CABINETS), 6)
            top = self.cab_y0 - rng.uniform(-0.5, 1.5) * u
            dr.rectangle([x0, top, x1, self.cab_y1], fill=colour)
            dr.rectangle([x0 + 0.4 * u, top + 0.6 * u, x1 - 0.4 * u, self.cab_y1 - 0.4 * u], fill=_tone(colour, 0.85))
            dot, step = _tone(colour, 1.5 if sum(colour) < 300 else 0.7), 0.3 * u
            yy = top + 0.8 * u
            while yy < min(self.H, self.cab_y1 - 0.5 * u):
                xx = x0 + 0.6 * u
                while xx < x1 - 0.5 * u:
                    if 0 <= xx <= self.W:
                        dr.rectangle([xx, yy, xx + 0.08 * u, yy + 0.08 * u], fill=dot)
                    xx += step
                yy += step

    def _extinguisher(self, floor_y: float) -> None:
        """A red fire extinguisher on the floor, clear of the cabinet (red, but no logo: not a Huawei cue)."""
        rng, dr, u = self.rng, self.draw, self.u
        room_l, room_r = self.cab_x0 - 2.2 * u, self.W - self.cab_x1 - 2.2 * u
        if max(room_l, room_r) <= 0:
            return
        x = rng.uniform(0.2 * u, room_l) if room_l >= room_r else self.cab_x1 + 1.0 * u + rng.uniform(0, room_r)
        top = floor_y + 0.3 * u - 3.2 * u
        dr.rounded_rectangle([x, top, x + 1.1 * u, floor_y + 0.3 * u], radius=0.4 * u, fill=_jit(rng, (178, 26, 24), 10))
        dr.rectangle([x + 0.35 * u, top - 0.5 * u, x + 0.75 * u, top + 0.1 * u], fill=(30, 30, 30))
        dr.rectangle([x + 0.15 * u, top + 1.0 * u, x + 0.95 * u, top + 1.8 * u], fill=(236, 236, 230))

    def cabinet(self) -> None:
        """The open cabinet: frame, posts, dark interior, rails with cage-nut holes."""
        rng, dr, u = self.rng, self.draw, self.u
        c = self.cab_colour
        dark = sum(c) < 300
        dr.rectangle([self.cab_x0, self.cab_y0, self.cab_x1, self.cab_y1], fill=c)
        inner_top = self.stack_y0 - (ODF_UNITS if self.use_odf else 0.15) * u
        inner_bot = self.stack_y1 + (GROUND_BAR_UNITS if self.use_gbar else 0.15) * u
        self.inner = [self.cab_x0 + self.pw, inner_top, self.cab_x1 - self.pw, inner_bot]
        dr.rectangle(self.inner, fill=_jit(rng, (26, 27, 30), 4))
        for x0 in (self.cab_x0, self.cab_x1 - self.pw):  # posts with a highlight edge
            dr.rectangle([x0, self.cab_y0, x0 + self.pw, self.cab_y1], fill=_tone(c, 1.15 if dark else 0.95))
            dr.line([(x0 + 0.1 * self.pw, self.cab_y0), (x0 + 0.1 * self.pw, self.cab_y1)], fill=_tone(c, 1.6 if dark else 1.06), width=max(1, int(0.05 * u)))
        if self.cab_y0 > -u:  # top panel vents
            for k in range(int((self.cab_x1 - self.cab_x0) / (0.5 * u)) - 2):
                x = self.cab_x0 + self.pw + 0.3 * u + k * 0.5 * u
                if x + 0.3 * u < self.cab_x1 - self.pw:
                    dr.rectangle([x, self.cab_y0 + 0.2 * u, x + 0.3 * u, self.cab_y0 + 0.35 * u], fill=_tone(c, 0.6 if dark else 0.75))
        rail = _jit(rng, RAIL, 8)
        for x0 in (self.ix0, self.ix1 - self.ew):  # rails with square cage-nut holes, three per U
            dr.rectangle([x0, inner_top, x0 + self.ew, inner_bot], fill=rail)
            dr.line([(x0, inner_top), (x0, inner_bot)], fill=_tone(rail, 0.7), width=max(1, int(0.04 * u)))
            y = inner_top + 0.1 * u
            while y < inner_bot - 0.2 * u:
                hx = x0 + self.ew * 0.5 - 0.08 * u
                dr.rectangle([hx, y, hx + 0.16 * u, y + 0.16 * u], fill=(34, 34, 36))
                y += u / 3

    # --- the mounting area --------------------------------------------------------------------

    def paint_stack(self) -> None:
        """ODF, the slots top to bottom, the ground bar, the cabinet space, then the fibres in front."""
        if self.use_odf:
            self.odf(self.stack_y0 - ODF_UNITS * self.u)
        for s in self.slots:
            box = [self.ix0, s.y0, self.ix1, s.y1]
            if s.kind == "bbu":
                self.bbu(box, s)
            elif s.kind == "baffle":
                self.baffle(box, s.installed)
            elif s.kind == "clutter":
                self.clutter(box)
            else:
                self.empty_space(box)
        if self.use_gbar:
            self.ground_bar(self.stack_y1 + 0.05 * self.u)
        # Rail to rail over the whole stack; it contains the rest, so it blocks nothing. A one-slot stack would
        # give the cabinet space the very box of its only unit: an ambiguous duplicate, so it is not labelled.
        if not self.closeup and len(self.slots) > 1:
            self.add([self.ix0, self.stack_y0, self.ix1, self.stack_y1], SPACE[self.full], reserved=True, blocks=False)
        for fibre in self.fibres:  # drawn last so they run in front of whatever they cross
            self._cord(*fibre)

    def _cord(self, points: list[tuple[float, float]], colour: RGB, width: float) -> None:
        self.draw.line(points, fill=_tone(colour, 0.6), width=int(width * 1.35), joint="curve")
        self.draw.line(points, fill=colour, width=max(1, int(width)), joint="curve")

    def _route_fibre(self, start: tuple[float, float], drop_to: float, colour: RGB) -> None:
        """A fibre from a plug down to `drop_to`, then sideways into the nearer side channel."""
        u = self.u
        left = start[0] - self.ix0 < self.ix1 - start[0]
        chan_x = (self.ix0 - self.cw_l * 0.5) if left else (self.ix1 + self.cw_r * 0.5)
        end = (chan_x + self.rng.uniform(-0.2, 0.2) * u, min(drop_to + self.rng.uniform(0.6, 2.0) * u, self.inner[3] - 0.1 * u))
        pts = _bezier(start, (start[0], drop_to + 0.3 * u), (start[0] + (chan_x - start[0]) * 0.3, drop_to))
        pts += _bezier((start[0] + (chan_x - start[0]) * 0.3, drop_to), (chan_x, drop_to), end)[1:]
        self.fibres.append((pts, colour, max(2.0, 0.1 * u)))

    def _ear_screws(self, ear: Box, per_ear: int, colour: RGB) -> None:
        """The mounting screws of one BBU ear, each correct or wrong, all labelled."""
        cx = (ear[0] + ear[2]) / 2
        fracs = (0.27, 0.73) if per_ear == 2 else (0.5,)
        for f in fracs:
            cy = ear[1] + f * (ear[3] - ear[1])
            ok = self.part_ok(0.3)
            box = self.screw(cx, cy, self.d, ok, surface=colour)
            self.add(box, point_label(MOUNT_SCREW, ok), reserved=True)

    def bbu(self, box: Box, slot: _Slot) -> None:
        """A BBU across the rails: ears with mounting screws, the brand's face, ports with CPRI plugs in some."""
        rng, dr, u, d, ew = self.rng, self.draw, self.u, self.d, self.ew
        x0, y0, x1, y1 = box
        body = [x0 + ew, y0, x1 - ew, y1]
        panel, board = (_jit(rng, c, 6) for c in BRAND_COLOURS[slot.brand])
        ear_col = _tone(panel, 0.9) if slot.brand != "爱立信" else (92, 94, 100)
        dr.rectangle([x0 + 0.05 * u, y1, x1 - 0.05 * u, y1 + 0.12 * u], fill=(12, 12, 14))  # contact shadow
        for ex0 in (x0, body[2]):
            dr.rectangle([ex0, y0 + 0.02 * (y1 - y0), ex0 + ew, y1 - 0.02 * (y1 - y0)], fill=ear_col, outline=_tone(ear_col, 0.65), width=max(1, int(0.04 * u)))
        dr.rectangle(body, fill=panel)
        dr.line([(body[0], y0), (body[2], y0)], fill=_tone(panel, 1.25), width=max(1, int(0.05 * u)))
        dr.line([(body[0], y1), (body[2], y1)], fill=_tone(panel, 0.6), width=max(1, int(0.06 * u)))
        face = {"华为": self._huawei_face, "中兴": self._zte_face, "爱立信": self._ericsson_face}[slot.brand]
        ports = face(body, panel, board)
        self.busy.append([body[0], y0, body[2], y0 + 0.08 * (y1 - y0)])  # top edge: a sticker there would hang off
        self._ear_screws([x0, y0, x0 + ew, y1], slot.screws_per_ear, ear_col)
        self._ear_screws([body[2], y0, x1, y1], slot.screws_per_ear, ear_col)
        # ports are drawn empty; plugs go into some of them while the budget lasts
        fibre_colour = rng.choice(((236, 122, 30), (236, 122, 30), (60, 188, 204)))
        plugged = [p for p in ports if rng.random() < 0.5]
        if ports and not plugged and rng.random() < 0.8:
            plugged = [rng.choice(ports)]
        for p in ports:
            self.port(p)
            self.busy.append(p)
        for tail in self.plug_row(plugged, body[0], body[2], "cpri", p_wrong=0.3):
            self.busy.append([tail[0] - 0.2 * d, tail[1], tail[0] + 0.2 * d, y1])  # fibre drop: no sticker here
            self._route_fibre(tail, y1 + 0.15 * u, fibre_colour)
        self.add(box, f"{BBU_CAT}/{slot.brand}", reserved=True, blocks=False)  # stickers may sit on its face
        self.bbus.append((box, slot.brand))

    def _port_at(self, x: float, body: Box) -> Box:
        """A port opening at `x`, in the upper part of the face so a seated plug hangs inside it."""
        y = body[1] + 0.13 * (body[3] - body[1])
        return [x, y, x + self.d, y + 0.45 * self.d]

    def _huawei_face(self, body: Box, panel: RGB, board: RGB) -> list[Box]:
        """Grey panel, red top bar and fan logo on the fan module, boards in 2 x 3 with ports on the top row."""
        rng, dr, u, d = self.rng, self.draw, self.u, self.d
        bx0, y0, bx1, y1 = body
        bh, bw = y1 - y0, bx1 - bx0
        mod = [bx0, y0, bx0 + 0.15 * bw, y1]
        dr.rectangle(mod, fill=_tone(panel, 0.92))
        for k in range(6):  # fan-module vents
            yy = y0 + bh * (0.55 + 0.065 * k)
            dr.line([(mod[0] + 0.15 * u, yy), (mod[2] - 0.15 * u, yy)], fill=_tone(panel, 0.65), width=max(1, int(0.05 * u)))
        red = _jit(rng, (206, 18, 32), 8)
        dr.rectangle([bx0, y0, bx1, y0 + 0.07 * bh], fill=red)  # red accent bar
        cx, cy, r = (mod[0] + mod[2]) / 2, y0 + 0.38 * bh, min(0.28 * bh, 0.4 * (mod[2] - mod[0]))
        for k in range(8):  # the fan-shaped flower logo
            a = math.radians(-90 + (k - 3.5) * 22)
            tip = (cx + r * math.cos(a), cy + r * math.sin(a) + 0.3 * r)
            side = a + math.pi / 2
            base = (cx, cy + 0.35 * r)
            mid = ((base[0] + tip[0]) / 2, (base[1] + tip[1]) / 2)
            wx, wy = 0.16 * r * math.cos(side), 0.16 * r * math.sin(side)
            dr.polygon([base, (mid[0] + wx, mid[1] + wy), tip, (mid[0] - wx, mid[1] - wy)], fill=red)
        self.busy.append(mod)
        ports = []
        area = [mod[2] + 0.02 * bw, y0 + 0.09 * bh, bx1 - 0.01 * bw, y1 - 0.05 * bh]
        cwid, rh = (area[2] - area[0]) / 3, (area[3] - area[1]) / 2
        for row in range(2):
            for col in range(3):
                b = [area[0] + col * cwid + 0.02 * u, area[1] + row * rh + 0.02 * u, area[0] + (col + 1) * cwid - 0.02 * u, area[1] + (row + 1) * rh - 0.02 * u]
                dr.rectangle(b, fill=board, outline=_tone(board, 0.7), width=max(1, int(0.04 * u)))
                dr.rectangle([b[0] + 0.05 * u, b[1] + 0.2 * (b[3] - b[1]), b[0] + 0.16 * u, b[3] - 0.2 * (b[3] - b[1])], fill=_tone(board, 0.55))
                for k in range(2):  # status LEDs
                    lx = b[2] - (0.25 + 0.22 * k) * u
                    dr.ellipse([lx, b[3] - 0.22 * u, lx + 0.1 * u, b[3] - 0.12 * u], fill=rng.choice(((40, 220, 70), (40, 220, 70), (230, 40, 30))))
                if row == 0:
                    for k in range(rng.choice((1, 2))):
                        px = b[0] + 0.3 * u + k * 1.5 * d
                        if px + d < b[2] - 0.3 * u:
                            ports.append(self._port_at(px, body))
        return ports

    def _zte_face(self, body: Box, panel: RGB, board: RGB) -> list[Box]:
        """Blue panel with three lighter board strips, a navy ZTE badge, ports spread over the right half."""
        rng, dr, u, d = self.rng, self.draw, self.u, self.d
        bx0, y0, bx1, y1 = body
        bh, bw = y1 - y0, bx1 - bx0
        badge = [bx0 + 0.02 * bw, y0 + 0.12 * bh, bx0 + 0.2 * bw, y1 - 0.12 * bh]
        for k in range(3):
            sy0 = y0 + bh * (0.06 + 0.3 * k)
            dr.rectangle([badge[2] + 0.02 * bw, sy0, bx1 - 0.01 * bw, sy0 + 0.26 * bh], fill=board, outline=_tone(board, 0.7), width=max(1, int(0.04 * u)))
        dr.rounded_rectangle(badge, radius=0.1 * u, fill=_jit(rng, (18, 40, 96), 5))
        dr.text(((badge[0] + badge[2]) / 2, (badge[1] + badge[3]) / 2), "ZTE", fill=(236, 240, 248), font=_font(0.42 * bh), anchor="mm")
        self.busy.append(badge)
        start, n = bx0 + 0.38 * bw, rng.randint(3, 5)
        step = (bx1 - 0.05 * bw - start - d) / max(1, n - 1)
        for k in range(rng.randint(2, 4)):  # LEDs in the lower strip
            lx = badge[2] + 0.06 * bw + k * 0.3 * u
            dr.ellipse([lx, y1 - 0.25 * bh, lx + 0.1 * u, y1 - 0.25 * bh + 0.1 * u], fill=(40, 230, 80))
        return [self._port_at(start + k * step, body) for k in range(n)]

    def _ericsson_face(self, body: Box, panel: RGB, board: RGB) -> list[Box]:
        """Slim charcoal unit: three slanted bars and ERICSSON at the left, silver foot strip, ports in pairs."""
        rng, dr, d = self.rng, self.draw, self.d
        bx0, y0, bx1, y1 = body
        bh, bw = y1 - y0, bx1 - bx0
        logo = [bx0 + 0.03 * bw, y0 + 0.18 * bh, bx0 + 0.27 * bw, y1 - 0.22 * bh]
        grey = _jit(rng, (214, 216, 220), 5)
        lh = logo[3] - logo[1]
        for k in range(3):  # three slanted bars
            lx, ly = logo[0] + k * 0.18 * lh, logo[1] + 0.25 * lh * k
            dr.polygon([(lx, ly + 0.1 * lh), (lx + 0.42 * lh, ly), (lx + 0.42 * lh, ly + 0.12 * lh), (lx, ly + 0.22 * lh)], fill=grey)
        dr.text((logo[0] + 0.95 * lh, (logo[1] + logo[3]) / 2), "ERICSSON", fill=grey, font=_font(0.22 * bh), anchor="lm")
        self.busy.append(logo)
        dr.rectangle([bx0, y1 - 0.12 * bh, bx1, y1], fill=_jit(rng, (150, 152, 158), 6))
        ports: list[Box] = []
        x = bx0 + 0.4 * bw
        while x + 2.12 * d < bx1 - 0.03 * bw and len(ports) < 8:  # pairs 0.12 d apart, 0.7 d between pairs
            ports += [self._port_at(x, body), self._port_at(x + 1.12 * d, body)]
            x += 2.82 * d
        if rng.random() < 0.6:
            ports = ports[: rng.randint(2, len(ports))]
        return ports

    def port(self, p: Box) -> None:
        """An empty port: a black opening in a metal cage."""
        dr, d = self.draw, self.d
        dr.rectangle([p[0] - 0.06 * d, p[1] - 0.06 * d, p[2] + 0.06 * d, p[3] + 0.06 * d], fill=(170, 172, 178))
        dr.rectangle(p, fill=(14, 14, 16))

    def plug_row(self, ports: list[Box], lo: float, hi: float, kind: Literal["cpri", "odf"], p_wrong: float) -> list[tuple[float, float]]:
        """Plug `ports` (one row, between x `lo` and `hi`) while the budget lasts; returns where each cord leaves."""
        tails = []
        ports = sorted(ports)
        left = lo
        for k, port in enumerate(ports):
            if not self.room():
                break
            right = ports[k + 1][0] if k + 1 < len(ports) else hi
            ok = self.part_ok(p_wrong)
            box, tail = self.plug(port, ok, kind, (port[0] - left, right - port[2]))
            self.add(box, point_label(CPRI if kind == "cpri" else PIGTAIL, ok))
            tails.append(tail)
            left = box[2]
        return tails

    def plug(self, port: Box, ok: bool, kind: Literal["cpri", "odf"], room: tuple[float, float]) -> tuple[Box, tuple[float, float]]:
        """Draw a plug in `port`; returns its box (with any exposed port) and where its cord leaves it.

        A crooked plug leans towards the side with `room` (free width left, right) for it, else it is half out.
        """
        rng, d = self.rng, self.d
        pw = 0.9 * d
        body_l, head_l = 0.78 * d, 0.46 * d
        sw, sh = int(math.ceil(pw)) + 2, int(math.ceil(body_l + head_l)) + 2
        sprite = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
        sd = ImageDraw.Draw(sprite)
        if kind == "cpri":
            body, head = _jit(rng, (236, 236, 232), 5), _jit(rng, (30, 92, 206), 8)
        else:
            body, head = _jit(rng, (70, 160, 96), 8), _jit(rng, (232, 198, 40), 8)
        sd.rounded_rectangle([1, 1, sw - 2, 1 + body_l], radius=max(1, int(0.1 * pw)), fill=body, outline=_tone(body, 0.7), width=max(1, int(0.06 * d)))
        for k in range(2):
            gy = 1 + body_l * (0.35 + 0.25 * k)
            sd.line([(0.2 * sw, gy), (0.8 * sw, gy)], fill=_tone(body, 0.8), width=max(1, int(0.05 * d)))
        sd.rounded_rectangle([0.14 * sw, body_l - 0.05 * d, 0.86 * sw, sh - 2], radius=max(1, int(0.12 * pw)), fill=head, outline=_tone(head, 0.65), width=max(1, int(0.05 * d)))
        sd.line([(0.3 * sw, body_l + 0.12 * d), (0.3 * sw, sh - 0.18 * d)], fill=_tone(head, 1.35), width=max(1, int(0.06 * d)))
        if ok:
            angle, top = rng.uniform(-3, 3), port[1] - 0.06 * d
        else:
            lean = [s for s, free in ((1, room[1]), (-1, room[0])) if free > 0.75 * d]  # +angle swings the tail right
            if lean and rng.random() < 0.5:  # crooked
                angle, top = rng.choice(lean) * rng.uniform(20, 34), port[1] + 0.35 * (port[3] - port[1])
            else:  # half out: the dark port shows above the plug
                angle, top = rng.uniform(-4, 4), port[1] + rng.uniform(0.75, 1.0) * (port[3] - port[1])
        box, to_canvas = self.paste(sprite, angle, (sw / 2, 0), ((port[0] + port[2]) / 2, top))
        return (box if ok else _union(box, port)), to_canvas((sw / 2, sh - 1))

    def screw(self, cx: float, cy: float, d: float, ok: bool, surface: RGB, hexagonal: bool = False) -> Box:
        """A screw head (correct) or an empty hole / raised tilted head (wrong); returns its box."""
        rng, dr = self.rng, self.draw
        r = d / 2
        box = [cx - r, cy - r, cx + r, cy + r]
        metal = _jit(rng, SILVER, 8)
        if ok:
            dr.ellipse([cx - r + 0.08 * d, cy - r + 0.1 * d, cx + r + 0.08 * d, cy + r + 0.1 * d], fill=_tone(surface, 0.5))
            self._head(cx, cy, r, metal, hexagonal, rng.uniform(0, 180))
            return box
        if rng.random() < 0.5:  # missing: an empty hole with a worn rim
            dr.ellipse([cx - 0.42 * d, cy - 0.42 * d, cx + 0.42 * d, cy + 0.42 * d], fill=_tone(surface, 0.72))
            dr.ellipse([cx - 0.3 * d, cy - 0.3 * d, cx + 0.3 * d, cy + 0.3 * d], fill=(10, 10, 12))
            dr.arc([cx - 0.3 * d, cy - 0.3 * d, cx + 0.3 * d, cy + 0.3 * d], 200, 340, fill=(70, 70, 74), width=max(1, int(0.05 * d)))
            return box
        # loose: the head stands off on its thread and leans; the shank shows
        sx = rng.choice((-1, 1)) * rng.uniform(0.16, 0.26) * d
        sy = -rng.uniform(0.12, 0.22) * d
        dr.ellipse([cx - 0.3 * d, cy - 0.3 * d, cx + 0.3 * d, cy + 0.3 * d], fill=(12, 12, 14))
        dr.line([(cx, cy), (cx + sx, cy + sy)], fill=(128, 130, 136), width=int(0.36 * d))
        for k in range(3):
            t = (k + 1) / 4
            dr.line([(cx + sx * t - 0.16 * d, cy + sy * t + 0.04 * d), (cx + sx * t + 0.16 * d, cy + sy * t - 0.04 * d)], fill=(70, 70, 74), width=max(1, int(0.05 * d)))
        hx, hy = cx + sx, cy + sy
        dr.ellipse([hx - r + 0.15 * d, hy - 0.3 * r + 0.25 * d, hx + r + 0.15 * d, hy + 0.6 * r + 0.3 * d], fill=_tone(surface, 0.35))
        self._head(hx, hy, r, metal, hexagonal, rng.uniform(0, 180), squash=0.62)
        return _union(box, [hx - r - 0.02 * d, hy - 0.62 * r - 0.02 * d, hx + r + 0.15 * d, hy + 0.62 * r + 0.3 * d])

    def _head(self, cx: float, cy: float, r: float, metal: RGB, hexagonal: bool, turn: float, squash: float = 1.0) -> None:
        dr = self.draw
        ry = r * squash
        if hexagonal:
            dr.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=_tone(metal, 0.85))  # washer
            pts = [(cx + 0.78 * r * math.cos(math.radians(turn + 60 * k)), cy + 0.78 * ry * math.sin(math.radians(turn + 60 * k))) for k in range(6)]
            dr.polygon(pts, fill=metal, outline=_tone(metal, 0.55))
            dr.ellipse([cx - 0.3 * r, cy - 0.3 * ry, cx + 0.3 * r, cy + 0.3 * ry], fill=_tone(metal, 0.75))
            return
        dr.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=metal, outline=_tone(metal, 0.55), width=max(1, int(0.07 * r)))
        dr.ellipse([cx - 0.72 * r, cy - 0.72 * ry, cx + 0.2 * r, cy + 0.2 * ry], fill=_tone(metal, 1.12))
        for a in (turn, turn + 90):  # cross slot
            c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
            dr.line([(cx - 0.55 * r * c, cy - 0.55 * ry * s), (cx + 0.55 * r * c, cy + 0.55 * ry * s)], fill=_tone(metal, 0.4), width=max(1, int(0.2 * r)))

    def baffle(self, box: Box, installed: bool) -> None:
        """A ribbed plate with pull handles (installed) or a black void with bare brackets (not installed)."""
        rng, dr, u = self.rng, self.draw, self.u
        x0, y0, x1, y1 = box
        inset = [x0, y0 + 0.04 * u, x1, y1 - 0.04 * u]
        if installed:
            plate = _jit(rng, rng.choice(((164, 167, 172), (150, 153, 158), (62, 64, 70))), 6)
            dr.rectangle(inset, fill=plate, outline=_tone(plate, 0.6), width=max(1, int(0.05 * u)))
            for k in range(4):  # louvre ribs
                yy = y0 + (0.22 + 0.18 * k) * (y1 - y0)
                dr.line([(x0 + self.ew * 1.1, yy), (x1 - self.ew * 1.1, yy)], fill=_tone(plate, 1.3 if sum(plate) < 300 else 0.72), width=max(1, int(0.07 * u)))
            for ex in (x0 + 0.35 * self.ew, x1 - 0.65 * self.ew):  # pull handles (not screws)
                dr.rounded_rectangle([ex, y0 + 0.25 * u, ex + 0.3 * self.ew, y1 - 0.25 * u], radius=0.05 * u, fill=_tone(plate, 0.75))
        else:
            dr.rectangle(inset, fill=(8, 8, 10))
            dr.line([(x0 + self.ew, (y0 + y1) / 2 + 0.2 * u), (x1 - self.ew, (y0 + y1) / 2 + 0.2 * u)], fill=(30, 30, 33), width=max(1, int(0.05 * u)))
            for ex, sgn in ((x0 + self.ew, 1), (x1 - self.ew, -1)):  # bare L-brackets where the plate should sit
                dr.rectangle(_ordered([ex, y0 + 0.2 * u, ex + sgn * 0.5 * u, y0 + 0.32 * u]), fill=RAIL)
                dr.rectangle(_ordered([ex, y0 + 0.2 * u, ex + sgn * 0.12 * u, y1 - 0.2 * u]), fill=RAIL)
        self.add(inset, BAFFLE[installed], reserved=True)

    def empty_space(self, box: Box) -> None:
        """Free rack space: the perforated back panel shows between the rails."""
        dr, u = self.draw, self.u
        x0, y0, x1, y1 = box
        inner = [x0 + self.ew, y0, x1 - self.ew, y1]
        back = _jit(self.rng, (74, 76, 80), 6)
        dr.rectangle(inner, fill=back)
        step, dot = 0.22 * u, _tone(back, 1.7)
        y = y0 + 0.15 * u
        while y < y1 - 0.1 * u:
            x = inner[0] + 0.15 * u
            while x < inner[2] - 0.1 * u:
                dr.rectangle([x, y, x + 0.08 * u, y + 0.08 * u], fill=dot)
                x += step
            y += step

    def clutter(self, box: Box) -> None:
        """Other equipment in the rack (power, transmission, fans): never labelled."""
        rng, dr, u = self.rng, self.draw, self.u
        x0, y0, x1, y1 = box
        kind = rng.choice(("power", "switch", "fans"))
        col = {"power": (52, 54, 58), "switch": (222, 222, 218), "fans": (96, 98, 104)}[kind]
        col = _jit(rng, col, 6)
        dr.rectangle([x0 + 0.15 * u, y0 + 0.03 * u, x1 - 0.15 * u, y1 - 0.03 * u], fill=col, outline=_tone(col, 0.6), width=max(1, int(0.05 * u)))
        h = y1 - y0
        if kind == "power":
            for k in range(8):
                bx = x0 + self.ew + 0.5 * u + k * 0.75 * u
                dr.rectangle([bx, y0 + 0.3 * h, bx + 0.4 * u, y1 - 0.3 * h], fill=(236, 236, 232))
                dr.rectangle([bx + 0.1 * u, y0 + 0.35 * h, bx + 0.3 * u, y0 + 0.5 * h], fill=(30, 30, 30))
        elif kind == "switch":
            for k in range(16):
                bx = x0 + self.ew + 1.5 * u + k * 0.42 * u
                if bx + 0.3 * u < x1 - self.ew:
                    dr.rectangle([bx, y0 + 0.35 * h, bx + 0.3 * u, y0 + 0.35 * h + 0.26 * u], fill=(40, 40, 42))
                    dr.rectangle([bx + 0.05 * u, y0 + 0.2 * h, bx + 0.12 * u, y0 + 0.2 * h + 0.07 * u], fill=(50, 220, 80))
        else:
            r = 0.4 * min(h, 1.2 * u)
            for k in range(4):
                fx, fy = x0 + (0.2 + 0.2 * k) * (x1 - x0), (y0 + y1) / 2
                dr.ellipse([fx - r, fy - r, fx + r, fy + r], outline=_tone(col, 0.5), width=max(1, int(0.08 * u)))
                dr.line([(fx - r, fy), (fx + r, fy)], fill=_tone(col, 0.5), width=max(1, int(0.06 * u)))
                dr.line([(fx, fy - r), (fx, fy + r)], fill=_tone(col, 0.5), width=max(1, int(0.06 * u)))
        for ex in (x0 + 0.2 * u, x1 - 0.5 * u):  # rack handles instead of screws, so screws stay BBU-only
            dr.rectangle([ex, y0 + 0.2 * h, ex + 0.3 * u, y1 - 0.2 * h], fill=_tone(col, 0.7))

    def odf(self, y0: float) -> None:
        """ODF panel at the top of the rack, with pigtail plugs in some adapters and a fibre tray below."""
        rng, dr, u, d = self.rng, self.draw, self.u, self.d
        x0, x1 = self.ix0, self.ix1
        y1 = y0 + 1.15 * u
        panel = _jit(rng, rng.choice(((206, 208, 212), (58, 60, 64))), 6)
        dr.rectangle([x0 + 0.1 * u, y0, x1 - 0.1 * u, y1], fill=panel, outline=_tone(panel, 0.6), width=max(1, int(0.05 * u)))
        dr.rectangle([x0, y1, x1, y1 + 0.65 * u], fill=(40, 41, 44))  # fibre tray
        self.panels.append([x0, y0, x1, y1])
        dr.line([(x0, y1 + 0.6 * u), (x1, y1 + 0.6 * u)], fill=(120, 122, 126), width=max(1, int(0.08 * u)))
        ph, pw = 0.45 * d, 1.0 * d
        span = [x0 + self.ew + 0.2 * u, x1 - self.ew - 0.2 * u - pw]
        n = min(rng.randint(6, 10), int((span[1] - span[0]) / (1.45 * d)) + 1)
        step = (span[1] - span[0]) / max(1, n - 1)
        py = y0 + 0.15 * u
        adapters = [[span[0] + k * step, py, span[0] + k * step + pw, py + ph] for k in range(n)]
        for a in adapters:
            dr.rectangle([a[0] - 0.08 * d, a[1] - 0.08 * d, a[2] + 0.08 * d, a[3] + 0.08 * d], fill=_jit(rng, (40, 90, 170), 6))
            dr.rectangle(a, fill=(12, 12, 14))
            self.busy.append(a)
        chosen = rng.sample(adapters, k=min(len(adapters), rng.choice((1, 1, 2, 2, 3))))
        for tail in self.plug_row(chosen, x0 + self.ew, x1 - self.ew, "odf", p_wrong=0.35):
            self._route_fibre(tail, y1 + 0.3 * u, (228, 200, 40))

    def ground_bar(self, y0: float) -> None:
        """Copper ground bar below the mounting area, with hex screws clamping yellow-green wires."""
        rng, dr, u, d = self.rng, self.draw, self.u, self.d
        n = min(rng.randint(2, 4), MAX_OBJECTS - len(self.objects) - self.reserved)
        if n <= 0:
            return
        bh = 1.2 * d
        width = min(self.iw * rng.uniform(0.45, 0.75), max(n * 1.9 * d + 1.5 * u, self.iw * 0.35))
        bx0 = self.ix0 + rng.uniform(0.1, 0.9) * (self.iw - width)
        by0 = y0 + 0.2 * u
        bar = [bx0, by0, bx0 + width, by0 + bh]
        self.panels.append(bar)
        for ix in (bar[0] - 0.5 * u, bar[2]):  # insulators
            dr.rectangle([ix, by0 - 0.05 * u, ix + 0.5 * u, by0 + bh + 0.05 * u], fill=(226, 214, 180))
        copper = _jit(rng, COPPER, 10)
        dr.rectangle(bar, fill=copper, outline=_tone(copper, 0.6), width=max(1, int(0.05 * u)))
        dr.line([(bar[0], by0 + 0.15 * bh), (bar[2], by0 + 0.15 * bh)], fill=_tone(copper, 1.25), width=max(1, int(0.06 * u)))
        step = (width - 0.9 * u) / n
        for k in range(n):
            cx, cy = bar[0] + 0.45 * u + (k + 0.5) * step, by0 + bh / 2
            ok = self.part_ok(0.35)
            if ok:  # the lug and its wire hang below the screw
                colour = YELLOW_GREEN[k % 2]
                dr.line([(cx, cy), (cx + rng.uniform(-0.5, 0.5) * u, by0 + bh + 1.6 * u)], fill=colour, width=int(0.3 * d))
                dr.ellipse([cx - 0.55 * d, cy - 0.55 * d, cx + 0.55 * d, cy + 0.55 * d], fill=_tone(SILVER, 0.8))
            box = self.screw(cx, cy, d, ok, surface=copper, hexagonal=True)
            self.add(box, point_label(GROUND_BAR_SCREW, ok))

    # --- things on the cabinet frame -------------------------------------------------------------

    def cables(self, want: int) -> int:
        """Up to `want` cable bundles: down the side channels, or along the ceiling ladder."""
        rng, u = self.rng, self.u
        candidates = [("v", self.cab_x0 + self.pw, self.cw_l), ("v", self.ix1, self.cw_r)]
        if self.ladder_y is not None:
            candidates.append(("h", 0.0, 0.0))
        rng.shuffle(candidates)
        drawn = 0
        for kind, cx0, cw in candidates:
            if drawn >= want:
                break
            wc = rng.uniform(0.2, 0.3) * u
            n = rng.randint(2, 4) if kind == "h" else min(rng.randint(2, 4), int((0.9 * cw - 0.1 * u) / (1.05 * wc)))
            if n < 2:  # the channel is too narrow for a bundle
                continue
            colours = [rng.choice(CABLE_COLOURS) for _ in range(n)]
            if kind == "v":
                xs = [cx0 + cw / 2 + (k - (n - 1) / 2) * wc * 1.05 for k in range(n)]
                y0 = self.inner[1] + 0.1 * u if self.cab_y0 > 0 else 0.0
                y1 = min(self.H, self.inner[3] - rng.uniform(0.1, 1.0) * u)
                box = [xs[0] - wc / 2 - 0.05 * u, y0, xs[-1] + wc / 2 + 0.05 * u, y1]
                blockers = [b[1] for b in self.busy if _overlaps(box, b, 0.1 * u)]
                if blockers:  # end the bundle above a terminal or sticker in the channel
                    y1 = box[3] = min(blockers) - 0.2 * u
                if not box_inside(box, (self.W, self.H), tol=1) or y1 - y0 < 2 * u:
                    continue
                for x, c in zip(xs, colours):
                    pts = [(x + 0.06 * u * math.sin(y / u + x), y) for y in np.linspace(y0, y1, 12)]
                    self._cord(pts, c, wc)
                y = y0 + 0.8 * u
                while y < y1 - 0.3 * u:  # cable ties
                    self.draw.rectangle([box[0] + 0.05 * u, y, box[2] - 0.05 * u, y + 0.1 * u], fill=(236, 236, 232))
                    y += rng.uniform(1.2, 1.8) * u
            else:
                # along the ladder from one side of the photo, then down into the cabinet roof
                ly = self.ladder_y + 0.3 * u
                side = rng.choice((0.0, float(self.W)))
                xe = (self.cab_x0 + self.cab_x1) / 2 + rng.uniform(-3, 3) * u
                bend = 0.6 * u
                for k, c in enumerate(colours):
                    off = (k - (n - 1) / 2) * wc * 1.05
                    yy, xx = ly + off, xe - off if side > xe else xe + off
                    pts = [(x, yy) for x in np.linspace(side, xe - bend if side < xe else xe + bend, 10)]
                    pts += _bezier(pts[-1], (xx, yy), (xx, yy + bend))[1:] + [(xx, self.cab_y0 + 0.1 * u)]
                    self._cord(pts, c, wc)
                xs_all = [xe + (k - (n - 1) / 2) * wc * 1.05 for k in range(n)]
                box = [min(side, min(xs_all) - wc / 2), ly - (n / 2) * wc * 1.05 - 0.05 * u,
                       max(side, max(xs_all) + wc / 2), self.cab_y0 + 0.1 * u]
            self.add([max(0.0, box[0]), max(0.0, box[1]), min(float(self.W), box[2]), min(float(self.H), box[3])], CABLE, reserved=True)
            drawn += 1
        return drawn

    def ground_terminal(self, want: int) -> int:
        """Ground wire from a BBU to a lug bolted on a cabinet post (when `want`); returns 1 if drawn."""
        rng, u, d = self.rng, self.u, self.d
        if not want or not self.bbus:
            return 0
        (bx0, by0, bx1, by1), _ = rng.choice(self.bbus)
        posts = [(self.cab_x0, 1), (self.cab_x1 - self.pw, -1)]
        rng.shuffle(posts)
        for px0, toward in posts:
            cx = px0 + self.pw / 2
            cy = by1 + rng.uniform(-0.2, 1.0) * u
            zone = [cx - 1.0 * d, cy - 0.7 * d, cx + 1.0 * d, cy + 1.8 * d]
            if self.free(zone, 0.1 * u):
                break
        else:
            return 0
        ok = self.part_ok(0.45)
        lug = _jit(rng, (204, 204, 208), 6)
        r = 0.5 * d
        sw, sh = int(d) + 4, int(2.2 * d) + 4
        sprite = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
        sd = ImageDraw.Draw(sprite)
        sd.rectangle([sw / 2 - 0.22 * d, r, sw / 2 + 0.22 * d, 1.7 * d], fill=_tone(lug, 0.85))  # barrel
        sd.rectangle([sw / 2 - 0.26 * d, 1.55 * d, sw / 2 + 0.26 * d, sh - 2], fill=YELLOW_GREEN[1])  # sleeve
        sd.ellipse([2, 2, 2 + d, 2 + d], fill=lug, outline=_tone(lug, 0.6), width=max(1, int(0.06 * d)))
        sd.ellipse([2 + 0.3 * d, 2 + 0.3 * d, 2 + 0.7 * d, 2 + 0.7 * d], fill=(0, 0, 0, 0))
        if ok:  # angled towards its wire, ring on the bolt
            angle, (hx, hy) = toward * rng.uniform(30, 55), (cx, cy)
        else:  # hanging straight down below the empty bolt hole
            angle, (hx, hy) = rng.uniform(-12, 12), (cx, cy - 0.55 * d)
        self.draw.ellipse([hx - 0.24 * d, hy - 0.24 * d, hx + 0.24 * d, hy + 0.24 * d], fill=(10, 10, 12))
        box, to_canvas = self.paste(sprite, angle, (2 + r, 2 + r), (cx, cy))
        if ok:  # the nut and washer that hold it
            self._head(cx, cy, 0.36 * d, _jit(rng, SILVER, 6), True, rng.uniform(0, 60))
        else:
            box = _union(box, [hx - 0.3 * d, hy - 0.3 * d, hx + 0.3 * d, hy + 0.3 * d])
        tail = to_canvas((sw / 2, sh - 2))
        target = (bx0 + 0.1 * u if toward > 0 else bx1 - 0.1 * u, by1 - 0.2 * u)
        pts = _bezier(tail, (tail[0], max(tail[1], target[1]) + 0.8 * u), target)
        width = 0.26 * d
        for k in range(len(pts) - 1):  # yellow-green stripes
            self.draw.line([pts[k], pts[k + 1]], fill=YELLOW_GREEN[k % 2], width=max(1, int(width)))
        self.add(box, point_label(GROUND_TERMINAL, ok), reserved=True)
        return 1

    def stickers(self, want: int) -> int:
        """Up to `want` label stickers on BBU faces, the cabinet's top panel or posts, wherever there is room."""
        rng, u, d = self.rng, self.u, self.d
        drawn = 0
        places = []
        for box, _ in self.bbus:
            places.append(("bbu", [box[0] + self.ew, box[1] + 0.1 * u, box[2] - self.ew, box[3] - 0.05 * u]))
        if self.cab_y0 > 0 and not self.closeup:
            places.append(("top", [self.ix0, self.cab_y0 + 0.4 * u, self.ix1, self.inner[1] - 0.05 * u]))
        for px0 in (self.cab_x0, self.cab_x1 - self.pw):
            places.append(("post", [px0 + 0.06 * self.pw, max(self.cab_y0, 0) + 0.2 * u, px0 + 0.94 * self.pw, min(self.cab_y1, self.H) - 0.2 * u]))
        for _ in range(want):
            for _try in range(12):
                kind, area = rng.choice(places)
                if kind == "post":
                    sw = area[2] - area[0]
                    sh = sw * rng.uniform(1.3, 1.8)
                else:
                    sh = rng.uniform(0.7, 0.95) * d
                    sw = sh * rng.uniform(1.8, 2.8)
                if area[2] - area[0] < sw or area[3] - area[1] < sh:
                    continue
                x = rng.uniform(area[0], area[2] - sw)
                y = rng.uniform(area[1], area[3] - sh)
                if kind == "top":
                    y = area[1] + (area[3] - area[1] - sh) / 2
                cand = [x, y, x + sw, y + sh]
                if self.free(cand, 0.1 * d):
                    self.sticker(cand, vertical=kind == "post")
                    drawn += 1
                    break
        return drawn

    def sticker(self, box: Box, vertical: bool) -> None:
        """A yellow (sometimes white) tag with rows of dark "characters", slightly askew."""
        rng = self.rng
        x0, y0, x1, y1 = box
        paper = _jit(rng, (246, 206, 38), 8) if rng.random() < 0.85 else _jit(rng, (242, 242, 236), 4)
        w, h = int(x1 - x0), int(y1 - y0)
        sprite = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        sd = ImageDraw.Draw(sprite)
        sd.rectangle([0, 0, w - 1, h - 1], fill=paper, outline=_tone(paper, 0.7), width=max(1, int(0.03 * min(w, h))))
        lines = rng.randint(2, 3)
        along, across = (h, w) if vertical else (w, h)
        for k in range(lines):  # text: rows of "characters"
            pos = across * (0.2 + 0.6 * (k + 0.5) / lines)
            t = 0.12 * along
            while t < along * (0.88 - 0.15 * rng.random()):
                ch = rng.uniform(0.04, 0.09) * along
                thick = max(1.0, across * 0.1)
                seg = [t, pos - thick / 2, t + ch, pos + thick / 2]
                sd.rectangle([seg[1], seg[0], seg[3], seg[2]] if vertical else seg, fill=(30, 30, 30))
                t += ch + 0.025 * along
        placed, _ = self.paste(sprite, rng.uniform(-3, 3), (w / 2, h / 2), ((x0 + x1) / 2, (y0 + y1) / 2))
        self.add(placed, STICKER, reserved=True)
