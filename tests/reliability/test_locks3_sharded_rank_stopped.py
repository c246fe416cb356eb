"""Rank 0 of a sharded `bbuvl predict` (torchrun, no process group) waits for the other ranks' parts before it merges
them: it says which ranks it waits for, and when one of them is killed before it predicted its share (its lock let go,
its lock file still naming it), it stops with an error naming the part files it keeps, instead of merging an output
that lacks that rank's photos with no rank left to predict them. The same command, re-run in one process, goes on
from the kept parts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.test_predict2_sharded_ranks_at_once import command, photos_of

RANK_1 = """
import sys, time
from pathlib import Path
from bbuvl.infer.output import OutputLock
part = Path(sys.argv[1])
lock = OutputLock(part).acquire()  # as rank 1's `bbuvl predict` holds its part from its start
part.write_bytes(b"")
print("held", flush=True)
time.sleep(300)
"""


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rank_0_names_the_rank_it_waits_for_and_stops_keeping_the_parts_when_that_rank_is_killed(
        trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "p.jsonl"
    part1 = tmp_path / "p.jsonl.rank1-of-2"
    rank1 = subprocess.Popen([sys.executable, "-c", RANK_1, str(part1)], stdout=subprocess.PIPE, text=True)
    assert rank1.stdout is not None and rank1.stdout.readline().strip() == "held"
    # Rank 0 in this process, on a thread of its own while this one kills rank 1 (a child of its own was ~10 s more
    # of start-up); rank 1 stays a process, whose lock the kernel lets go when it is killed.
    done: list = []
    rank0 = threading.Thread(target=lambda: done.append(CliRunner().invoke(
        app, command(trained_checkpoint, small_dataset, out), env={"COLUMNS": "400", "RANK": "0", "WORLD_SIZE": "2"})))
    rank0.start()
    try:
        rank0_part = tmp_path / "p.jsonl.rank0-of-2"
        deadline = time.monotonic() + 240
        while not (rank0_part.exists() and rank0_part.read_bytes().endswith(b"\n")) and rank0.is_alive():
            assert time.monotonic() < deadline, "rank 0 never wrote its line"
            time.sleep(0.1)
        time.sleep(4)  # its own share done, it waits for rank 1 (said below; 4 s leaves a loaded machine room to say it)
        assert rank0.is_alive(), done[0].output if done else ""  # it must not merge while rank 1 holds its part
        rank1.send_signal(signal.SIGKILL)
        rank1.wait()
        rank0.join(timeout=60)
        assert not rank0.is_alive()
    finally:
        if rank1.poll() is None:
            rank1.kill()
            rank1.wait()
    assert done[0].exit_code == 2, done[0].output
    text = " ".join(done[0].output.split())
    assert f"waiting for rank 1 (pid {rank1.pid}, 0 lines in p.jsonl.rank1-of-2)" in text, text
    assert (f"rank 1 of 2 (pid {rank1.pid}) stopped before it predicted its share (1 of its photos have no line in "
            f"p.jsonl.rank1-of-2): nothing is merged into {out}, and the part files are kept beside it "
            "(p.jsonl.rank0-of-2, p.jsonl.rank1-of-2)") in text, text
    assert "Traceback" not in text
    assert len((tmp_path / "p.jsonl.rank0-of-2").read_text(encoding="utf-8").splitlines()) == 1
    assert not out.exists() or out.read_bytes() == b""

    # The same command in one process merges rank 0's part and predicts rank 1's photo.
    again = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out), env={"COLUMNS": "400"})
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()] == photos_of(small_dataset)
    assert not list(tmp_path.glob("p.jsonl.rank*")) and "1 predicted" in again.output, again.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rank_0_merges_nothing_when_a_rank_ended_by_an_error_with_its_part_begun(trained_checkpoint, small_dataset,
                                                                                 tmp_path):
    out = tmp_path / "p.jsonl"
    part1 = tmp_path / "p.jsonl.rank1-of-2"
    part1.write_bytes(b"")  # rank 1 began its part and ended by an error: its lock file went with it
    rank0 = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out),
                               env={"COLUMNS": "400", "RANK": "0", "WORLD_SIZE": "2"})
    text = " ".join(rank0.output.split())
    assert rank0.exit_code == 2, rank0.output
    assert (f"rank 1 of 2 stopped before it predicted its share (1 of its photos have no line in p.jsonl.rank1-of-2): "
            f"nothing is merged into {out}, and the part files are kept beside it (p.jsonl.rank0-of-2, "
            "p.jsonl.rank1-of-2)") in text, text
    assert part1.exists() and len((tmp_path / "p.jsonl.rank0-of-2").read_text(encoding="utf-8").splitlines()) == 1
    again = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out), env={"COLUMNS": "400"})
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()] == photos_of(small_dataset)
