"""The non-finite guard's batch dumps (nan_batches/stepNNNNNNN_K.json) never replace one another: K was the count of
files there, so two ranks dumping at once took the same name and one batch replaced the other's, and a dump after a
file there was deleted replaced the newest. The two writers here are threads started together (the name is claimed
on disk, so processes are alike; a process each took 30 s of imports on this machine)."""

from __future__ import annotations

import threading

from bbuvl.atomic import write_text_atomic
from bbuvl.train.resume_records import NAN_BATCH
from bbuvl.train.trainer import new_dump_path


def test_two_ranks_dumping_at_the_same_step_at_once_keep_every_batch(tmp_path):
    folder = tmp_path / "nan_batches"
    folder.mkdir()
    together = threading.Barrier(2)

    def rank(r: int) -> None:
        together.wait()
        for i in range(200):
            write_text_atomic(new_dump_path(folder, 3), f"rank {r} batch {i}")

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    texts = sorted(p.read_text() for p in folder.iterdir())
    assert texts == sorted(f"rank {r} batch {i}" for r in (0, 1) for i in range(200))
    assert all(NAN_BATCH.match(p.name) for p in folder.iterdir())  # a resume still cuts them by step


def test_a_dump_after_one_was_deleted_takes_a_name_of_its_own(tmp_path):
    first, second = new_dump_path(tmp_path, 5), new_dump_path(tmp_path, 5)
    second.write_text("the second batch")
    first.unlink()
    third = new_dump_path(tmp_path, 5)
    assert third != second and second.read_text() == "the second batch"
    assert new_dump_path(tmp_path, 6).name == "step0000006_2.json"  # numbered by the dumps there, as before
