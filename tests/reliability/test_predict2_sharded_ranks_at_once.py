"""The ranks of a sharded `bbuvl predict` run at once, as torchrun starts them (RANK and WORLD_SIZE, no process
group). Every rank held the lock on --out, so all ranks but the first were refused (torchrun then stopped the rest);
and rank 0, done first, merged at once and deleted the part another rank was still writing: that rank's later lines
went to a file no name reached, and the output lacked them without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.infer.output import OutputLock
from bbuvl.outputs import lock_path, output_path
from tests.children import reaped


def command(checkpoint, data, out) -> list[str]:
    """The predict command every rank runs."""
    return [str(a) for a in ("predict", "-c", checkpoint, "-i", data / "val.jsonl", "-o", out, "--mode", "head",
                             "--device", "cpu")]


def start_rank(checkpoint, data, out, rank: int, world: int) -> subprocess.Popen:
    """One rank as its own process, as torchrun starts it."""
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    return subprocess.Popen([sys.executable, "-m", "bbuvl.cli", *command(checkpoint, data, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def photos_of(data) -> list[str]:
    """The validation photos as the dataset names them, in its order."""
    return [json.loads(row)["images"][0] for row in (data / "val.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_two_ranks_started_at_once_both_finish_into_one_output_in_input_order(trained_checkpoint, small_dataset,
                                                                              tmp_path):
    out = tmp_path / "p.jsonl"
    # Rank 1 as its own process, rank 0 in this one once rank 1 holds its part (taken before its model loads): both
    # at work at once, as torchrun starts them; a second process of its own was ~10 s more of start-up.
    rank1 = start_rank(trained_checkpoint, small_dataset, out, 1, 2)
    with reaped(rank1):
        held = lock_path(output_path(tmp_path / "p.jsonl.rank1-of-2"))
        deadline = time.monotonic() + 240
        while not (held.exists() and str(rank1.pid) in held.read_text(encoding="utf-8")) and rank1.poll() is None:
            assert time.monotonic() < deadline, "rank 1 never took its part"
            time.sleep(0.05)
        rank0 = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out),
                                   env={"COLUMNS": "400", "RANK": "0", "WORLD_SIZE": "2"})
        text1 = rank1.communicate(timeout=300)[0]
    assert [rank1.returncode, rank0.exit_code] == [0, 0], (text1, rank0.output)
    assert [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()] == photos_of(small_dataset)
    assert not list(tmp_path.glob("p.jsonl.rank*"))
    assert "no rank's part" not in rank0.output, rank0.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rank_0_waits_for_a_rank_still_writing_its_part_and_merges_its_lines(trained_checkpoint, small_dataset,
                                                                            tmp_path):
    out = tmp_path / "p.jsonl"
    part = tmp_path / "p.jsonl.rank1-of-2"
    alone = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out),
                               env={"COLUMNS": "400", "RANK": "1", "WORLD_SIZE": "2"})
    assert alone.exit_code == 0, alone.output
    rank1_lines = part.read_bytes()
    assert len(rank1_lines.splitlines()) == 1
    # Rank 1 again, still at work: it holds its part's lock and has written nothing yet.
    part.write_bytes(b"")
    lock = OutputLock(part).acquire()
    # Rank 0 on a thread of this process: a lock another thread holds is refused as another process's is
    # (bbuvl/outputs.py OutputLock), and a child of its own was ~10 s more of start-up.
    done: list = []
    rank0 = threading.Thread(target=lambda: done.append(CliRunner().invoke(
        app, command(trained_checkpoint, small_dataset, out), env={"COLUMNS": "400", "RANK": "0", "WORLD_SIZE": "2"})))
    try:
        rank0.start()
        rank0_part = tmp_path / "p.jsonl.rank0-of-2"
        deadline = time.monotonic() + 240
        while not (rank0_part.exists() and rank0_part.read_bytes().endswith(b"\n")) and rank0.is_alive():
            assert time.monotonic() < deadline, "rank 0 never wrote its line"
            time.sleep(0.1)
        time.sleep(1.5)
        assert rank0.is_alive(), done[0].output if done else ""  # its own share done, it waits for rank 1
        assert part.exists()
        with part.open("ab") as fh:  # rank 1's line, written while rank 0 waits
            fh.write(rank1_lines)
    finally:
        lock.release()
    rank0.join(timeout=120)
    assert not rank0.is_alive()
    text = done[0].output
    assert done[0].exit_code == 0, text
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["image"] for line in lines] == photos_of(small_dataset)
    assert rank1_lines.decode("utf-8").strip() in lines
    assert not part.exists() and "no rank's part" not in text, text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rank_0_alone_says_how_many_photos_its_output_lacks(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "p.jsonl"
    done = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out),
                              env={"COLUMNS": "400", "RANK": "0", "WORLD_SIZE": "2"})
    assert done.exit_code == 0, done.output
    assert "holds 1 of the 2 photos (1 in no rank's part" in done.output, done.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_names_the_parts_of_a_sharded_run_not_merged_into_its_predictions(trained_checkpoint, small_dataset,
                                                                                tmp_path):
    out = tmp_path / "p.jsonl"

    def rank(r: int):
        done = CliRunner().invoke(app, command(trained_checkpoint, small_dataset, out),
                                  env={"COLUMNS": "400", "RANK": str(r), "WORLD_SIZE": "2"})
        assert done.exit_code == 0, done.output

    def evaluate():
        return CliRunner().invoke(app, ["eval", "--pred", str(out), "--gt", str(small_dataset / "val.jsonl"), "--out",
                                        str(tmp_path / "m.json")], env={"COLUMNS": "400"})

    rank(1)  # rank 0 not run yet: --out is not there, its part is
    refused = evaluate()
    assert refused.exit_code == 2
    assert (f"{out}: not written yet: the part files of a sharded `bbuvl predict` are beside it (p.jsonl.rank1-of-2), "
            "merged into it when rank 0 ends") in " ".join(refused.output.split()), refused.output
    assert not (tmp_path / "m.json").exists()

    (tmp_path / "p.jsonl.rank1-of-2").unlink()
    rank(0)
    rank(1)  # after rank 0's merge: its part stays beside the output
    scored = evaluate()
    assert scored.exit_code == 0, scored.output
    assert (f"{out} has part files of a sharded `bbuvl predict` beside it, not merged into it (p.jsonl.rank1-of-2): "
            "their photos' lines are not scored") in " ".join(scored.output.split()), scored.output
