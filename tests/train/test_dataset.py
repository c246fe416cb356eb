"""Training data: a record whose photo `bbuvl data check` calls an error is refused at start-up, by file and line."""

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.chat import ChatEncoder
from bbuvl.encode.prompts import system_prompt
from bbuvl.train.dataset import ConversationDataset, read_training_data, read_training_rows, rows_as_sources

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


class RefusingImageProcessor:
    """A stock image processor that refuses every picture, as Qwen's refused a frame past 200:1 (ValueError)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        raise ValueError("absolute aspect ratio must be smaller than 200, got 283.0")


@pytest.fixture
def strip_dataset(tmp_path: Path) -> Path:
    """A 64x48 photo, then a 7919x41 strip (193:1, which `data check` passes) whose frame smart_resize alone rounds
    to 283:1."""
    path = dataset(tmp_path, [record("images/a.png")])
    Image.new("RGB", (7919, 41), (90, 90, 90)).save(tmp_path / "images" / "strip.png")
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record("images/strip.png", 7919, 41), ensure_ascii=False) + "\n")
    return path


def _samples(path: Path, processor, family: str) -> ConversationDataset:
    encoder = ChatEncoder(processor, system_prompt([BBU], Hierarchy.load(), "zh"), "zh", get_family(family).assistant_prefix)
    contract = CoordinateContract(3136, 1003520, max_vision_tokens=1280, family=family)
    return ConversationDataset(rows_as_sources(read_training_rows(path), path), encoder, contract)


def test_a_strip_within_the_aspect_limit_is_trained_at_a_frame_the_processor_takes(strip_dataset, tiny, tiny_family):
    samples = _samples(strip_dataset, tiny[1], tiny_family)
    strip = samples[1]
    w, h = samples.contract.model_size((7919, 41))
    assert max(w, h) <= 200 * min(w, h)
    assert strip.num_vision_tokens == samples.contract.vision_tokens((7919, 41)) == (w * h) // samples.contract.factor ** 2


def test_a_sample_that_cannot_be_encoded_names_its_file_and_line(strip_dataset, tiny, tiny_family):
    processor = copy.copy(tiny[1])
    processor.image_processor = RefusingImageProcessor(tiny[1].image_processor)
    samples = _samples(strip_dataset, processor, tiny_family)
    with pytest.raises(ValueError) as e:
        samples[1]
    assert str(e.value) == (f"{strip_dataset}:2: photo images/strip.png: this sample cannot be encoded: absolute aspect "
                            "ratio must be smaller than 200, got 283.0")
