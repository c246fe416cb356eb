"""Training data: a record whose photo `bbuvl data check` calls an error is refused at start-up, by file and line."""

import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.train.dataset import read_training_data

BBU = "bbu基带处理单元/华为"


def dataset(tmp_path: Path, records: list[dict]) -> Path:
    """`records` as a JSONL beside two real 64x48 photos, images/a.png and images/b.png."""
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "images" / name)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def record(image: str, width: int = 64, height: int = 48) -> dict:
    return {"images": [image], "width": width, "height": height, "objects": [{"bbox_2d": [2, 2, 20, 20], "desc": BBU}]}


@pytest.mark.parametrize("bad, problem", [
    (record("images/missing.png"), "image images/missing.png: image file not found"),
    (record("images/b.png", width=640), "width/height 640x48 do not match image images/b.png, which is 64x48"),
    (record("images/text.png"), "image images/text.png: not an image"),
])
def test_a_photo_data_check_calls_an_error_is_refused_naming_file_and_line(tmp_path, bad, problem):
    path = dataset(tmp_path, [record("images/a.png"), bad])
    (tmp_path / "images" / "text.png").write_text("not a photo", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_training_data(path)
    assert str(e.value).startswith(f"{path}:2: {problem}")
    assert "bbuvl data check" in str(e.value)


def test_records_whose_photos_are_there_and_of_their_size_are_read(tmp_path):
    path = dataset(tmp_path, [record("images/a.png"), record("images/b.png")])
    assert len(read_training_data(path)) == 2
