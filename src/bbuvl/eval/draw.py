"""Drawing boxes and labels on photos: ground truth next to predictions, coloured by what went wrong.

Used by the evaluation report and by `bbuvl viz`. Boxes are in pixels of the stored image (the
record's width x height); pictures are shrunk to `max_side` for the report, boxes with them.
Colours on the prediction side follow the error buckets of `bbuvl.eval.matching`:
green right, orange wrong label, yellow mislocated, red extra; on the ground-truth side green found,
yellow mislocated, red missed. A fault also gets a thick magenta frame around its box and a magenta caption starting
with "!", whatever its outcome colour: on the ground-truth side a label the hierarchy marks (data/faults.py); on the
prediction side one of the photo's verdict faults, a fault label scoring at least the review threshold that judged the
photo (infer/verdict.py `at_review`). A head's alternatives (`labels_per_box`) give many a box a fault label at a score
near 0: below the review threshold it is drawn as any other box, as the server's page draws it (docs/eval.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, ImageDraw

from bbuvl.data.images import ImageError, load_image
from bbuvl.data.faults import Faults
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import ImageRecord
from bbuvl.data.text import same_label, short_words
from bbuvl.eval.fonts import FontChoice
from bbuvl.eval.matching import ImageMatch
from bbuvl.eval.predictions import PredictionLine
from bbuvl.infer.verdict import VerdictThresholds, at_review, unjudged_at_review

RGB = tuple[int, int, int]
GREEN: RGB = (20, 180, 60)
ORANGE: RGB = (245, 130, 20)
YELLOW: RGB = (225, 200, 0)
RED: RGB = (225, 35, 35)
BLUE: RGB = (40, 110, 230)
MAGENTA: RGB = (200, 0, 200)  # faults: no outcome colour is near it
FAULT_LEGEND = "magenta frame and caption: a fault"
COUNTED_LEGEND = ("magenta frame and caption: a fault its verdict counts (review ≥ {review:g}); \"?!\": a label the "
                  "hierarchy cannot judge, which sends its photo to review")
PREDICTION_LEGEND = "green right · orange wrong label · yellow mislocated · red extra"
TRUTH_LEGEND = "green found · yellow mislocated · red missed"
MIN_SIDE = 480  # small photos are enlarged so captions stay readable
# Each caption is measured and kept clear of those already placed, so drawing grows with the square of the boxes:
# 100,000 boxes on one photo took minutes. Past a few hundred the captions hide the photo anyway.
MAX_BOXES = 300
# A caption is laid out at about a millisecond a character (WenQuanYi: a 1,000-character label took 0.8 s, 300 such
# boxes four minutes a photo, and a model's answer may hold one), and past this many it runs off the picture anyway.
CAPTION_CHARS = 80


@dataclass
class DrawBox:
    """One box to draw: xyxy in the picture's pixels, its caption and colour."""

    box: Sequence[float]
    text: str
    color: RGB
    fault: bool = False  # drawn with a magenta frame and caption
    score: float | None = None  # a prediction's score: the highest-scored are kept when there are too many


def drawable(text: str, limit: int | None = None) -> str:
    """`text` as one line any font can lay out, cut to `limit` characters with "…": characters that are not printable
    (controls, line and paragraph separators, invisible formatting) spelled out as `\\r`, `\\u2029`; FreeType's
    layout fails on some of them ("raqm_layout() failed" for a carriage return), losing every picture after it."""
    spelled = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return spelled if limit is None or len(spelled) <= limit else spelled[:limit - 1] + "…"


def file_stem(stem: str) -> str:
    """A photo's name as part of its picture's file name: letters, digits, `.`, `-` and `_` (every other run one
    `_`: no `#`, `%`, `?` or space for a link to trip on, no control character), at most 120 bytes."""
    safe = re.sub(r"[^\w.-]+", "_", stem)
    # A disk's names stop at 255 bytes, and the picture's temporary name adds ~30 to it (docs/outputs.md, "Whole or
    # nothing"): a photo named with 250 bytes lost every picture, and 60 letters of CJK Extension B are 240 bytes.
    return safe.encode("utf-8")[:120].decode("utf-8", "ignore") or "photo"


def select_boxes(boxes: Sequence[DrawBox], limit: int = MAX_BOXES) -> list[DrawBox]:
    """At most `limit` of `boxes`, most telling first: faults, then errors (not green), then the highest-scored."""
    order = sorted(range(len(boxes)), key=lambda i: (not boxes[i].fault, boxes[i].color == GREEN,
                                                     -(boxes[i].score if boxes[i].score is not None else 0.0), i))
    return [boxes[i] for i in order[:limit]]


def count_title(what: str, boxes: Sequence[DrawBox], drawn: Sequence[DrawBox]) -> str:
    """"what (N)", and how many were left out when not every box is drawn."""
    if len(drawn) == len(boxes):
        return f"{what} ({len(boxes)})"
    return (f"{what} ({len(boxes)}; {len(boxes) - len(drawn)} left out, {len(drawn)} drawn: faults, errors, then the "
            "highest-scored)")


class LabelNamer:
    """Caption text for a label: as it is with a CJK font, its English gloss without one (Pillow's font has no Chinese)."""

    def __init__(self, font: FontChoice, hierarchy: Hierarchy | None = None):
        self.font, self.hierarchy = font, hierarchy or Hierarchy.load()

    def __call__(self, label: str, score: float | None = None) -> str:
        """`label` (or its gloss), with the score when given."""
        text = label if self.font.cjk else self.hierarchy.english(label)
        return f"{text} {score:.2f}" if score is not None else text


def open_photo(path: Path, size: tuple[int, int], max_side: int, min_side: int = 0) -> tuple[Image.Image, float, str | None]:
    """The photo as RGB in the record's `size` frame, fitted to [min_side, max_side] (`fitted`); the scale from the
    record's pixels to the picture's; and why the photo could not be read (drawn on a grey placeholder), or None."""
    shown, scale = fitted(size, max_side, min_side)
    try:
        image = load_image(path, at_least=shown).image
    except ImageError as e:
        return Image.new("RGB", shown, (90, 90, 90)), scale, str(e)
    # Boxes are in the record's pixels: the photo is shown in that frame, resized once to the picture's size, never
    # first to the record's, which may be far past any photo's (60000x60000 is 11 GB of pixels: a MemoryError).
    if image.size != shown:
        image = image.resize(shown, Image.BILINEAR)
    return image, scale, None


def fitted(size: tuple[int, int], max_side: int, min_side: int = 0) -> tuple[tuple[int, int], float]:
    """`size` scaled so that its longer side lies in [min_side, max_side] (small photos grow to stay readable), and
    the scale."""
    side = max(size)
    scale = max_side / side if side > max_side else (min_side / side if side < min_side else 1.0)
    if scale == 1.0:
        return (size[0], size[1]), scale
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), scale


def fit(image: Image.Image, max_side: int, min_side: int = 0) -> tuple[Image.Image, float]:
    """`image` resized so its longer side lies in [min_side, max_side] (`fitted`), and the scale."""
    shown, scale = fitted(image.size, max_side, min_side)
    return (image if shown == image.size else image.resize(shown, Image.BILINEAR)), scale


def draw_boxes(image: Image.Image, boxes: Sequence[DrawBox], font: FontChoice, scale: float = 1.0) -> Image.Image:
    """A copy of `image` with every box outlined and captioned (boxes multiplied by `scale` first); callers pass at
    most a few hundred (`select_boxes`).

    Captions go above their box, else inside its top edge, else below it: the first place that
    covers no caption already drawn (small neighbouring parts would otherwise hide each other's names).
    """
    out = image.copy()
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, side // 300)
    text_font = font.load(max(11, side // 55))
    scaled = [(tuple(v * scale for v in b.box), b) for b in boxes]
    for (x1, y1, x2, y2), b in scaled:
        if b.fault:
            pad = width * 2
            draw.rectangle([x1 - pad, y1 - pad, x2 + pad, y2 + pad], outline=MAGENTA, width=width * 2)
        draw.rectangle([x1, y1, x2, y2], outline=b.color, width=width)
    placed: list[tuple[float, float, float, float]] = []
    for (x1, y1, x2, y2), b in scaled:
        if not b.text:
            continue
        text = drawable(font.spelt(b.text), CAPTION_CHARS)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
        w, h = right - left + 4, bottom - top + 4
        x = min(max(0.0, x1), max(0.0, out.width - w))
        spots = [y1 - h, y1 + width, y2 + 1, y2 - h - width]
        spots = [min(max(0.0, y), max(0.0, out.height - h)) for y in spots]
        y = next((y for y in spots if not any(_overlap((x, y, x + w, y + h), r) for r in placed)), spots[0])
        placed.append((x, y, x + w, y + h))
        draw.rectangle([x, y, x + w, y + h], fill=MAGENTA if b.fault else b.color)
        draw.text((x + 2 - left, y + 2 - top), text, font=text_font, fill=(255, 255, 255))
    return out


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def side_by_side(panels: Sequence[tuple[str, Image.Image]], font: FontChoice, gap: int = 12) -> Image.Image:
    """Pictures next to each other, each under its title (wrapped to the picture's width), on white."""
    title_font = font.load(15)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    titles = [_wrap(measure, font.spelt(title), title_font, im.width) for title, im in panels]
    line_h = measure.textbbox((0, 0), "Hg国", font=title_font)[3] + 4
    title_h = max(len(t) for t in titles) * line_h + 6
    width = sum(im.width for _, im in panels) + gap * (len(panels) + 1)
    height = max(im.height for _, im in panels) + title_h + gap * 2
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for lines, (_, im) in zip(titles, panels):
        for i, line in enumerate(lines):
            draw.text((x, gap + i * line_h), line, font=title_font, fill=(30, 30, 30))
        canvas.paste(im, (x, gap + title_h))
        x += im.width + gap
    return canvas


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """`text` split into lines no wider than `width` (at spaces; explicit newlines kept; each line `drawable`)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        paragraph = drawable(paragraph)
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def truth_boxes(record: ImageRecord, match: ImageMatch | None, name: LabelNamer,
                is_fault: Callable[[str], bool] | None = None) -> list[DrawBox]:
    """Ground-truth boxes: green when found, yellow mislocated, red missed (all green without a match); faults framed."""
    missed = set(match.missed) if match else set()
    mislocated = {g for _, g, _ in match.mislocated} if match else set()
    out = []
    for i, o in enumerate(record.objects):
        color = RED if i in missed else YELLOW if i in mislocated else GREEN
        out.append(_box(o.bbox_2d, name(o.desc), color, o.desc, is_fault))
    return out


def _box(box: Sequence[float], text: str, color: RGB, label: str, is_fault: Callable[[str], bool] | None,
         score: float | None = None) -> DrawBox:
    fault = is_fault is not None and is_fault(label)
    return DrawBox(box, f"! {text}" if fault else text, color, fault, score)


def prediction_boxes(
    objects: Sequence[dict[str, Any]], record: ImageRecord | None, match: ImageMatch | None, name: LabelNamer,
    counts: Callable[[str, float], bool] | None = None, unjudged: Callable[[str, float], bool] | None = None,
) -> list[DrawBox]:
    """Predicted boxes coloured by outcome (all blue when there is no ground truth to compare with); those `counts`
    (label, score) says the verdict counts as faults framed, and those `unjudged` (label, score) says send the photo to
    review for a label the hierarchy cannot judge framed and captioned "?!": drawn as any other box nothing showed
    which. A box without a score is judged as scoring 1, as a line without scores is read (eval/predictions.py)."""
    color: dict[int, RGB] = {}
    if match is not None and record is not None:
        for p, g, _ in match.matched:
            color[p] = GREEN if same_label(objects[p]["label"], record.objects[g].desc) else ORANGE
        color.update({p: YELLOW for p, _, _ in match.mislocated})
        color.update({p: RED for p in match.extra})
    return [DrawBox(o["bbox_2d"], f"?! {name(o['label'], o.get('score'))}", color.get(i, BLUE), True, o.get("score"))
            if unjudged is not None and unjudged(o["label"], 1.0 if o.get("score") is None else o["score"]) else
            _box(o["bbox_2d"], name(o["label"], o.get("score")), color.get(i, BLUE), o["label"],
                 _scored(counts, o.get("score")), o.get("score")) for i, o in enumerate(objects)]


def _scored(counts: Callable[[str, float], bool] | None, score: float | None) -> Callable[[str], bool] | None:
    """`counts` for one box's label at its `score`; a box without a score is judged as scoring 1, as a line
    without scores is read (eval/predictions.py)."""
    return None if counts is None else lambda label: counts(label, 1.0 if score is None else score)


def _panel(photo: Image.Image, boxes: Sequence[DrawBox], font: FontChoice, scale: float,
           what: str) -> tuple[Image.Image, str]:
    """`boxes` drawn on `photo` (the most telling `MAX_BOXES`: `select_boxes`) and the panel's title counting them."""
    shown = select_boxes(boxes)
    return draw_boxes(photo, shown, font, scale), count_title(what, boxes, shown)


def compare_picture(
    record: ImageRecord, image_path: Path, objects: Sequence[dict[str, Any]] | None, match: ImageMatch | None,
    font: FontChoice, name: LabelNamer, max_side: int = 800, prediction_title: str = "prediction",
    faults: Faults | None = None, verdict: VerdictThresholds | None = None,
) -> tuple[Image.Image, str | None]:
    """Ground truth on the left and, when `objects` is given, predictions on the right, both on the photo; with
    `faults`, the ground truth's faults framed in magenta, and with `verdict` too (the thresholds that judged the
    photo) the predictions its verdict counts as faults (infer/verdict.py `at_review`). Also why the photo could not be
    read (drawn on a grey placeholder), or None."""
    is_fault = None if faults is None else faults.is_fault
    photo, scale, problem = open_photo(image_path, record.size, max_side, MIN_SIDE)
    compared = objects is not None and match is not None
    fault_legend = f" · {FAULT_LEGEND}" if faults is not None else ""
    counts = None if faults is None or verdict is None else partial(_counted, faults, verdict)
    counted = f" · {COUNTED_LEGEND.format(review=verdict.review)}" if counts is not None and verdict else ""
    left, truth_count = _panel(photo, truth_boxes(record, match if compared else None, name, is_fault), font, scale,
                               "ground truth")
    truth_title = truth_count + (f"\n{TRUTH_LEGEND}{fault_legend}" if compared else
                                 f"\n{FAULT_LEGEND}" if faults is not None else "")
    panels = [(truth_title if problem is None else f"{problem}\n{truth_count}", left)]
    if objects is not None:
        unjudged = partial(unjudged_at_review, faults=faults, thresholds=verdict) if counts is not None else None
        right, count = _panel(photo, prediction_boxes(objects, record, match, name, counts, unjudged), font, scale,
                              prediction_title)
        legend = f"\n{PREDICTION_LEGEND}{counted}" if compared else ""
        panels.append((count + legend, right))
    return side_by_side(panels, font), problem


def _counted(faults: Faults, verdict: VerdictThresholds, label: str, score: float) -> bool:
    """Whether a predicted (label, score) is one of its photo's verdict faults (`at_review`, by `verdict`)."""
    return at_review(label, score, faults, verdict)


def prediction_picture(
    image_path: Path, objects: Sequence[dict[str, Any]], font: FontChoice, name: LabelNamer, max_side: int = 800,
    size: tuple[int, int] | None = None, title: str = "prediction", faults: Faults | None = None,
    verdict: VerdictThresholds | None = None,
) -> tuple[Image.Image, str | None]:
    """Predictions alone on their photo (no ground truth), in blue, under `title`; with `faults` and `verdict` (the
    thresholds that judge the photo) the ones its verdict counts as faults framed in magenta, and those that send it to
    review for a label the hierarchy cannot judge framed "?!", as the report frames them (`compare_picture`). Also why
    the photo could not be read, or None."""
    if size is not None:
        photo, scale, problem = open_photo(image_path, size, max_side, MIN_SIDE)
    else:
        photo, stored, problem = _open_any(image_path)
        # fitted from the stored photo's size, the boxes' frame: a JPEG past Pillow's limit decodes smaller
        shown, scale = fitted(stored, max_side, MIN_SIDE)
        photo = photo if photo.size == shown else photo.resize(shown, Image.BILINEAR)
    counts = unjudged = None
    if faults is not None and verdict is not None:
        counts = partial(_counted, faults, verdict)
        unjudged = partial(unjudged_at_review, faults=faults, thresholds=verdict)
    drawn, counted = _panel(photo, prediction_boxes(objects, None, None, name, counts, unjudged), font, scale, title)
    if counts is not None and verdict is not None:
        counted += f"\n{COUNTED_LEGEND.format(review=verdict.review)}"
    return side_by_side([(f"{problem}\n{counted}" if problem else counted, drawn)], font), problem


def _open_any(path: Path) -> tuple[Image.Image, tuple[int, int], str | None]:
    try:
        loaded = load_image(path)
        return loaded.image, loaded.size, None
    except ImageError as e:
        return Image.new("RGB", (640, 480), (90, 90, 90)), (640, 480), str(e)


def prediction_title(line: PredictionLine | None) -> str:
    """The predictions panel's title: why there are none, where the line says (an error, an answer nothing could be
    read from) or there is no line: titled "prediction (0)", such a photo looked like one where the model found
    nothing; in `bbuvl viz` and the report alike."""
    if line is None:
        return "prediction: no line for this photo"
    if line.error:
        return f"prediction failed: {short_words(str(line.error))}"
    if line.failed:
        return "prediction: the answer could not be read"
    return "prediction (answer cut by the token budget)" if line.cut else "prediction"
