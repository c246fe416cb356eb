"""Wide framing of a photo far wider than tall: every box inside the photo, and the dataset passes data check."""

from __future__ import annotations

from pathlib import Path

from bbuvl.data.check import check_dataset
from bbuvl.data.coords import box_inside, box_is_degenerate
from bbuvl.data.schema import read_records
from bbuvl.synthetic.dataset import synthesize


def test_a_wide_cabinet_at_12_to_1_keeps_only_boxes_inside_the_photo_and_passes_check(tmp_path: Path) -> None:
    # The cabinet ran past the photo's bottom and a part wholly below it clipped to an inverted box: the run died on
    # a validation traceback after rendering.
    synthesize(tmp_path / "d", 6, 2, size=(1200, 96), num_teachers=2)
    records = read_records(tmp_path / "d" / "train.jsonl") + read_records(tmp_path / "d" / "val.jsonl")
    boxes = [o.bbox_2d for r in records for o in r.objects]
    assert boxes and all(box_inside(b, (1200, 96)) and not box_is_degenerate(b) for b in boxes)
    assert not [p for p in check_dataset(tmp_path / "d") if p.severity == "error"]
