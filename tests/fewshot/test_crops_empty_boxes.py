"""write_crops leaves out a box with nothing of the photo inside it, and says which, as the queries' are left out."""

import json

import pytest
from PIL import Image

from bbuvl.fewshot.crops import write_crops


def _dataset(tmp_path):
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "a.png")
    objects = [{"desc": "A", "bbox_2d": [100, 100, 120, 120]},  # wholly outside the photo
               {"desc": "A", "bbox_2d": [10, 10, 10, 30]},  # of no width
               {"desc": "A", "bbox_2d": [5, 5, 30, 30]}]
    line = {"images": ["a.png"], "width": 64, "height": 48, "objects": objects}
    (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    return tmp_path / "d.jsonl"


def test_an_empty_box_is_no_support_crop_and_is_named(tmp_path):
    skipped: list[str] = []
    counts = write_crops(_dataset(tmp_path), tmp_path / "out", skipped=skipped)
    assert counts == {"A": 1}
    crops = sorted((tmp_path / "out").rglob("*.png"))
    assert [p.name for p in crops] == ["a_02.png"] and Image.open(crops[0]).size == (25, 25)
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{tmp_path / 'd.jsonl'}:1 objects[0]: ") and "empty inside the 64x48 image" in skipped[0]
    assert skipped[1].startswith(f"{tmp_path / 'd.jsonl'}:1 objects[1]: ")


def test_without_a_list_the_skips_are_warned(tmp_path):
    with pytest.warns(UserWarning) as caught:
        assert write_crops(_dataset(tmp_path), tmp_path / "out", per_class=1) == {"A": 1}
    said = [str(w.message) for w in caught]
    assert len(said) == 2 and all("empty inside the 64x48 image: skipped" in m for m in said)
    assert "d.jsonl:1 objects[0]: " in said[0] and "d.jsonl:1 objects[1]: " in said[1]
