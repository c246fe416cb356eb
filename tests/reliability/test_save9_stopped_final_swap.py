"""A save of a run's final/ stopped between its two renames (model/checkpoint.py: swap_in) is named by every reader of
final/, and the run's next `bbuvl train --resume` puts the whole folder back: a kill there left only `.final.old` and
the new `.final.saving`, and `predict -c run/final`, `doctor` and a run starting from it said "no such checkpoint
folder", pointing nowhere."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.model.checkpoint import checkpoint_problem, finish_swap, read_model_folder, stopped_swap, swap_in
from bbuvl.train.run_inputs import check_start
from tests.reliability.test_save9_stopped_checkpoint import _train
from tests.test_atomic import die_at_the_second_rename

# How a save is stopped does not depend on the model family: one tiny model is enough
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)]


@pytest.fixture
def stopped_swap_run(trained_checkpoint, tmp_path):
    """A run folder as a kill between final/'s two renames leaves it: the old final/ put aside, the new one whole."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(trained_checkpoint, run / ".final.old")
    shutil.copytree(trained_checkpoint, run / ".final.saving")
    return run


def test_predict_on_a_final_whose_swap_stopped_names_the_folder_left_and_what_puts_it_back(stopped_swap_run):
    final = stopped_swap_run / "final"
    (stopped_swap_run / "photos").mkdir()
    result = CliRunner().invoke(app, ["predict", "-c", str(final), "--input", str(stopped_swap_run / "photos"),
                                      "--out", str(stopped_swap_run.parent / "p.jsonl")], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (f"{final}: no such checkpoint folder: a save replacing it was stopped between its two renames, and "
            f"{stopped_swap_run / '.final.saving'} holds the new one, whole. `bbuvl train --resume` of the run puts it "
            "back under final" in said), said
    with pytest.raises(FileNotFoundError, match=r"\.final\.saving holds the new one"):
        read_model_folder(final)


def test_a_run_starting_from_a_final_whose_swap_stopped_is_told_the_same(stopped_swap_run, run_config):
    shutil.rmtree(stopped_swap_run / ".final.saving")  # killed before the new one was whole: the old one is left
    with pytest.raises(ValueError, match=r"model.path .*final: no such folder: .*\.final\.old holds the one before, "
                                         r"whole"):
        check_start(run_config(f"model.path={stopped_swap_run / 'final'}"))


def test_finishing_a_stopped_swap_puts_the_new_final_back_and_removes_the_old(stopped_swap_run):
    (stopped_swap_run / ".final.saving" / "new.txt").write_text("the new one", encoding="utf-8")
    assert finish_swap(stopped_swap_run / "final") == stopped_swap_run / ".final.saving"
    assert (stopped_swap_run / "final" / "new.txt").is_file()
    assert sorted(p.name for p in stopped_swap_run.iterdir()) == ["final"]
    assert finish_swap(stopped_swap_run / "final") is None  # nothing left to finish: final/ is there


def test_a_half_new_final_is_never_put_back_the_whole_old_one_is(stopped_swap_run):
    (stopped_swap_run / ".final.saving" / "model.safetensors").unlink()  # cut before the swap: never swapped in
    assert finish_swap(stopped_swap_run / "final") == stopped_swap_run / ".final.old"
    assert checkpoint_problem(stopped_swap_run / "final") is None
    assert sorted(p.name for p in stopped_swap_run.iterdir()) == ["final"]


def _swap_killed_between_the_renames(run: str) -> None:
    die_at_the_second_rename()
    swap_in(Path(run) / ".final.saving", Path(run) / "final")


@pytest.mark.parametrize("new_whole", [True, False], ids=["new-whole", "new-damaged-since"])
def test_a_final_swap_killed_between_its_renames_is_finished_from_what_it_left(trained_checkpoint, tmp_path, new_whole):
    """The swap sets the old final/ aside as every folder replaced whole is (atomic.py `replace_folder`), named with its
    writer's pid: the resume puts back the new one, else that one, and removes the rest."""
    run = tmp_path / "run"
    for name, note in (("final", "the one before"), (".final.saving", "the new one")):
        shutil.copytree(trained_checkpoint, run / name)
        (run / name / "note.txt").write_text(note, encoding="utf-8")
    # forked: the child only renames, and importing torch again took seconds
    child = multiprocessing.get_context("fork").Process(target=_swap_killed_between_the_renames, args=(str(run),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL and not os.path.lexists(run / "final")
    (aside,) = run.glob(f".final.{child.pid}.*.old")
    assert (aside / "final" / "note.txt").read_text(encoding="utf-8") == "the one before"
    if not new_whole:
        (run / ".final.saving" / "model.safetensors").unlink()
    left = run / ".final.saving" if new_whole else aside / "final"
    assert stopped_swap(run / "final").startswith(f"a save replacing it was stopped between its two renames, and {left} "
                                                  f"holds {'the new one' if new_whole else 'the one before'}, whole.")
    assert finish_swap(run / "final") == left
    assert (run / "final" / "note.txt").read_text(encoding="utf-8") == ("the new one" if new_whole else "the one before")
    assert sorted(p.name for p in run.iterdir()) == ["final"]


@pytest.mark.slow
def test_the_next_train_resume_puts_back_the_final_a_stopped_swap_left(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    data = [f"model.path={tiny_model_dir}", f"data.train={small_dataset / 'train.jsonl'}", "data.val=null",
            "data.teachers=null"]
    assert _train(out, *data, "training.max_steps=1", cwd=tmp_path).wait(timeout=300) == 0
    (out / "final").rename(out / ".final.saving")  # as a kill between the two renames leaves it
    resumed = _train(out, *data, "training.max_steps=1", "--resume", cwd=tmp_path)
    err = resumed.communicate(timeout=300)[1]
    assert resumed.returncode == 0, err
    # before anything else: the resume's own final/ replaces it at its end
    assert f"{out / '.final.saving'}: put back as {out / 'final'}, where a save stopped between its two renames" in err
    assert checkpoint_problem(out / "final") is None and not (out / ".final.saving").exists()
