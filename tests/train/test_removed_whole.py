"""A checkpoint folder a run removes (the rotation of `training.save_total_limit`, `--resume` cutting back past its
step, `--overwrite` clearing the previous run) is whole or gone under its name when the remover is killed part-way
(atomic.py `remove_whole`), and what the killed remover left aside goes with the next run. `--resume`'s cut and
`--overwrite` removed file by file under the checkpoint's own name: a SIGKILL there left a `checkpoint-N` with some of
its files, which `--resume` and `doctor` list among the run's checkpoints (and which could pass for the newest once a
damaged file had gone first)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from bbuvl.train.callbacks import CheckpointRotation
from bbuvl.train.resume_records import check_cut_back, cut_back
from bbuvl.train.run_dir import clear_previous_run, numbered_checkpoints, previous_run

FILES = ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "bbuvl.yaml")


def _run(out: Path) -> None:
    """A run stopped at step 3: checkpoint-1 and checkpoint-2 saved whole, checkpoint-3's save killed after its model
    files (no trainer_state.json), and its history."""
    for step in (1, 2, 3):
        folder = out / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in FILES:
            (folder / name).write_text(f"{name} of step {step}", encoding="utf-8")
        if step < 3:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}),
                                                       encoding="utf-8")
    (out / "history.json").write_text("[]", encoding="utf-8")


def _rotate(out: Path) -> None:
    CheckpointRotation(2).rotate(out)


def _cut_back(out: Path) -> None:
    check_cut_back(out, out / "checkpoint-2")
    cut_back(out, out / "checkpoint-2")


def _overwrite(out: Path) -> None:
    clear_previous_run(out, previous_run(out))


REMOVERS = {"rotation": _rotate, "resume": _cut_back, "overwrite": _overwrite}


def _killed_part_way(remover: str, out: str) -> None:
    """Run a remover on `out`, killed (SIGKILL: no clean-up runs) right after it has unlinked the first file of a
    folder it removes."""
    unlink = os.unlink

    def unlink_then_die(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if kwargs.get("dir_fd") is not None:  # rmtree's, file by file inside a folder
            os.kill(os.getpid(), signal.SIGKILL)

    os.unlink = unlink_then_die  # the os module itself, in this child alone
    REMOVERS[remover](Path(out))


def _contents(out: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: {f.name: f.read_bytes() for f in p.iterdir()} for p in numbered_checkpoints(out)}


@pytest.mark.parametrize("remover", list(REMOVERS))
def test_a_remover_killed_part_way_leaves_each_checkpoint_whole_or_gone_and_the_next_run_removes_the_rest(tmp_path,
                                                                                                         remover):
    out = tmp_path / "run"
    _run(out)
    before = _contents(out)
    # forked: the child only removes files, and importing torch again took 3 s a test
    child = multiprocessing.get_context("fork").Process(target=_killed_part_way, args=(remover, str(out)))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    left = _contents(out)
    # every checkpoint-N still under its name holds what it held: none of them is half removed
    assert len(left) < len(before) and all(files == before[name] for name, files in left.items()), left
    (aside,) = out.glob(".checkpoint-*.del")  # the one being removed, out of the readers' sight, its remover's pid
    assert f".{child.pid}." in aside.name
    REMOVERS[remover](out)  # the next run removes it, with what is its to remove
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert sorted(_contents(out)) == {"rotation": ["checkpoint-2", "checkpoint-3"],
                                      "resume": ["checkpoint-1", "checkpoint-2"], "overwrite": []}[remover]
