"""An epoch over several processes trains each photo once: stand-ins, not its first photos again, even out the last
turn (train/stand_ins.py), drawn through accelerate's own sharding."""

import pytest
from accelerate.data_loader import BatchSamplerShard, SeedableRandomSampler
from torch.utils.data import BatchSampler

from bbuvl.train.stand_ins import StandInSampler, stand_ins


def _turns(sampler, epoch: int, processes: int, batch: int) -> list[list[list[int]]]:
    """Each process's batches of `epoch`, as accelerate shards them (`even_batches`, its default); each process
    holds a sampler of its own, which goes on to the next epoch after a pass."""
    turns = []
    for rank in range(processes):
        sampler.set_epoch(epoch)
        turns.append(list(BatchSamplerShard(BatchSampler(sampler, batch, drop_last=False), processes, rank)))
    return turns


@pytest.mark.parametrize("photos, processes, batch", [(9, 2, 2), (8, 2, 3), (3, 2, 2), (1, 4, 2), (10, 3, 1)])
def test_every_photo_is_drawn_once_an_epoch_and_every_process_takes_as_many_batches(photos, processes, batch):
    pad = stand_ins(photos, processes, batch)
    sampler = StandInSampler(photos, pad, seed=42)
    for epoch in range(3):
        turns = _turns(sampler, epoch, processes, batch)
        drawn = [i for rank in turns for b in rank for i in b]
        assert sorted(i for i in drawn if i < photos) == list(range(photos))  # each photo once
        assert sorted(i for i in drawn if i >= photos) == list(range(photos, photos + pad))  # the rest stand-ins
        assert len({len(rank) for rank in turns}) == 1 and all(len(b) == batch for rank in turns for b in rank)


def test_stand_ins_come_last_and_the_photos_come_in_the_order_accelerate_draws_them():
    ours = StandInSampler(9, 3, seed=42)
    theirs = SeedableRandomSampler(range(9), data_seed=42)
    for epoch in range(3):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs) + [9, 10, 11]


def test_one_process_or_an_epoch_that_fills_its_last_turn_has_no_stand_ins():
    assert stand_ins(9, 1, 2) == 0
    assert stand_ins(1200, 2, 2) == 0 and stand_ins(1000, 2, 4) == 0  # the demo's stages B and A on two processes
    assert stand_ins(9, 2, 2) == 3


def test_a_place_past_the_last_photo_is_that_photo_marked_a_stand_in(tmp_path, tiny, tiny_family):
    import json

    from PIL import Image

    from bbuvl.data.coords import CoordinateContract
    from bbuvl.data.families import get_family
    from bbuvl.data.labels import Hierarchy
    from bbuvl.encode.chat import ChatEncoder
    from bbuvl.encode.collate import STAND_IN
    from bbuvl.encode.prompts import system_prompt
    from bbuvl.train.dataset import ConversationDataset, read_training_rows, rows_as_sources

    label = "线缆"
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48), (90, 90, len(name))).save(tmp_path / name)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"images": [n], "width": 64, "height": 48, "objects": [
        {"bbox_2d": [2, 2, 20, 20], "desc": label}]}) + "\n" for n in ("a.png", "b.png")), encoding="utf-8")
    prefix = get_family(tiny_family).assistant_prefix
    encoder = ChatEncoder(tiny[1], system_prompt([label], Hierarchy.load(), "zh"), "zh", prefix)
    ds = ConversationDataset(rows_as_sources(read_training_rows(path), path), encoder,
                             CoordinateContract(3136, 448 * 336, family=tiny_family))
    stand_in, photo = ds[len(ds) + 1], ds[1]
    assert stand_in.meta[STAND_IN] is True and STAND_IN not in photo.meta
    assert stand_in.input_ids.tolist() == photo.input_ids.tolist()
