"""Class 5: data.max_length bounds every sample; answers too long are cut (and listed), never an unbounded batch."""

import json
import zlib

import pytest
import torch
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_dataset
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, format_answer
from bbuvl.encode.collate import PaddedCollator
from bbuvl.encode.prompts import system_prompt
from bbuvl.train.dataset import ConversationDataset, SourcedRecord, sources_from

LABEL = "线缆"


@pytest.fixture(scope="module")
def contract(tiny_family):
    return CoordinateContract(12544, 50176, family=tiny_family)


@pytest.fixture(scope="module")
def encoder(tiny, tiny_family):
    return ChatEncoder(tiny[1], system_prompt([LABEL], Hierarchy.load(), "zh"), "zh", get_family(tiny_family).assistant_prefix)


def record(image: str, n_objects: int, size: int = 224) -> dict:
    """A photo record with `n_objects` small boxes on a grid (all inside the image)."""
    side = max(1, int(n_objects ** 0.5 + 0.999))
    step = size / side
    objs = [{"bbox_2d": [c * step, r * step, c * step + step / 2, r * step + step / 2], "desc": LABEL}
            for r in range(side) for c in range(side)][:n_objects]
    return {"images": [image], "width": size, "height": size, "objects": objs}


def write(tmp_path, lines: list[dict], name: str = "train.jsonl"):
    """A dataset file with its photos (one real PNG per distinct image name, each of its own colour: photos of one
    content are one photo, never shown as each other's teacher)."""
    for line in lines:
        for rec in line.get("teachers", []) + [line.get("student", line)]:
            path = tmp_path / rec["images"][0]
            if not path.exists():
                colour = (90, 120, zlib.crc32(path.name.encode()) % 256)
                Image.new("RGB", (rec["width"], rec["height"]), colour).save(path)
    path = tmp_path / name
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return path


def dataset(path, encoder, contract, max_length, **kw):
    return ConversationDataset(sources_from(read_dataset(path), path), encoder, contract, max_length=max_length, **kw)


def full_length(path, encoder, contract) -> list[int]:
    ds = dataset(path, encoder, contract, None)
    return [ds[i].input_ids.numel() for i in range(len(ds))]


def test_the_measured_length_is_exact_so_a_sample_at_the_limit_is_not_cut(tmp_path, encoder, contract):
    path = write(tmp_path, [record("a.png", 5), record("b.png", 40)])
    lengths = full_length(path, encoder, contract)
    at = dataset(path, encoder, contract, max(lengths))
    assert at.truncated == []
    assert [at[i].input_ids.numel() for i in range(2)] == lengths
    below = dataset(path, encoder, contract, max(lengths) - 1)
    assert len(below.truncated) == 1 and below.truncated[0].startswith(f"{path}:2: answer of ")
    assert below[1].input_ids.numel() == max(lengths) - 1


def test_a_200_object_answer_is_cut_at_max_length_to_a_prefix_of_the_right_answer(tmp_path, encoder, tiny, contract):
    path = write(tmp_path, [record("small.png", 2), record("dense.png", 200)])
    ds = dataset(path, encoder, contract, 1024)
    assert len(ds.truncated) == 1
    msg = ds.truncated[0]
    assert msg.startswith(f"{path}:2: answer of ") and "cut to" in msg and "of 200 objects are taught" in msg
    item = ds[1]
    assert item.input_ids.numel() == 1024
    answer = item.input_ids[item.span_ids == SPAN_STUDENT]
    full = encoder.answer_ids([format_answer(ds.sources[1].student.record, contract)])[0]
    assert answer.tolist() == full[:answer.numel()]  # a prefix of the right answer, nothing else supervised
    assert answer.numel() < len(full)
    assert item.det_boxes.shape == (200, 4)  # the head still learns every box
    kept = int(msg.split("the first ")[1].split(" of")[0])
    text = tiny[1].tokenizer.decode(answer.tolist())
    assert text.count('"label"') in (kept, kept + 1)  # the whole objects kept, perhaps one more begun
    batch = PaddedCollator(tiny[1].tokenizer.pad_token_id, encoder.image_pad_id)([ds[0], ds[1]])
    assert batch.input_ids.shape[1] <= 1024


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_10000_object_photo_stays_within_max_length(tmp_path, encoder, contract):
    path = write(tmp_path, [record("crowd.png", 10_000, size=1000)])
    ds = dataset(path, encoder, contract, 2048)
    item = ds[0]
    assert item.input_ids.numel() == 2048
    assert "of 10000 objects are taught" in ds.truncated[0]


def test_teachers_that_would_overflow_are_left_out_and_the_student_keeps_its_answer(tmp_path, encoder, contract):
    big, small = record("t_big.png", 60), record("s.png", 2)
    path = write(tmp_path, [{"teachers": [big], "student": small}])
    alone = full_length(write(tmp_path, [small], "alone.jsonl"), encoder, contract)[0]
    ds = dataset(path, encoder, contract, alone + 50)
    assert ds.teachers_for(0) == [] and ds.truncated == []
    item = ds[0]
    assert item.input_ids.numel() == alone and not (item.span_ids == SPAN_TEACHER).any()
    roomy = dataset(path, encoder, contract, 100_000)
    assert len(roomy.teachers_for(0)) == 1


def test_random_teachers_are_drawn_among_those_that_fit(tmp_path, encoder, contract):
    pool_path = write(tmp_path, [record("p_big.png", 80), record("p_small.png", 1)], "teachers.jsonl")
    path = write(tmp_path, [record(f"s{i}.png", 2) for i in range(6)])
    pool = [SourcedRecord(r.student, str(pool_path)) for r in read_dataset(pool_path)]
    alone = full_length(path, encoder, contract)[0]
    small_turn = full_length(pool_path, encoder, contract)[1] - encoder.system_length - encoder.prefix_length
    ds = dataset(path, encoder, contract, alone + small_turn, teacher_pool=pool, teacher_ratio=1.0, num_teachers=1)
    for i in range(len(ds)):
        drawn = ds.teachers_for(i)
        assert [t.record.image for t in drawn] == ["p_small.png"]
        assert ds[i].input_ids.numel() <= alone + small_turn


def test_a_photo_whose_prompt_alone_reaches_max_length_is_refused_naming_file_and_line(tmp_path, encoder, contract):
    path = write(tmp_path, [record("a.png", 1), record("b.png", 1)])
    vision = contract.vision_tokens((224, 224))
    with pytest.raises(ValueError) as e:
        dataset(path, encoder, contract, encoder.prompt_length(vision))
    msg = str(e.value)
    assert msg.startswith(f"{path}:1: photo a.png needs ") and "data.max_length" in msg and "(1 more photos like it)" in msg


def test_an_encoding_cut_inside_the_prompt_is_refused(encoder):
    from bbuvl.encode.chat import Turn

    turns = [Turn(Image.new("RGB", (56, 56)), "[]", SPAN_STUDENT)]
    with pytest.raises(ValueError, match="before its last answer"):
        encoder.encode(turns, max_length=10)
    enc = encoder.encode(turns, max_length=10_000)
    assert torch.equal(enc.input_ids, encoder.encode(turns).input_ids)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_data_check_is_near_linear_in_objects_per_photo(tmp_path):
    import time

    from bbuvl.data.check import check_dataset

    path = write(tmp_path, [record("crowd.png", 10_000, size=1000)])  # 100 rows and columns sharing y1 and x1
    start = time.perf_counter()
    problems = check_dataset(path)
    assert time.perf_counter() - start < 10  # was 72 s when every pair of boxes was compared, 25 s per column
    assert not [p for p in problems if "duplicate" in p.message or "same label" in p.message]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_near_duplicate_search_finds_exactly_what_comparing_every_pair_finds():
    import random

    from bbuvl.data.boxes import box_iou
    from bbuvl.data.check import DUPLICATE_IOU, check_objects
    from bbuvl.data.schema import ImageRecord, ObjectAnn

    rng = random.Random(0)
    for _ in range(200):
        objs = []
        for _ in range(rng.randint(1, 30)):
            x, y, w, h = rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(1, 30), rng.uniform(1, 30)
            objs.append(ObjectAnn(bbox_2d=[x, y, x + w, y + h], desc=rng.choice("ab")))
            if rng.random() < 0.5:  # a near copy: each side moved by up to 4% of the box
                d = [rng.uniform(-0.04, 0.04) * min(w, h) for _ in range(4)]
                objs.append(ObjectAnn(bbox_2d=[x + d[0], y + d[1], x + w + d[2], y + h + d[3]], desc=rng.choice("ab")))
        rec = ImageRecord(images=["a.png"], width=200, height=200, objects=objs)
        got = {m.split(":")[0] for m, _ in check_objects(rec, Hierarchy.load()) if "nearly the same box" in m}
        want = {f"objects[{i}] and objects[{j}]" for i in range(len(objs)) for j in range(i + 1, len(objs))
                if objs[i].desc == objs[j].desc and objs[i].bbox_2d != objs[j].bbox_2d
                and float(box_iou(objs[i].bbox_2d, objs[j].bbox_2d)) > DUPLICATE_IOU}
        assert got == want


def test_coordinate_marks_are_linear_in_the_answers_boxes():
    import json
    import time

    from bbuvl.encode.chat import coordinate_marks

    answer = json.dumps([{"bbox_2d": [i % 900, i % 700, i % 900 + 5, i % 700 + 5], "label": "x"} for i in range(10_000)])
    offsets = [(i, i + 1) for i in range(len(answer))]  # one token a character: the most tokens an answer can have
    start = time.perf_counter()
    marks, boxes = coordinate_marks(answer, offsets, (1000.0, 1000.0))
    assert time.perf_counter() - start < 10  # was minutes when every token was compared with every number
    assert boxes.shape == (10_000, 4) and max(marks) == 4 * 10_000 - 1


def test_a_tile_is_never_taught_by_its_own_photo_or_a_sibling_tile(tmp_path, encoder, contract):
    # Before: `data tile`'s tiles and the whole photo kept beside them were drawn as each other's teachers, and a
    # teacher that is the student's own photo (or overlaps it) shows the student's answer in the prompt.
    from bbuvl.data.schema import tile_origin
    from bbuvl.data.tiling import TileSpec, tile_dataset

    for i in range(3):  # three different photos (write() paints one colour for all)
        Image.new("RGB", (224, 224), (40 * i, 90, 60)).save(tmp_path / f"p{i}.png")
    path = write(tmp_path, [record(f"p{i}.png", 4) for i in range(3)])
    tile_dataset(path, tmp_path / "tiles", TileSpec((2, 2), overlap=0.1, whole=True, empty=1.0, seed=0), num_teachers=0)
    tiles = tmp_path / "tiles" / "train.jsonl"
    pool = [SourcedRecord(r.student, str(tiles)) for r in read_dataset(tiles)]
    ds = dataset(tiles, encoder, contract, 100_000, teacher_pool=pool, teacher_ratio=1.0, num_teachers=4)
    origins = {tile_origin(s.student.record) for s in ds.sources}
    assert len(origins) == 3 and None not in origins and len(ds) > 3  # tiles beside each whole photo
    for epoch in range(3):
        ds.epoch = epoch
        for i in range(len(ds)):
            origin = tile_origin(ds.sources[i].student.record)
            teachers = ds.teachers_for(i)
            assert all(tile_origin(t.record) != origin for t in teachers)
            others = sum(tile_origin(t.record) != origin for t in pool)
            assert len(teachers) == min(4, others)  # still taught, by the other photos' tiles
