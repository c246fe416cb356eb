"""Answers from a stock server (OpenAI-style) come back into each photo's pixels, in every family's convention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.schema import read_records, resolve_image
from bbuvl.encode.chat import format_answer
from bbuvl.infer.openai_answers import folder_frame, read_answers, write_answers
from bbuvl.tiny.model import build_tiny_model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def folder(request, tmp_path_factory) -> Path:
    """A stock folder of each box convention (absolute frame pixels, relative 0-1000), frame 12,544-50,176 px."""
    return build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", family=request.param)


def test_the_frame_is_read_from_the_folder_itself(folder):
    frame = folder_frame(folder)
    assert (frame.min_pixels, frame.max_pixels) == (12544, 50176)
    assert frame.family == json.loads((folder / "config.json").read_text())["model_type"]


def test_answers_written_in_the_frame_come_back_as_the_photos_boxes_within_rounding(folder, small_dataset, tmp_path):
    frame = folder_frame(folder)
    records = read_records(small_dataset / "train.jsonl")[:3]
    photos = tmp_path / "photos"
    photos.mkdir()
    lines = []
    for i, record in enumerate(records):
        # A photo larger than max_pixels, so the frame is not the photo: its boxes must be scaled back.
        big = record.model_copy(update={"width": record.width * 3, "height": record.height * 3, "objects": [
            o.model_copy(update={"bbox_2d": [v * 3 for v in o.bbox_2d]}) for o in record.objects]})
        Image.open(resolve_image(small_dataset / "train.jsonl", record.images[0])).resize(big.size).save(photos / f"{i}.png")
        response = {"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": format_answer(big, frame)}, "finish_reason": "stop"}]}
        lines.append((big, {"image": f"photos/{i}.png", "response": response}))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for _, line in lines), encoding="utf-8")

    got = read_answers(answers, folder)
    assert [g["image"] for g in got] == [f"photos/{i}.png" for i in range(3)]
    for (big, _), line in zip(lines, got):
        assert (line["width"], line["height"]) == big.size and line["error"] is None
        want = sorted((o.desc, o.bbox_2d) for o in big.objects)
        have = sorted((o["label"], o["bbox_2d"]) for o in line["objects"])
        assert [label for label, _ in have] == [label for label, _ in want]
        # One unit of the answer is a frame pixel (several photo pixels here) or 1/1000 of a side; rounding to it moves
        # a coordinate by half a unit at most.
        unit = max(big.size[0] / frame.answer_extent(big.size)[0], big.size[1] / frame.answer_extent(big.size)[1])
        for (_, a), (_, b) in zip(have, want):
            assert max(abs(x - y) for x, y in zip(a, b)) <= unit / 2 + 0.1

    out = tmp_path / "pred.jsonl"
    assert write_answers(answers, folder, out) == 3
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == got
    with pytest.raises(FileExistsError):
        write_answers(answers, folder, out)
    # Written elsewhere, the photos are named from the predictions file's folder, where eval and viz look for them:
    # named from the answers file's, eval paired none of them (or another dataset's photos of the same names)
    elsewhere = tmp_path / "results" / "run1" / "pred.jsonl"
    elsewhere.parent.mkdir(parents=True)
    write_answers(answers, folder, elsewhere)
    names = [json.loads(line)["image"] for line in elsewhere.read_text(encoding="utf-8").splitlines()]
    assert names == [f"../../photos/{i}.png" for i in range(3)]
    assert all((elsewhere.parent / name).resolve() == (photos / f"{i}.png").resolve() for i, name in enumerate(names))


def test_a_bad_line_is_an_error_naming_the_file_and_line(folder, tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"image": "a.png", "text": "[]"}) + "\n" + json.dumps({"image": "a.png"}) + "\n",
                       encoding="utf-8")
    with pytest.raises(ValueError, match=r"answers\.jsonl:2: neither `text` nor an OpenAI"):
        read_answers(answers, folder)


@pytest.mark.parametrize(("change", "says"), [
    ({"size": 448}, "preprocessor_config.json: size must be an object with shortest_edge and longest_edge (pixels), "
                    "got a number (448)"),
    ({"size": [12544, 50176]}, "preprocessor_config.json: size must be an object with shortest_edge and longest_edge "
                               "(pixels), got a list ([12544, 50176])"),
    ({"size": {"shortest_edge": "12544", "longest_edge": 50176}},
     "preprocessor_config.json: size.shortest_edge must be a positive whole number of pixels, got a string (\"12544\")"),
    ({"size": {"shortest_edge": 12544, "longest_edge": True}},
     "preprocessor_config.json: size.longest_edge must be a positive whole number of pixels, got a boolean (true)"),
    ({"size": None, "min_pixels": 12544, "max_pixels": -1},
     "preprocessor_config.json: max_pixels must be a positive whole number of pixels, got a number (-1)"),
    ({"size": {"shortest_edge": 50176, "longest_edge": 12544}},
     "preprocessor_config.json: min_pixels (50176) must not exceed max_pixels (12544)"),
    ({"image_processor": None}, "preprocessor_config.json: image_processor must be an object, got null"),
    ({"image_processor": {"size": None, "min_pixels": 1.5, "max_pixels": 50176}},
     "preprocessor_config.json: image_processor.min_pixels must be a positive whole number of pixels, got a number (1.5)"),
    ([1, 2], "preprocessor_config.json: expected a JSON object, got a list ([1, 2])"),
], ids=["size-number", "size-list", "edge-string", "edge-bool", "max-negative", "min-above-max", "nested-null",
        "nested-float", "not-an-object"])
def test_a_processor_config_value_of_the_wrong_kind_is_an_error_naming_the_file_and_key(tmp_path, change, says):
    folder = build_tiny_model(tmp_path / "model", family="qwen2_5_vl")
    config = folder / "preprocessor_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    config.write_text(json.dumps(change if isinstance(change, list) else data | change), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        folder_frame(folder)
    assert str(e.value) == f"{config.parent}/{says}"


def test_a_processor_config_without_bounds_falls_back_to_the_other_file(tmp_path):
    folder = build_tiny_model(tmp_path / "model", family="qwen2_5_vl")
    config = folder / "preprocessor_config.json"
    config.write_text(json.dumps(json.loads(config.read_text(encoding="utf-8")) | {"size": None}), encoding="utf-8")
    processor = folder / "processor_config.json"
    processor.write_text(json.dumps({"image_processor": {"size": {"shortest_edge": 3136, "longest_edge": 50176}}}),
                         encoding="utf-8")
    frame = folder_frame(folder)
    assert (frame.min_pixels, frame.max_pixels) == (3136, 50176)


def test_an_answers_file_that_is_not_text_names_the_file(folder, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"answers\.jsonl: not UTF-8 text"):
        read_answers(answers, folder)
    answers.write_text(json.dumps({"image": "a.png", "response": {"choices": [{"message": {"content": [{"text": 5}]}}]}}),
                       encoding="utf-8")
    with pytest.raises(ValueError, match=r"answers\.jsonl:1: choices\[0\]\.message\.content has a part whose text"):
        read_answers(answers, folder)
