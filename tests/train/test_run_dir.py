"""A run's output folder: what --overwrite removes, what it says it removed, and that it is never on the data or the
model."""

import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.model.checkpoint import CheckpointError
from bbuvl.train.run_dir import RunDirError, check_output_dir, check_run_inputs, checkpoint_incomplete, clear_previous_run
from bbuvl.train.run_record import CHECKPOINT_RECORD, RUN_RECORD
from tests.callbacks import StopAt
from tests.model_folders import as_an_older_bbuvl_wrote_it


def prepare_output_dir(out, resume: bool, overwrite: bool) -> None:
    """What `train` does to its output folder before anything loads: refuse another run, or clear it."""
    clear_previous_run(out, check_output_dir(out, resume, overwrite))


def test_a_new_folder_is_prepared_without_a_word_about_removing_a_run(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(tmp_path / "new", resume=False, overwrite=False)
        prepare_output_dir(tmp_path / "new", resume=False, overwrite=True)
    assert "--overwrite" not in caplog.text


def test_overwrite_removes_the_previous_run_and_names_what_it_removed(tmp_path, caplog):
    out = tmp_path / "run"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "run.json").write_text("{}", encoding="utf-8")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert "checkpoint-5, run.json" in caplog.text


# --- the folder is the run's alone --------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def world(run_config, small_dataset, tiny_model_dir, tmp_path):
    """A dataset and a base model of this test's own, and a config training on them."""
    shutil.copytree(small_dataset, tmp_path / "data")
    shutil.copytree(tiny_model_dir, tmp_path / "base")
    d = tmp_path / "data"
    return run_config(f"model.path={tmp_path / 'base'}", f"data.train={d / 'train.jsonl'}", f"data.val={d / 'val.jsonl'}",
                      f"data.teachers={d / 'teachers.jsonl'}")


@pytest.mark.parametrize(("where", "named"), [
    ("data", "holds the input data.train"),
    ("data/images", "holds the input data.train line 1's photo folder"),
    ("data/images/run", "is inside the input data.train line 1's photo folder"),
    (".", "holds the input model.path"),
    ("base", "holds the input model.path"),
    ("base/run", "is inside the input model.path"),
    ("link", "holds the input data.train"),
], ids=["dataset-folder", "photo-folder", "inside-photos", "parent", "model-path", "inside-model-path", "link-to-data"])
@pytest.mark.parametrize("flag", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_an_output_dir_on_the_data_or_the_model_is_refused_naming_both_keys_and_nothing_is_touched(world, tmp_path,
                                                                                                    where, named, flag):
    (tmp_path / "data" / "checkpoint-3").mkdir()  # a folder of the user's that --overwrite would take for a run's
    (tmp_path / "data" / "health.json").write_text("{}", encoding="utf-8")
    (tmp_path / "link").symlink_to(tmp_path / "data")  # the dataset folder under another name
    cfg = world.model_copy(deep=True)
    cfg.training.output_dir = str(tmp_path / where)
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    before = {name: snapshot(tmp_path / name) for name in ("data", "base")}
    r = CliRunner().invoke(app, ["train", str(config), *flag])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert f"training.output_dir {tmp_path / where}".replace("/.", "") in text and named in text
    assert "Traceback" not in r.output
    assert {name: snapshot(tmp_path / name) for name in ("data", "base")} == before


@pytest.mark.parametrize("root", ["/", "/.", "//"])
def test_the_root_of_the_file_system_as_output_dir_is_a_clean_error(world, tmp_path, root):
    cfg = world.model_copy(deep=True)
    cfg.training.output_dir = root
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(config)])
    # Before: a ValueError traceback, "PosixPath('/') has an empty name", from the output's lock beside it.
    assert r.exit_code == 2, (r.output, r.exception)
    assert "/: the root of the file system cannot be an output; choose a folder inside it" in " ".join(r.output.split())


def test_an_output_dir_beside_the_photos_in_the_dataset_folder_is_allowed(world, tmp_path):
    check_run_inputs(tmp_path / "data" / "runs" / "a", {"model.path": world.model.path, "data.train": world.data.train},
                     overwrite=True)
    with pytest.raises(RunDirError, match="training.output_dir .*: holds the input data.train"):
        check_run_inputs(tmp_path, {"data.train": world.data.train}, overwrite=False)


def test_a_previous_runs_health_report_is_part_of_it(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "health.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"holds another run \(health.json\)"):
        prepare_output_dir(out, resume=False, overwrite=False)
    prepare_output_dir(out, resume=False, overwrite=True)  # a run without alarms must not keep the old run's report
    assert not (out / "health.json").exists()


def test_overwrite_removes_a_linked_checkpoint_and_final_as_links_and_keeps_what_they_point_to(tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "kept"
    (out / "checkpoint-1").mkdir(parents=True)
    (elsewhere / "final").mkdir(parents=True)
    (elsewhere / "final" / "model.safetensors").write_text("theirs", encoding="utf-8")
    (out / "checkpoint-7").symlink_to(elsewhere / "final")
    (out / "final").symlink_to(elsewhere / "final")
    prepare_output_dir(out, resume=False, overwrite=True)
    assert list(out.iterdir()) == []
    assert (elsewhere / "final" / "model.safetensors").read_text(encoding="utf-8") == "theirs"


def test_a_folder_named_like_a_checkpoint_that_hf_would_rotate_away_is_refused_and_kept(run_config, tmp_path):
    """HF's rotation (training.save_total_limit) takes any checkpoint-<number>* folder for a checkpoint: a run
    deleted the user's checkpoint-1.bak, a copy kept beside the run, once it had saved two checkpoints."""
    from bbuvl.train.run_dir import check_rotation
    from bbuvl.train.trainer import train

    out = tmp_path / "run"
    (out / "checkpoint-1.bak").mkdir(parents=True)
    (out / "checkpoint-1.bak" / "notes.txt").write_text("mine", encoding="utf-8")
    cfg = run_config("training.max_steps=3", "training.save_steps=1", "training.save_total_limit=2")
    with pytest.raises(RunDirError, match=r"holds checkpoint-1.bak, not a checkpoint of a run but named like one: HF's "
                                          r"checkpoint rotation \(training.save_total_limit 2\) .* would delete it"):
        train(cfg, progress=False)
    assert snapshot(out) == {"checkpoint-1.bak/notes.txt": b"mine"}
    # Numbered past the run's last step, it stays the newest, which the rotation keeps when it keeps two or more.
    (out / "checkpoint-1.bak").rename(out / "checkpoint-16.bak")
    check_rotation(out, max_steps=3, save_total_limit=2)
    for steps, limit in ((-1, 2), (3, 1), (16, 2)):
        with pytest.raises(RunDirError, match="holds checkpoint-16.bak"):
            check_rotation(out, max_steps=steps, save_total_limit=limit)
    (out / "checkpoint-2-notes").mkdir()  # any name starting checkpoint-<number>, whatever follows
    with pytest.raises(RunDirError, match="holds checkpoint-2-notes"):
        check_rotation(out, max_steps=3, save_total_limit=2)


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_a_file_named_like_a_checkpoint_the_run_would_save_is_refused_before_the_first_step(run_config, tmp_path, kind):
    """The save at step 2 into checkpoint-2 failed on the user's file of that name, after the steps before it."""
    from bbuvl.train.trainer import train

    out = tmp_path / "run"
    out.mkdir()
    if kind == "file":
        (out / "checkpoint-2").write_text("mine", encoding="utf-8")
    else:
        (out / "checkpoint-2").symlink_to(tmp_path / "nowhere")
    cfg = run_config("training.max_steps=3", "training.save_steps=2")
    with pytest.raises(RunDirError, match=r"holds checkpoint-2, not a folder, where the run saves its checkpoint"):
        train(cfg, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]


@pytest.mark.parametrize("kind", ["link to nowhere", "link loop"])
def test_an_output_dir_that_is_a_link_reaching_nothing_is_refused_before_the_model_loads(run_config, tmp_path, kind):
    """The run made the folder only once the model had loaded, and failed there with "error: OUT: File exists"."""
    out = tmp_path / "run"
    if kind == "link to nowhere":
        out.symlink_to(tmp_path / "nowhere")
    else:
        out.symlink_to(tmp_path / "back")
        (tmp_path / "back").symlink_to(out)
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config()), encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(config)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"training.output_dir {out}: a link that reaches nothing is there" in text
    assert "Loading weights" not in r.output and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("name", ["final", "tb", "nan_batches"])
@pytest.mark.parametrize("how", [[], ["--overwrite"], ["--resume"]], ids=["plain", "overwrite", "resume"])
def test_a_final_tb_or_nan_batches_folder_no_run_wrote_is_refused_and_kept_even_with_overwrite(run_config, tmp_path,
                                                                                               name, how):
    """A folder of the user's named final/ or tb/ (no run record, checkpoint or run file beside or in it) was called
    "another run", and --overwrite then removed it whole with the user's files in it."""
    out = tmp_path / "run"
    (out / name / "mine").mkdir(parents=True)
    (out / name / "notes.txt").write_text("mine", encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config()), encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(config), *how])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"training.output_dir {out}: holds {name}/, which no run wrote" in text
    assert snapshot(out) == {f"{name}/notes.txt": b"mine"} and (out / name / "mine").is_dir()


def test_a_runs_own_final_and_tb_still_go_with_overwrite(tmp_path):
    """What a run wrote there (a model's bbuvl.yaml in final/, event files in tb/) is still the run's to replace."""
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "final" / "bbuvl.yaml").write_text("{}", encoding="utf-8")
    (out / "tb").mkdir()
    (out / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    prepare_output_dir(out, resume=False, overwrite=True)
    assert list(out.iterdir()) == []


def before_vision_positions(checkpoint: Path) -> None:
    """A checkpoint as a bbu-vl with today's head but no vision positions wrote it: no key, no file."""
    import yaml

    config = yaml.safe_load((checkpoint / "bbuvl.yaml").read_text(encoding="utf-8"))
    del config["model"]["vision_positions"]
    (checkpoint / "bbuvl.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (checkpoint / "vision_positions.safetensors").unlink()


@pytest.mark.parametrize("older, file, cause", [
    pytest.param(as_an_older_bbuvl_wrote_it, "detection_head.safetensors",
                 "written by an older bbu-vl, whose detection head had another layout", id="the oldest"),
    pytest.param(before_vision_positions, "vision_positions.safetensors",
                 "missing: an older bbu-vl wrote this checkpoint without it (its bbuvl.yaml has no model.vision_positions",
                 id="before vision positions")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_whole_checkpoint_of_an_older_bbuvl_is_refused_as_such_and_no_removal_is_advised(run_config, tmp_path, older,
                                                                                           file, cause):
    from bbuvl.train.trainer import train

    cfg = run_config("training.max_steps=4", "training.save_steps=2")
    train(cfg, progress=False, callbacks=[StopAt(2)])
    run = tmp_path / "run"
    checkpoint = run / "checkpoint-2"
    older(checkpoint)
    for record in (run / RUN_RECORD, checkpoint / CHECKPOINT_RECORD):  # that bbu-vl kept no run record
        record.unlink()
    # Whole: its bbuvl.yaml has no model.vision_positions, so no positions file is owed. It was called a save killed
    # half-way, and --overwrite advised, which would have removed the run.
    assert checkpoint_incomplete(checkpoint) is None
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(CheckpointError) as refused:
        train(cfg, resume=True, progress=False)
    said = str(refused.value)
    assert said.startswith(f"{checkpoint / file}: {cause}") and "this version cannot resume it" in said
    assert f"model.path={checkpoint}" in said and "--overwrite" not in said and "killed" not in said
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written, nothing cut back


def test_a_failed_start_removes_the_folders_it_made_and_keeps_those_that_were_there_or_hold_anything(tmp_path):
    from bbuvl.train.run_dir import left_as_found

    made = tmp_path / "runs" / "a" / "ddp"
    with pytest.raises(RuntimeError):
        with left_as_found(made):
            made.mkdir(parents=True)  # as transformers' Trainer makes output_dir when built
            raise RuntimeError("refused")
    assert not (tmp_path / "runs").exists()
    there = tmp_path / "mine"
    there.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with left_as_found(there / "run"):
            (there / "run").mkdir()
            (there / "run" / "run.json").write_text("{}", encoding="utf-8")  # a run's record: it stays
            raise KeyboardInterrupt
    assert (there / "run" / "run.json").is_file()
    with left_as_found(tmp_path / "ok"):  # a start that goes on keeps what it made
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()
