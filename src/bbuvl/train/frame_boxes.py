"""Training objects the model frame shrinks under a pixel: named once at the start of a run.

A photo larger than the frame is shown resized into it (data/coords.py), and its boxes with it: a 4-pixel screw of a
4000x3000 photo is a quarter of a frame pixel at 252x168. Its answer box is written one unit wide
(`round_box_with_area`; Qwen2.5-VL's unit is a frame pixel, the other families' a thousandth of each side), and screws
a few pixels apart (closer than a unit) are written as one box: `data check` and training refuse an
object annotated twice in the photo's pixels, and the frame then taught four screws as one box written three times.
"""

from __future__ import annotations

from bbuvl.data.coords import CoordinateContract
from bbuvl.encode.chat import answer_objects
from bbuvl.train.dataset import SampleSource, SourcedRecord, locate

SHOWN = 5  # photos named in the note; the counts cover them all


def shrunk(src: SourcedRecord, contract: CoordinateContract) -> tuple[int, int]:
    """(objects under one frame pixel on both sides, answer objects written as the same box and label as one before
    them) of a photo shown whole in its frame."""
    record = src.record
    (w, h), (fw, fh) = record.size, contract.model_size(record.size)
    tiny = sum((o.bbox_2d[2] - o.bbox_2d[0]) * fw / w < 1 and (o.bbox_2d[3] - o.bbox_2d[1]) * fh / h < 1
               for o in record.objects)
    written = [(tuple(o["bbox_2d"]), o["label"]) for o in answer_objects(record, contract)]
    return tiny, len(written) - len(set(written))


def shrunk_note(sources: list[SampleSource], contract: CoordinateContract, key: str = "data.train") -> str | None:
    """One warning naming (`file:line`) the photos of `sources` whose frame shrinks objects under a pixel or writes
    two of them as one answer box, with how many; None when there are none."""
    found = [(s.student, *shrunk(s.student, contract)) for s in sources]
    found = [f for f in found if f[1] or f[2]]
    if not found:
        return None
    shown = found[:SHOWN]
    named = "; ".join(
        f"{at}: {'x'.join(map(str, src.record.size))} shown at {'x'.join(map(str, contract.model_size(src.record.size)))}"
        f", {tiny} object(s) under a pixel" + (f", {twice} written again as an earlier one" if twice else "")
        for at, (src, tiny, twice) in zip(locate([f[0] for f in shown]), shown))
    more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
    tiny, twice = sum(f[1] for f in found), sum(f[2] for f in found)
    again = (f", and {twice} answer object(s) are the same box and label as another object of their photo: the model "
             "is taught to write one object twice" if twice else "")
    # A unit of an absolute answer is a frame pixel; a relative one writes a thousandth of each side, finer than the
    # frame of a large photo (a 4000-pixel side shown at 256: 4 photo pixels a unit, 16 a frame pixel)
    wide = "; their answer boxes are written one unit wide" if contract.box_format == "absolute" else ""
    return (f"{len(found)} photo(s) of {key} are shown so much smaller in the model frame that {tiny} object(s) are "
            f"under one frame pixel (the model cannot see them{wide}){again}: "
            f"{named}{more}. Raise model.max_pixels (and model.max_vision_tokens), or train on tiles of such photos "
            "(`bbuvl data tile`, docs/tiles.md)")
