"""Mirrored training photos: the photo and its boxes reflected left to right, drawn per (seed, epoch, index)."""

from __future__ import annotations

import pytest

from bbuvl.data.regions import mirrored_record
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_dataset
from bbuvl.encode.chat import SPAN_STUDENT, format_answer
from bbuvl.train.dataset import ConversationDataset, sources_from
from tests.train.test_random_crops import BOX, SCREW, contract, encoder, photo_jsonl  # noqa: F401 - fixtures


def dataset(path, encoder, contract, mirror: float, seed: int = 0) -> ConversationDataset:
    return ConversationDataset(sources_from(read_dataset(path), path) * 40, encoder, contract, seed=seed, mirror=mirror)


def test_a_mirrored_record_reflects_every_box_about_the_photos_middle():
    record = ImageRecord(images=["p.png"], width=448, height=336, objects=[
        ObjectAnn(bbox_2d=BOX, desc=SCREW), ObjectAnn(bbox_2d=[0, 10, 40, 50], desc=SCREW)])
    mirrored = mirrored_record(record)
    assert [o.bbox_2d for o in mirrored.objects] == [[218.0, 150.0, 248.0, 180.0], [408.0, 10.0, 448.0, 50.0]]
    assert mirrored.size == record.size and [o.desc for o in mirrored.objects] == [SCREW, SCREW]
    assert mirrored_record(mirrored).objects == record.objects


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_mirrored_sample_teaches_the_reflected_boxes_on_the_reflected_pixels(photo_jsonl, encoder, contract):
    plain, mirrored = dataset(photo_jsonl, encoder, contract, 0.0)[0], dataset(photo_jsonl, encoder, contract, 1.0)[0]
    x1, y1, x2, y2 = plain.det_boxes[0].tolist()
    assert mirrored.det_boxes[0].tolist() == pytest.approx([1 - x2, y1, 1 - x1, y2], abs=1e-3)
    record = mirrored_record(sources_from(read_dataset(photo_jsonl), photo_jsonl)[0].student.record)
    answer = mirrored.input_ids[mirrored.span_ids == SPAN_STUDENT].tolist()
    taught = encoder.answer_ids([format_answer(record, contract)])[0]
    assert answer[:len(taught)] == taught and len(answer) - len(taught) <= 2  # then the turn's end
    # The tower's input is the reflected photo: as many pixels, not the same ones (the red screw moved right).
    assert mirrored.pixel_values.shape == plain.pixel_values.shape
    assert not mirrored.pixel_values.equal(plain.pixel_values)
    assert sorted(mirrored.pixel_values.flatten().tolist()) == pytest.approx(sorted(plain.pixel_values.flatten().tolist()), abs=1e-5)


def test_mirrors_are_drawn_per_seed_epoch_and_index(photo_jsonl, encoder, contract):
    first, again = dataset(photo_jsonl, encoder, contract, 0.5), dataset(photo_jsonl, encoder, contract, 0.5)
    drawn = [first.mirrored(i) for i in range(len(first))]
    assert drawn == [again.mirrored(i) for i in range(len(again))]  # a resumed run sees the same photos
    assert 5 < sum(drawn) < 35
    first.set_epoch(1)
    assert [first.mirrored(i) for i in range(len(first))] != drawn
    never = dataset(photo_jsonl, encoder, contract, 0.0)
    assert not any(never.mirrored(i) for i in range(len(never)))
