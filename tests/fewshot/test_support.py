"""Support layouts (<class>/, shot<K>/<class>/, <class>/shot<K>/), nested class names and seeded K-shot draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbuvl.fewshot.support import read_support, sample_support, support_items


def put(root: Path, rel: str, seed: int) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def test_flat_layout_gives_one_class_per_folder_and_nested_folders_give_label_paths(tmp_path):
    for i in range(3):
        put(tmp_path, f"标签贴纸/{i}.png", i)
        put(tmp_path, f"螺丝连接点/新接头/连接正确/{i}.jpg", 10 + i)
    s = read_support(tmp_path)
    assert s.classes == ["标签贴纸", "螺丝连接点/新接头/连接正确"]
    chosen, warnings = sample_support(s, None)
    assert {k: len(v) for k, v in chosen.items()} == {"标签贴纸": 3, "螺丝连接点/新接头/连接正确": 3}
    assert warnings == []


def test_shot_folders_are_used_as_they_are_in_both_layouts(tmp_path):
    put(tmp_path, "shot1/a/x.png", 1)
    for i in range(3):
        put(tmp_path, f"shot3/a/{i}.png", 10 + i)
    put(tmp_path, "b/shot1/y.png", 2)
    s = read_support(tmp_path)
    assert s.classes == ["a", "b"] and s.shot_folders == [1, 3]
    one, _ = sample_support(s, 1)
    assert one == {"a": [tmp_path / "shot1/a/x.png"], "b": [tmp_path / "b/shot1/y.png"]}
    three, warnings = sample_support(s, 3)
    assert three["a"] == sorted(tmp_path / f"shot3/a/{i}.png" for i in range(3))
    assert three["b"] == [tmp_path / "b/shot1/y.png"]  # no shot3 folder for b: drawn from its pool, short of 3
    assert any("'b' has 1 support image" in w for w in warnings)


def test_the_same_photo_in_two_shot_folders_counts_once(tmp_path):
    a = put(tmp_path, "shot1/cls/a.png", 1)
    (tmp_path / "shot5/cls").mkdir(parents=True)
    (tmp_path / "shot5/cls/a_copy.png").write_bytes(a.read_bytes())
    put(tmp_path, "shot5/cls/b.png", 2)
    s = read_support(tmp_path)
    assert len(s.pool("cls")) == 2
    assert len(sample_support(s, None)[0]["cls"]) == 2


def test_k_shot_draws_are_seeded_and_nested(tmp_path):
    for i in range(12):
        put(tmp_path, f"c/{i:02d}.png", i)
    s = read_support(tmp_path)
    one, five, ten = (sample_support(s, k, seed=7)[0]["c"] for k in (1, 5, 10))
    assert len(one) == 1 and len(five) == 5 and len(ten) == 10
    assert set(one) <= set(five) <= set(ten)
    assert sample_support(s, 5, seed=7)[0]["c"] == five
    assert any(sample_support(s, 5, seed=k)[0]["c"] != five for k in range(8, 12))
    items = support_items({"c": five})
    assert [it.label for it in items] == ["c"] * 5 and [it.path for it in items] == five


@pytest.mark.parametrize("rel, message", [
    ("loose.png", "must sit in a class folder"),
    ("shot1/loose.png", "must sit in a class folder"),
    ("Unknown/x.png", "cannot be a support class"),
    ("a/shot1/shot2/x.png", "more than one shot"),
])
def test_bad_layouts_are_refused_naming_the_file(tmp_path, rel, message):
    put(tmp_path, rel, 0)
    with pytest.raises(ValueError, match=message):
        read_support(tmp_path)


def test_missing_or_empty_support_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_support(tmp_path / "nope")
    with pytest.raises(ValueError, match="no images"):
        read_support(tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        sample_support(read_support(put(tmp_path, "a/x.png", 0).parent.parent), 0)


def test_class_folders_typed_two_ways_are_one_class_named_as_first_found(tmp_path):
    import unicodedata

    put(tmp_path, "BBU/0.png", 0)
    put(tmp_path, "ＢＢＵ/1.png", 1)  # full-width, as a Chinese input method types it
    put(tmp_path, unicodedata.normalize("NFC", "câble/0.png"), 2)
    put(tmp_path, unicodedata.normalize("NFD", "câble/1.png"), 3)  # the folder name as macOS writes it
    s = read_support(tmp_path)
    assert s.classes == ["BBU", unicodedata.normalize("NFC", "câble")]
    chosen, _ = sample_support(s, None)
    assert [len(v) for v in chosen.values()] == [2, 2]


def test_unknown_typed_full_width_is_refused_as_a_class(tmp_path):
    put(tmp_path, "Ｕｎｋｎｏｗｎ/0.png", 0)
    with pytest.raises(ValueError, match="'Unknown' is the answer for no class"):
        read_support(tmp_path)
