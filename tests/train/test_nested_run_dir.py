"""A run's folder never lies inside another run's checkpoint-N/ or final/, nor holds another run in its own: the
rotation of old checkpoints, the next save of final/ and --overwrite each delete those folders whole."""

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.train.run_dir import RunDirError, check_not_nested, check_output_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_run(out: Path, checkpoints: tuple[str, ...] = ("checkpoint-2", "final")) -> Path:
    """A run's folder as `fit` leaves it: run.json, history.json and checkpoints holding their config."""
    out.mkdir(parents=True)
    for name in ("run.json", "history.json"):
        (out / name).write_text("{}", encoding="utf-8")
    for name in checkpoints:
        (out / name).mkdir()
        (out / name / "bbuvl.yaml").write_text("{}", encoding="utf-8")
    return out


@pytest.mark.parametrize("inside", ["final/retrain", "checkpoint-2/retrain", "final", "checkpoint-2/a/b"])
def test_an_output_dir_inside_another_runs_checkpoint_is_refused_naming_both_folders(tmp_path, inside):
    run = fake_run(tmp_path / "a")
    out = run / inside
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(RunDirError) as e:
            check_output_dir(out, resume, overwrite)
        said = str(e.value)
        checkpoint = run / inside.split("/")[0]
        assert f"training.output_dir {out}" in said and f"{checkpoint}, a checkpoint of the run in {run}" in said


def test_a_run_still_training_has_no_final_yet_and_a_folder_there_is_refused_all_the_same(tmp_path):
    run = fake_run(tmp_path / "a", checkpoints=())  # run.json written, nothing saved yet
    with pytest.raises(RunDirError, match=f"lies inside {run / 'final'}, a checkpoint of the run in {run}"):
        check_not_nested(run / "final" / "retrain")


def test_a_link_into_another_runs_final_is_refused_as_the_folder_it_leads_to(tmp_path):
    run = fake_run(tmp_path / "a")
    (tmp_path / "b").symlink_to(run / "final")
    with pytest.raises(RunDirError, match=f"lies inside {run / 'final'}"):
        check_not_nested(tmp_path / "b" / "retrain")


def test_folders_named_final_or_checkpoint_of_no_run_are_anyones(tmp_path):
    (tmp_path / "projects" / "final").mkdir(parents=True)
    (tmp_path / "projects" / "final" / "notes.txt").write_text("mine", encoding="utf-8")
    check_output_dir(tmp_path / "projects" / "final" / "run", resume=False, overwrite=False)
    check_output_dir(tmp_path / "projects" / "checkpoint-3" / "run", resume=False, overwrite=False)
    run = fake_run(tmp_path / "a")
    check_output_dir(run.parent / "b", resume=False, overwrite=False)  # beside a run, not in it
    check_output_dir(run / "tb2", resume=False, overwrite=False)  # in its folder but no checkpoint of it


def test_an_output_dir_in_another_runs_logs_which_its_overwrite_removes_is_refused(tmp_path):
    run = fake_run(tmp_path / "a")
    for name in ("tb", "nan_batches"):
        with pytest.raises(RunDirError, match=f"lies inside {run / name}, a folder of the run in {run}, whose --overwrite "
                                              "would delete this run with it"):
            check_not_nested(run / name / "retrain")


@pytest.mark.parametrize("where", ["final/retrain", "checkpoint-2/x/retrain", "tb/retrain"])
def test_an_output_dir_whose_own_checkpoint_holds_another_run_is_refused_resuming_or_overwriting(tmp_path, where):
    run = fake_run(tmp_path / "a")
    nested = fake_run(run / where, checkpoints=("final",))
    before = snapshot(run)
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(RunDirError) as e:
            check_output_dir(run, resume, overwrite)
        assert f"its {where.split('/')[0]}/ holds another run, in {nested}" in str(e.value)
    assert snapshot(run) == before


def test_bbuvl_train_into_a_finished_runs_final_is_refused_and_that_run_is_left_whole(run_config, trained_checkpoint,
                                                                                     tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_checkpoint.parent, other)  # the session's run: its run.json, history.json, final/
    before = snapshot(other)
    for flags in ([], ["--overwrite"], ["--resume"]):
        cfg = run_config(f"training.output_dir={other / 'final' / 'retrain'}", "training.max_steps=1")
        config = tmp_path / "run.yaml"
        config.write_text(dump_config(cfg), encoding="utf-8")
        r = CliRunner().invoke(app, ["train", str(config), *flags])
        said = "".join(r.output.split())
        assert r.exit_code == 2, r.output
        assert "".join(f"lies inside {other / 'final'}, a checkpoint of the run in {other}".split()) in said, r.output
        assert "Traceback" not in r.output and snapshot(other) == before
