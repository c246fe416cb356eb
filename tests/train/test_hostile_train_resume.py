"""Resuming from a checkpoint whose training state is damaged or missing: skipped by --resume, refused by --resume-from,
each naming the file, before the model loads and before anything in the run's folder changes."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import Config, dump_config, load_config
from bbuvl.train.run_dir import latest_complete_checkpoint
from bbuvl.train.trainer import train


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir, small_dataset) -> Config:
    """A 2-step run saving checkpoint-1 and checkpoint-2 (trained once, copied by each test)."""
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", f"data.teachers={small_dataset / 'teachers.jsonl'}",
        "data.val=null", "data.num_workers=0", f"training.output_dir={tmp_path_factory.mktemp('run') / 'run'}",
        "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1", "training.bf16=false",
        "training.gradient_checkpointing=false", "training.use_cpu=true", "training.warmup_ratio=0",
        "training.max_steps=2", "training.save_steps=1", "training.logging_steps=1", "detection.num_queries=8",
        "detection.num_heads=4", "detection.caption_layers=1", "detection.decoder_layers=1",
    ])
    train(cfg, progress=False)
    return cfg


def copy_run(cfg: Config, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished run and a config file training into it: (output folder, config file)."""
    out = tmp_path / "run"
    shutil.copytree(cfg.training.output_dir, out)
    new = cfg.model_copy(deep=True)
    new.training.output_dir = str(out)
    new.training.max_steps = 3
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(new), encoding="utf-8")
    return out, config


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cut(path: Path) -> None:
    """`path` cut to half its length, as a copy or a full disk leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "optimizer-cut": (lambda c: cut(c / "optimizer.pt"), "optimizer.pt is cut short or damaged"),
    "scheduler-garbage": (lambda c: (c / "scheduler.pt").write_bytes(b"\0not torch" * 8),
                          "scheduler.pt is cut short or damaged"),
    "rng-cut": (lambda c: cut(c / "rng_state.pth"), "rng_state.pth is cut short or damaged"),
    "state-without-step": (lambda c: (c / "trainer_state.json").write_text("{}", encoding="utf-8"),
                           "trainer_state.json is damaged: it holds no global_step"),
    # Passed for complete: --resume took it over checkpoint-1, cut the records back to it and failed once the model
    # had loaded, at every --resume after.
    "head-missing": (lambda c: (c / "detection_head.safetensors").unlink(),
                     "detection_head.safetensors missing (the checkpoint's config sets detection.enabled)"),
    # Do not run this case without the fix: transformers then builds a full-size default model (23 GB measured).
    "config-missing": (lambda c: (c / "config.json").unlink(), "config.json missing (the model's architecture)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_checkpoint_with_damaged_or_missing_training_state_is_skipped_by_resume_and_refused_by_resume_from(
        finished, tmp_path, damage):
    """A cut optimizer.pt was a traceback about a zip "central directory" once the model had loaded (a cut
    rng_state.pth: "[Errno 22] Invalid argument", no file named), a `{}` trainer state a KeyError, and a missing
    config.json had transformers build its default, full-size model until the kernel killed the run."""
    out, config = copy_run(finished, tmp_path)
    spoil, says = DAMAGE[damage]
    spoil(out / "checkpoint-2")
    found, skipped = latest_complete_checkpoint(out)
    assert found == out / "checkpoint-1"
    assert [(p.name, says in why) for p, why in skipped] == [("checkpoint-2", True)]
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume-from", str(out / "checkpoint-2")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"--resume-from {out / 'checkpoint-2'}: cannot resume from it ({says}" in text
    assert snapshot(out) == before


@pytest.mark.parametrize("pruned", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
@pytest.mark.parametrize("how", [["--resume"], ["--resume-from", "checkpoint-2"]], ids=["resume", "resume-from"])
def test_a_checkpoint_pruned_of_the_optimizers_state_is_refused_naming_the_file_and_kept(finished, tmp_path, pruned,
                                                                                         how):
    """HF resumes the optimizer and the schedule only when both files are there: a checkpoint pruned of one went on
    with Adam's moments at zero and the warm-up started over, silently. Its weights are whole, so --resume does not
    skip it (skipped checkpoints past the one resumed are removed): the resume is refused."""
    out, config = copy_run(finished, tmp_path)
    (out / "checkpoint-2" / pruned).unlink()
    before = snapshot(out)
    argv = [str(out / a) if a.startswith("checkpoint-") else a for a in how]
    r = CliRunner().invoke(app, ["train", str(config), *argv])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"resuming from {out / 'checkpoint-2'}: {pruned} missing" in text and "put the file back" in text
    assert "Loading weights" not in r.output  # refused before the model loads: minutes for a 3B model
    assert snapshot(out) == before


def test_resume_from_a_finished_model_says_it_is_no_checkpoint(finished, tmp_path):
    """final/ holds the weights but no optimizer or trainer state: "the save did not finish" sent the user looking
    for a failed save."""
    out, config = copy_run(finished, tmp_path)
    shutil.copytree(out / "final", tmp_path / "exported")  # its own run's final/ is refused first: the run writes it
    shutil.rmtree(out)  # and a folder holding a run is no place to resume another folder's checkpoint
    r = CliRunner().invoke(app, ["train", str(config), "--resume-from", str(tmp_path / "exported")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "a finished model (final/, an export), not a checkpoint-N saved mid-run" in text
    assert "start a new run with model.path set to it" in text


def test_resume_from_the_runs_own_final_or_no_folder_says_why_it_cannot_resume_and_names_a_checkpoint(finished, tmp_path):
    out, config = copy_run(finished, tmp_path)
    before = snapshot(out)
    for given, why in ((out / "final", "a finished model (final/, an export), not a checkpoint-N saved mid-run"),
                       (tmp_path / "no-such", "no such folder")):
        r = CliRunner().invoke(app, ["train", str(config), "--resume-from", str(given)])
        text = " ".join(r.output.split())
        # Before: "holds the input --resume-from ...: choose another output folder", and "not one of its own".
        assert r.exit_code == 2 and f"--resume-from {given}: cannot resume from it (" in text and why in text, text
        if given.parent == out:
            assert f"pass --resume-from {out / 'checkpoint-2'}" in text, text
    assert snapshot(out) == before


def test_resume_and_resume_from_together_are_refused_before_anything_is_written(finished, tmp_path):
    """--resume-from silently won over --resume; the newest checkpoint and the one named may differ."""
    out, config = copy_run(finished, tmp_path)
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume", "--resume-from", str(out / "checkpoint-2")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "--resume continues from the newest checkpoint in training.output_dir, --resume-from " \
                                f"from {out / 'checkpoint-2'}: pass one of them" in text, r.output
    assert snapshot(out) == before


def test_resume_from_another_folders_checkpoint_into_a_folder_holding_a_run_is_refused_and_keeps_it(finished, tmp_path):
    """--resume-from another run's checkpoint went on in a folder holding a run of its own: that run's final/ and
    history.json were replaced and the new checkpoints saved beside its own, under its run.json."""
    out, config = copy_run(finished, tmp_path)
    shutil.rmtree(out / "checkpoint-2")
    other = tmp_path / "other"
    shutil.copytree(finished.training.output_dir, other)
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume-from", str(other / "checkpoint-2")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert f"--resume-from {other / 'checkpoint-2'}: training.output_dir {out} holds another run (checkpoint-1, final" in text
    assert "and the checkpoint is not one of its own" in text
    assert snapshot(out) == before
    # the same refused through the Python API, which went on before: the check is in the training itself
    with pytest.raises(ValueError, match="holds another run .* and the checkpoint is not one of its own"):
        train(load_config(config), resume=str(other / "checkpoint-2"))
    assert snapshot(out) == before


def config_with(cfg: Config, out: Path, tmp_path: Path, max_steps: int) -> Path:
    """A config file training into `out` for `max_steps` steps."""
    new = cfg.model_copy(deep=True)
    new.training.output_dir, new.training.max_steps = str(out), max_steps
    config = tmp_path / f"run{max_steps}.yaml"
    config.write_text(dump_config(new), encoding="utf-8")
    return config


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resuming_a_run_from_the_checkpoint_of_its_last_step_trains_nothing_more(finished, tmp_path):
    """A run killed after its last step (in the refit or the save of final/) resumed from its last checkpoint: HF
    checks for the last step only after taking one, so the resumed run trained step 3 of a 2-step run (mid-epoch),
    saved checkpoint-3 and a final/ one step past what was asked."""
    out, _ = copy_run(finished, tmp_path)
    shutil.rmtree(out / "final")
    r = CliRunner().invoke(app, ["train", str(config_with(finished, out, tmp_path, 2)), "--resume"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    assert max(h["step"] for h in history) == 2
    done = Path(finished.training.output_dir) / "final" / "model.safetensors"
    assert (out / "final" / "model.safetensors").read_bytes() == done.read_bytes()  # the weights of the run never killed


def test_resuming_a_checkpoint_past_max_steps_is_refused_naming_both_steps(finished, tmp_path):
    """Resumed with a lower training.max_steps, the run took one step more past the checkpoint and saved final/ there."""
    out, _ = copy_run(finished, tmp_path)
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config_with(finished, out, tmp_path, 1)), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert (f"resuming from {out / 'checkpoint-2'}: it was saved at step 2, past training.max_steps 1: a run cannot go "
            "back to an earlier step") in text
    assert snapshot(out) == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_refuses_a_training_photo_replaced_under_its_name_and_follows_a_moved_dataset(finished, small_dataset,
                                                                                            tmp_path):
    """run.json recorded each data file by its bytes only: a photo replaced under its name (the JSONL unchanged)
    resumed silently, one run trained on two datasets."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cfg = finished.model_copy(deep=True)
    cfg.data.train, cfg.data.teachers = str(data / "train.jsonl"), str(data / "teachers.jsonl")
    out = tmp_path / "run"
    cfg.training.output_dir, cfg.training.max_steps = str(out), 1
    train(cfg, progress=False)
    cfg.training.max_steps = 2
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    photo = sorted((data / "images").glob("train_*"))[0]
    kept = photo.read_bytes()
    photo.write_bytes(sorted((data / "images").glob("train_*"))[1].read_bytes())
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"data.train '{data / 'train.jsonl'}': photo images/{photo.name} changed in place" in text
    assert snapshot(out) == before
    photo.write_bytes(kept)  # the same photos in a folder moved elsewhere: the same run
    data.rename(tmp_path / "moved")
    moved = tmp_path / "moved"
    r = CliRunner().invoke(app, ["train", str(config), "--resume", f"data.train={moved / 'train.jsonl'}",
                                 f"data.teachers={moved / 'teachers.jsonl'}"])
    assert r.exit_code == 0, r.output
    assert (out / "checkpoint-2").is_dir()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_refuses_a_checkpoint_named_past_its_step_and_keeps_the_runs_newest(finished, tmp_path):
    """A copy of checkpoint-1 named checkpoint-9 was taken for the newest: the resume cut the run back to step 1,
    removed the complete checkpoint-2, and every later --resume took the copy again."""
    out, config = copy_run(finished, tmp_path)
    shutil.copytree(out / "checkpoint-1", out / "checkpoint-9")
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert (f"--resume: {out / 'checkpoint-9'} is the newest checkpoint by its name, but it was saved at step 1 (its "
            "trainer_state.json), and checkpoint-2, complete and past that step, would be removed") in text
    assert snapshot(out) == before


def test_resume_into_a_folder_that_does_not_exist_says_so_and_makes_nothing(finished, tmp_path):
    """A mistyped training.output_dir was "no complete checkpoint-N folder in OUT", as if the run's checkpoints were all
    damaged."""
    out = tmp_path / "no-such-run"
    r = CliRunner().invoke(app, ["train", str(config_with(finished, out, tmp_path, 3)), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"--resume: training.output_dir {out} does not exist, so there is no run to continue" in text
    assert not out.exists()


def test_resume_keeps_a_folder_named_like_a_checkpoint_past_its_step_that_no_save_wrote(finished, tmp_path):
    """The resume removed checkpoint-7/ as a save cut short, with the user's notes in it."""
    out, config = copy_run(finished, tmp_path)
    (out / "checkpoint-7").mkdir()
    (out / "checkpoint-7" / "notes.txt").write_text("mine", encoding="utf-8")
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"{out / 'checkpoint-7'} holds notes.txt, none of it a checkpoint's" in text
    assert "Loading weights" not in r.output and snapshot(out) == before
    from bbuvl.train.resume_records import check_cut_back

    (out / "checkpoint-7" / "notes.txt").unlink()  # what a save killed as it began, or after its first file, leaves
    check_cut_back(out, out / "checkpoint-2")
    (out / "checkpoint-7" / "config.json").write_text("{", encoding="utf-8")
    check_cut_back(out, out / "checkpoint-2")


def _widen_vocabulary(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    config["text_config"]["vocab_size"] += 64
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _another_models_weights(checkpoint: Path) -> None:
    """A narrower model of the checkpoint's own family copied in (its config.json and weights). Two heads of 32: Qwen3.5
    rotates a quarter of each head, and four heads of 16 left it 4 rotary dims, fewer than its three mRoPE axes take."""
    from bbuvl.data.families import family_of
    from bbuvl.tiny.model import build_tiny_model

    other = build_tiny_model(checkpoint.parent.parent / "narrow", hidden=64, heads=2,
                             family=family_of(checkpoint).model_type)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(other / name, checkpoint / name)


SWAPPED = {
    "config.json edited": (_widen_vocabulary, "has another shape than its config.json builds"),
    "another model's weights": (_another_models_weights, "its weights are not those of the model this run builds"),
}


@pytest.mark.parametrize("swap", list(SWAPPED))
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_whose_weights_are_not_the_runs_model_is_refused_naming_it_and_the_run_is_kept(finished, tmp_path,
                                                                                                  swap):
    """Both were a RuntimeError traceback from HF's loader or torch's load_state_dict once the run had loaded. The
    weights are read once the run is built; the records past the checkpoint were cut back before that, so the refusal
    left history.json cut to the checkpoint's steps: now nothing in the folder changes."""
    out, config = copy_run(finished, tmp_path)
    change, says = SWAPPED[swap]
    change(out / "checkpoint-2")
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"error: {out / 'checkpoint-2'}: " in text and says in text, r.output
    assert snapshot(out) == before


def test_a_checkpoint_of_another_family_is_refused_naming_both_families(finished, tmp_path):
    """Its weights were loaded into the run's class, and the error was that they "do not fit config.json: 63 weights its
    config.json builds are not in its weight files ...; restore its config.json", where config.json and the weights
    were one model, of another family."""
    from bbuvl.data.families import family_of, get_family
    from bbuvl.tiny.model import build_tiny_model

    out, config = copy_run(finished, tmp_path)
    ours = family_of(finished.model.path)
    theirs = get_family("qwen3_vl" if ours.model_type == "qwen2_5_vl" else "qwen2_5_vl")
    other = build_tiny_model(tmp_path / "other", family=theirs.model_type)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(other / name, out / "checkpoint-2" / name)
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert (f"error: {out / 'checkpoint-2'}: its weights are not those of the model this run builds: its config.json is "
            f"a {theirs.name} model ('{theirs.model_type}'), and this run trains {ours.name} ('{ours.model_type}'") in text, \
        r.output
    assert "do not fit config.json" not in text
    assert snapshot(out) == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refused_resume_from_into_a_new_folder_leaves_no_run_there(finished, tmp_path):
    """The run's record (run.json) was written once the run was built, before the checkpoint's weights were refused:
    the new folder then held "another run", and training there without --resume was refused."""
    out, _ = copy_run(finished, tmp_path)
    _another_models_weights(out / "checkpoint-2")
    new = tmp_path / "new"
    r = CliRunner().invoke(app, ["train", str(config_with(finished, new, tmp_path, 3)), "--resume-from",
                                 str(out / "checkpoint-2")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "its weights are not those of the model this run builds" in text, r.output
    assert not new.exists() or not any(new.iterdir()), sorted(p.name for p in new.iterdir())


def test_resume_from_a_file_says_it_is_a_file_and_writes_nothing(finished, tmp_path):
    """It said "no such folder" of a file that is there: a user looks for a typo that is not one."""
    out, config = copy_run(finished, tmp_path)
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), f"training.output_dir={tmp_path / 'new'}", "--resume-from",
                                 str(config)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"--resume-from {config}: cannot resume from it (a file, not a " \
                                "checkpoint folder)" in text, r.output
    assert snapshot(out) == before and not (tmp_path / "new").exists()


def test_resume_whose_saves_were_all_cut_says_to_start_over_and_what_that_removes(finished, tmp_path):
    """It said 'no complete checkpoint-N folder' and gave no next step."""
    out, config = copy_run(finished, tmp_path)
    for step in (1, 2):  # each save killed before HF wrote its trainer_state.json, which it writes last
        (out / f"checkpoint-{step}" / "trainer_state.json").unlink()
    before = snapshot(out)
    r = CliRunner().invoke(app, ["train", str(config), "--resume"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert ("so it cannot be continued: start it over by running the same command without --resume and with "
            "--overwrite (it removes checkpoint-1, checkpoint-2 and the run's other files there)") in text
    (out / "checkpoint-1" / "trainer_state.json").write_bytes(
        (Path(finished.training.output_dir) / "checkpoint-1" / "trainer_state.json").read_bytes())
    r = CliRunner().invoke(app, ["train", str(config), "--resume-from", str(out / "checkpoint-2")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert (f"the newest checkpoint beside it that can be resumed is {out / 'checkpoint-1'}: pass --resume-from "
            f"{out / 'checkpoint-1'}") in text
    assert {k: v for k, v in snapshot(out).items() if k != "checkpoint-1/trainer_state.json"} == before
