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


# --- A teacher is never the student's own photo ------------------------------------------------------------------

def _encoder_contract(tiny, tiny_family, labels: list[str]) -> tuple[ChatEncoder, CoordinateContract]:
    prefix = get_family(tiny_family).assistant_prefix
    encoder = ChatEncoder(tiny[1], system_prompt(labels, Hierarchy.load(), "zh"), "zh", prefix)
    return encoder, CoordinateContract(3136, 448 * 336, family=tiny_family)


def _pool(path: Path) -> list:
    from bbuvl.train.dataset import SourcedRecord

    return [SourcedRecord(row.sample.student, str(path), row.line) for row in read_training_rows(path)]


def test_a_pool_naming_the_training_photos_otherwise_or_copying_them_never_shows_a_student_itself(tmp_path, tiny,
                                                                                                   tiny_family, caplog):
    data = tmp_path / "data"
    data.mkdir()
    train = dataset(data, [record("images/a.png"), record("images/b.png"), record("images/c.png")])
    for name, colour in (("b.png", (30, 30, 200)), ("c.png", (10, 200, 30))):  # three photos, not one
        Image.new("RGB", (64, 48), colour).save(data / "images" / name)
    (tmp_path / "linked").symlink_to(data / "images")
    (data / "images" / "copy_of_b.png").write_bytes((data / "images" / "b.png").read_bytes())
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    # a's photo through '..', b's as a copy under another name, c's through a linked folder
    pool_file = pool_dir / "teachers.jsonl"
    pool_file.write_text("".join(json.dumps(record(name)) + "\n" for name in (
        "../data/images/a.png", "../data/images/copy_of_b.png", "../linked/c.png")), encoding="utf-8")
    encoder, contract = _encoder_contract(tiny, tiny_family, [BBU])
    with caplog.at_level("WARNING", logger="bbuvl.train.dataset"):
        ds = ConversationDataset(rows_as_sources(read_training_rows(train), train), encoder, contract,
                                 _pool(pool_file), teacher_ratio=1.0, num_teachers=3)
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(3):
            student = Path(ds.sources[i].student.image_path)
            shown = [Path(t.image_path) for t in ds.teachers_for(i)]
            assert len(shown) == 2  # the two others' photos, never its own
            assert all(not p.samefile(student) and p.read_bytes() != student.read_bytes() for p in shown)
    said = [m for r in caplog.records if "teacher photo(s) of the pool are training" in (m := r.getMessage())]
    assert len(said) == 1 and said[0].startswith("3 teacher photo(s)")
    assert f"{pool_file}:1 (image ../data/images/a.png) is {train}:1's photo (the same file)" in said[0]
    assert f"{pool_file}:2 (image ../data/images/copy_of_b.png) is {train}:2's photo (the same content)" in said[0]
    assert f"{pool_file}:3 (image ../linked/c.png) is {train}:3's photo (the same file)" in said[0]


def test_a_pool_naming_the_training_photos_as_they_are_named_draws_the_same_teachers_and_says_nothing(
        tmp_path, tiny, tiny_family, caplog):
    train = dataset(tmp_path, [record("images/a.png"), record("images/b.png")])
    Image.new("RGB", (64, 48), (30, 30, 200)).save(tmp_path / "images" / "b.png")  # two photos, not one
    encoder, contract = _encoder_contract(tiny, tiny_family, [BBU])
    with caplog.at_level("WARNING", logger="bbuvl.train.dataset"):
        ds = ConversationDataset(rows_as_sources(read_training_rows(train), train), encoder, contract, _pool(train),
                                 teacher_ratio=1.0, num_teachers=1)
    assert [r for r in caplog.records if "teacher photo" in r.getMessage()] == []  # `bbuvl data teachers`' own pool
    assert [[t.record.image for t in ds.teachers_for(i)] for i in range(2)] == [["images/b.png"], ["images/a.png"]]


def test_a_line_whose_teacher_is_its_student_through_dot_dot_is_refused(tmp_path):
    through = record(f"../{tmp_path.name}/images/a.png")  # the student's photo, named from the folder above
    path = dataset(tmp_path, [{"teachers": [through], "student": record("images/a.png")}])
    with pytest.raises(ValueError, match=r":1: teachers\[0\]: image .*a.png is the student photo \(the same file\)"):
        read_training_rows(path)


# --- A crop or mirror that lengthens the student's answer ----------------------------------------------------------

LABEL = "标签贴纸"


TWO_DIGITS = [[60 + 8 * k, 60, 66 + 8 * k, 96] for k in range(5)]  # magnified by a crop or mirrored: three digits
# One digit in every family's frame (Qwen2.5-VL's pixels, Qwen3-VL's thousandths); mirrored, three
ONE_DIGIT = [[1, 10 + 60 * k, 2, 50 + 60 * k] for k in range(5)]


def _edge_photos(tmp_path: Path, boxes: list[list[int]] = TWO_DIGITS) -> Path:
    """A 448x336 photo of five `boxes`, and a teacher photo of one box."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (448, 336), (30, 30, 30)).save(tmp_path / "images" / "a.png")
    Image.new("RGB", (448, 336), (90, 90, 90)).save(tmp_path / "images" / "t.png")
    lines = [{"images": ["images/a.png"], "width": 448, "height": 336,
              "objects": [{"bbox_2d": b, "desc": LABEL} for b in boxes]},
             {"images": ["images/t.png"], "width": 448, "height": 336,
              "objects": [{"bbox_2d": [10, 10, 50, 50], "desc": LABEL}]}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return path


def _student_answer(sample, encoder) -> str:
    from bbuvl.encode.chat import IGNORE_INDEX, SPAN_STUDENT

    taught = (sample.labels != IGNORE_INDEX) & (sample.span_ids == SPAN_STUDENT)
    return encoder.tokenizer.decode(sample.input_ids[taught], skip_special_tokens=False)


@pytest.mark.parametrize("draw", [{"mirror": 1.0}, {"crop": "crop"}], ids=["mirror", "crop"])
def test_a_draw_whose_answer_is_longer_leaves_its_teacher_out_and_keeps_its_whole_answer(tmp_path, tiny, tiny_family,
                                                                                         draw):
    from bbuvl.config import CropConfig
    from bbuvl.encode.chat import format_answer
    from bbuvl.train.dataset import shown_photo

    path = _edge_photos(tmp_path)
    encoder, contract = _encoder_contract(tiny, tiny_family, [LABEL])
    srcs = rows_as_sources(read_training_rows(path), path)
    whole = ConversationDataset(srcs[:1], encoder, contract, [srcs[1].student], teacher_ratio=1.0)[0].input_ids.numel()
    kw = {"mirror": 1.0} if "mirror" in draw else {"crop": CropConfig(p=1.0, min_side=0.85, max_side=0.9)}
    ds = ConversationDataset(srcs[:1], encoder, contract, [srcs[1].student], teacher_ratio=1.0, max_length=whole, **kw)
    assert ds.truncated == []  # the whole photo with its teacher fits exactly
    for epoch in range(6):
        ds.set_epoch(epoch)
        sample = ds[0]
        shown = shown_photo(srcs[0].student, contract, ds.crop_for(0), ds.mirrored(0))[1]
        assert _student_answer(sample, encoder) == format_answer(shown, contract) + "<|im_end|>"
        assert sample.input_ids.numel() <= whole and "cut" not in sample.meta


def test_a_draw_that_alone_overflows_is_cut_and_said_once_naming_file_and_line(tmp_path, tiny, tiny_family, caplog):
    path = _edge_photos(tmp_path, ONE_DIGIT)
    encoder, contract = _encoder_contract(tiny, tiny_family, [LABEL])
    srcs = rows_as_sources(read_training_rows(path), path)[:1]
    alone = ConversationDataset(srcs, encoder, contract)[0].input_ids.numel()
    ds = ConversationDataset(srcs, encoder, contract, max_length=alone, mirror=1.0)
    assert ds.truncated == []
    with caplog.at_level("WARNING", logger="bbuvl.train.dataset"):
        for epoch in range(3):
            ds.set_epoch(epoch)
            sample = ds[0]
            assert sample.input_ids.numel() == alone
            assert sample.meta["cut"] == f"{path}:1"
    said = [r.getMessage() for r in caplog.records if "mirrored: answer of" in r.getMessage()]
    assert len(said) == 1  # once a photo, not once a draw
    assert said[0].startswith(f"{path}:1: photo images/a.png mirrored: answer of ")
    assert "objects are taught" in said[0] and "data.max_length" in said[0]


def test_an_answer_whole_but_for_its_end_is_said_so_not_cut_to_its_own_length(tmp_path, tiny, tiny_family):
    """`make demo` said "answer of 256 tokens cut to 256: the first 8 of 8 objects are taught": every token of the
    answer fitted, and only the end of the turn after it was cut, which the model then never learns to write there."""
    path = _edge_photos(tmp_path, ONE_DIGIT)
    encoder, contract = _encoder_contract(tiny, tiny_family, [LABEL])
    srcs = rows_as_sources(read_training_rows(path), path)[:1]
    alone = ConversationDataset(srcs, encoder, contract)[0].input_ids.numel()
    (said,) = ConversationDataset(srcs, encoder, contract, max_length=alone - 1).truncated
    assert said.startswith(f"{path}:1: answer of ") and "end of its turn" in said
    assert "cut to" not in said and "all 5 objects are taught" in said
