"""A checkpoint of several processes holds every process's random state, or it is refused (docs/resume.md)."""
import json
from pathlib import Path

import pytest

from bbuvl.train.run_dir import training_state_missing


def checkpoint(tmp_path: Path, rng_files: list[str], processes: int | None, carried: bool = False) -> Path:
    """A checkpoint-2 folder with the optimizer's and schedule's files, `rng_files`, and a record of `processes`."""
    path = tmp_path / "out" / "checkpoint-2"
    path.mkdir(parents=True)
    for name in ["optimizer.pt", "scheduler.pt", *rng_files]:
        (path / name).write_bytes(b"x")
    if processes is not None:
        record = path / "run_record.json" if carried else path.parent / "run.json"
        record.write_text(json.dumps({"processes": processes}))
    return path


@pytest.mark.parametrize("carried", [False, True], ids=["run.json", "carried-record"])
def test_a_checkpoint_missing_one_ranks_random_state_is_refused(tmp_path, carried):
    """Rank 1 killed mid-save left rng_state_0.pth alone: any rng_state*.pth was taken for the whole state."""
    path = checkpoint(tmp_path, ["rng_state_0.pth"], 2, carried)
    why = training_state_missing(path)
    assert why is not None and why.startswith("rng_state_1.pth missing") and "2 processes" in why


def test_a_gap_among_the_ranks_is_refused_without_a_record(tmp_path):
    """No record names the count: every rank below the highest saved is still owed."""
    why = training_state_missing(checkpoint(tmp_path, ["rng_state_0.pth", "rng_state_2.pth"], None))
    assert why is not None and why.startswith("rng_state_1.pth missing")


@pytest.mark.parametrize("files,processes", [(["rng_state.pth"], 1), (["rng_state.pth"], None),
                                             (["rng_state_0.pth", "rng_state_1.pth"], 2),
                                             (["rng_state_0.pth", "rng_state_1.pth"], None)])
def test_whole_random_states_are_accepted(tmp_path, files, processes):
    """One process's rng_state.pth, or every process's rng_state_N.pth, is whole."""
    assert training_state_missing(checkpoint(tmp_path, files, processes)) is None
