"""write_crops leaves out a box with nothing of the photo inside it, and says which, as the queries' are left out."""

import json
import re

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


def test_label_folders_stay_inside_and_no_two_labels_share_one_on_any_system(tmp_path):
    # A label's parts were its folders as written: `x/../y` went into `y/` beside the crops of `y`, `../../z` outside
    # the crops folder, and `BBU` and `bbu` (`A/x` and `a/y`: `a/` is `A/` there) into one folder on macOS and
    # Windows, one class read back. `.hidden` was never read back, and `shot3` was read as a shot of no class.
    from bbuvl.data.names import name_key
    from bbuvl.fewshot.support import read_support

    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "a.png")
    labels = ["y", "x/../y", "../../z", "BBU", "bbu", "A/x", "a/y", ".hidden", "shot3"]
    line = {"images": ["a.png"], "width": 64, "height": 48,
            "objects": [{"desc": label, "bbox_2d": [5, 5, 30, 30]} for label in labels]}
    (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    out, notes = tmp_path / "w" / "crops", []
    assert write_crops(tmp_path / "d.jsonl", out, skipped=notes) == {label: 1 for label in labels}
    assert sorted(p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*.png")) == \
        [("a.png",)] + [("w", "crops")] * len(labels)  # nothing outside the crops folder
    folders = [p.parent.relative_to(out).as_posix() for p in sorted(out.rglob("*.png"))]
    assert len({name_key(f) for f in folders}) == len(labels)  # each label its own folder, on every system
    assert sorted(re.sub(r"\.[0-9a-f]{10}\b", ".<hash>", f) for f in folders) == \
        ["A/x", "BBU", "_hidden", "a.<hash>/y", "bbu.<hash>", "shot3_", "up/up/z", "x/up/y", "y"]
    assert sorted(image.label for image in read_support(out).images) == sorted(folders)
    said = {note.split(":")[0] for note in notes}
    assert said == {f"label '{label}'" for label in ("x/../y", "../../z", "bbu", "a/y", ".hidden", "shot3")}, notes
    assert any("'x/up/y'" in note for note in notes) and any("'shot3_'" in note for note in notes)


def test_crops_are_never_written_beside_files_already_there(tmp_path):
    # Written beside an earlier run's crops (other classes, another dataset), both were read back as one support set.
    out = tmp_path / "out"
    assert write_crops(_dataset(tmp_path), out, skipped=[]) == {"A": 1}
    first = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    with pytest.raises(ValueError, match=r"out: holds A/a_02.png: crops written beside them would be read back as one"):
        write_crops(_dataset(tmp_path), out, skipped=[])
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no half set left beside it
    (tmp_path / "empty").mkdir()
    assert write_crops(_dataset(tmp_path), tmp_path / "empty", skipped=[]) == {"A": 1}  # an empty folder is filled
