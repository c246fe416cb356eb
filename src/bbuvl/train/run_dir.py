"""A run's output folder: one run per folder, and resume from its newest *complete* checkpoint.

Training into a folder that already holds a run would replace its `final/` and leave its numbered
checkpoints beside the new ones, where a later `--resume` picks the old run's newest. So a used folder is
refused unless the caller resumes it or asks to overwrite it (which clears the old run's checkpoints).

The folder is the run's alone: it is never model.path, a data file's folder, a photo folder, nor inside or
around one of them, since a run writes `checkpoint-N/`, `final/`, `tb/` and its files there and `--overwrite` and
`--resume` take whatever carries those names for the run's own (`check_run_inputs`).

A checkpoint is complete when HF's trainer_state.json (written last by HF Trainer) parses and every
weights file is as long as its header says (model/checkpoint.py); a save killed half-way or cut short by
a full disk fails that and is skipped.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from bbuvl.atomic import remove_dead_removals, remove_whole
from bbuvl.data.jsonfile import read_json
from bbuvl.config import Config, holds_key, load_config
from bbuvl.model.checkpoint import HEAD_FILE, POSITIONS_FILE, READOUT_FILE, checkpoint_problem
from bbuvl.outputs import (Claim, OutputConflict, check_not_inputs, hold_outputs, refuse_inputs_being_written,
                           refuse_outputs_being_read, register_reading, release_readings, same_path, writer_around,
                           writer_at)
from bbuvl.paths import real_path
from bbuvl.train.all_ranks import first_process
from bbuvl.train.data_files import DataFiles, photo_folders
from bbuvl.train.monitors import HEALTH_FILE

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # HF's names; `checkpoint-16.bak` and the like are not ours
FINAL_DIR = "final"
# run.json: what the run was started with (train/run_record.py); health.json: the alarms (train/monitors.py)
RUN_RECORD = "run.json"  # train/run_record.py writes it
# The run's record as a checkpoint carries it (train/trainer.py and rl/trainer.py `_save`): a resume whose folder lost
# run.json checks against it. Not named run.json: a folder holding that is taken for another run nested in this one.
CHECKPOINT_RECORD = "run_record.json"
RUN_RECORDS = ("history.json", RUN_RECORD)  # a folder holding either holds a run (train/trainer.py `fit` writes both)
RUN_FILES = (*RUN_RECORDS, HEALTH_FILE)
RUN_DIRS = (FINAL_DIR, "tb", "nan_batches")


class RunDirError(ValueError):
    """The output folder holds another run, or no checkpoint there can be resumed."""


def numbered_checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-N` folders of a run, oldest step first (anything else named checkpoint-* is ignored)."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
             if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def previous_run(output_dir: str | Path) -> list[str]:
    """What in `output_dir` a run wrote (empty when the folder is new or holds none of it)."""
    out = Path(output_dir)
    found = [p.name for p in numbered_checkpoints(out)]
    found += [name for name in RUN_DIRS + RUN_FILES if (out / name).exists()]
    return found


def foreign_run_dirs(output_dir: str | Path) -> list[str]:
    """The names of `final`, `tb` and `nan_batches` in `output_dir` that no run wrote: no run's record nor checkpoint
    lies beside them, and they hold nothing a run writes there (a model's bbuvl.yaml, event files, batch dumps)."""
    out = Path(output_dir)
    if not out.is_dir() or any((out / name).is_file() for name in RUN_RECORDS) or numbered_checkpoints(out):
        return []
    written = {FINAL_DIR: lambda p: any((p / name).is_file() for name in CHECKPOINT_FILES),
               "tb": lambda p: any(p.glob("*tfevents*")), "nan_batches": lambda p: any(p.glob("step*_*.json"))}
    return [name for name in RUN_DIRS if (path := out / name).exists() and not path.is_symlink()
            and not (path.is_dir() and written[name](path))]


def check_output_dir(output_dir: str | Path, resume: bool, overwrite: bool) -> list[str]:
    """Refuse a folder holding another run unless resuming it or `overwrite`, and one holding a `final/`, `tb/` or
    `nan_batches/` no run wrote either way; returns what `overwrite` will remove."""
    out = _folder(output_dir)
    check_not_nested(out)  # resuming or not: the other run's next save deletes this one either way
    if foreign := foreign_run_dirs(out):
        # Taken for a run's, they were removed whole by --overwrite (the refusal without it called them "another
        # run"), and a run's save of final/ replaces that folder whole.
        raise RunDirError(f"training.output_dir {out}: holds {', '.join(n + '/' for n in foreign)}, which no run "
                          f"wrote (no run record, checkpoint or {'model' if foreign[0] == FINAL_DIR else 'log'} of "
                          "one): a run writes its own there, and --overwrite would remove it whole. Move it out of "
                          "training.output_dir, or choose another training.output_dir")
    found = previous_run(out)
    if not found or resume:
        return []
    if not overwrite:
        shown = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
        raise RunDirError(f"training.output_dir {out}: holds another run ({shown}); pass --resume to continue it, "
                          "--overwrite to replace it, or choose another training.output_dir")
    return found


# What a run writes into a checkpoint folder of its own (model/checkpoint.py's config, HF's trainer state)
CHECKPOINT_FILES = ("bbuvl.yaml", "trainer_state.json")


def _run_folder(folder: Path) -> str | None:
    """How a run deletes `folder` whole when it is (or will be) one of that run's checkpoint-N/, final/, tb/ or
    nan_batches/ (None when it is none): named so, and holding a checkpoint's files or lying in a folder that holds a
    run's record, history or other checkpoints."""
    parent = folder.parent
    run_beside = any((parent / name).is_file() for name in RUN_RECORDS)
    if folder.name == FINAL_DIR or CHECKPOINT.match(folder.name):
        if (run_beside or any((folder / name).is_file() for name in CHECKPOINT_FILES)
                or any(p != folder for p in numbered_checkpoints(parent))):
            return f"a checkpoint of the run in {parent}, whose checkpoint rotation, next save of final/ or --overwrite"
    elif folder.name in RUN_DIRS and run_beside:
        return f"a folder of the run in {parent}, whose --overwrite"
    return None


def check_not_nested(output_dir: str | Path) -> None:
    """Refuse an output folder that is or lies inside another run's checkpoint-N/, final/, tb/ or nan_batches/, or
    whose own such folders hold another run: RunDirError naming both folders.

    A run's checkpoint rotation (training.save_total_limit) deletes its old checkpoint-N/ whole, its next save
    replaces final/ whole, and --overwrite removes all of them: a run kept in one of them is lost with it.
    """
    out = Path(output_dir)
    located = real_path(out)  # a link to another run's final/ lies in it all the same
    for folder in (located, *located.parents):
        if (whose := _run_folder(folder)) is not None:
            raise RunDirError(f"training.output_dir {out}: {'is' if folder == located else 'lies inside'} {folder}, "
                              f"{whose} would delete this run with it. Train into a folder of its own outside "
                              f"{folder.parent}" + (f" (set model.path={folder} to start from that checkpoint)"
                                                    if whose.startswith("a checkpoint") else ""))
    if not out.is_dir():
        return
    for folder in [*numbered_checkpoints(out), *(out / name for name in RUN_DIRS)]:
        if not folder.is_dir() or folder.is_symlink():
            continue  # a link is removed as a link (`clear_previous_run`), never what it points to
        nested = sorted(p.parent for name in RUN_RECORDS for p in folder.rglob(name) if p.parent != folder)
        if nested:
            raise RunDirError(f"training.output_dir {out}: its {folder.name}/ holds another run, in {nested[0]}: this "
                              f"run's checkpoint rotation, its next save of final/ or --overwrite would delete it. "
                              f"Move {nested[0]} out of {out}, or choose another training.output_dir")


# How HF's checkpoint rotation (training.save_total_limit) finds a checkpoint: any folder named checkpoint-* whose
# name holds "checkpoint-" and digits (transformers' trainer_utils.sort_checkpoints), `checkpoint-16.bak` too.
HF_CHECKPOINT = re.compile(r".*checkpoint-([0-9]+)")


def check_rotation(output_dir: str | Path, max_steps: int, save_total_limit: int) -> None:
    """Refuse a run whose folder holds another folder that HF's checkpoint rotation would take for one of the run's
    checkpoints by its name and may delete (a copy `checkpoint-200.bak`), or a file where the run would save one;
    RunDirError naming each."""
    out = Path(output_dir)
    entries = sorted(out.glob("checkpoint-*")) if out.is_dir() else []
    # A save into checkpoint-N creates that folder: a file (or a link to nowhere) of that name failed the run there,
    # after every step before it
    taken = [path.name for path in entries if CHECKPOINT.match(path.name) and not path.is_dir()]
    if taken:
        raise RunDirError(f"training.output_dir {out}: holds {', '.join(taken)}, not a folder, where the run saves its "
                          "checkpoint of that step: the save would fail there, after the steps before it. Move it out "
                          "of training.output_dir or rename it")
    found = []
    for path in entries:
        if not path.is_dir() or path.is_symlink() or CHECKPOINT.match(path.name):
            continue  # rotation removes no file nor link, and the run's own checkpoint-N are its to rotate
        if (m := HF_CHECKPOINT.match(path.name)) is None:
            continue
        # The rotation deletes the oldest by number and keeps the newest: one numbered past the run's last step
        # is kept, as long as the rotation keeps two or more.
        if max_steps == -1 or int(m.group(1)) <= max_steps or save_total_limit < 2:
            found.append(path.name)
    if found:
        raise RunDirError(f"training.output_dir {out}: holds {', '.join(found)}, not a checkpoint of a run but named "
                          f"like one: HF's checkpoint rotation (training.save_total_limit {save_total_limit}) takes "
                          "it for one by its name and would delete it. Move it out of training.output_dir, or rename "
                          "it so that its name does not start with checkpoint-")


def check_resume_into(output_dir: str | Path, checkpoint: str | Path) -> None:
    """Refuse resuming a checkpoint of another folder into an output folder that holds a run of its own."""
    out, folder = Path(output_dir), Path(checkpoint).parent
    if same_path(folder, out) or not (found := previous_run(out)):
        return
    # The resumed run would replace this one's final/ and history.json and save beside its checkpoints, while its
    # run.json, which later resumes compare with, stays the other run's (docs/resume.md, "train --resume: the run
    # record").
    shown = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
    raise RunDirError(f"--resume-from {checkpoint}: training.output_dir {out} holds another run ({shown}), and the "
                      f"checkpoint is not one of its own: resuming would continue one run in the other's folder. "
                      "Choose an empty training.output_dir, or resume from a checkpoint of this folder")


def check_not_being_written(inputs: Mapping[str, str | Path | None]) -> None:
    """Refuse a model folder another command is writing now, or one lying in a folder it writes (a running run's
    final/ or checkpoint-N/): RunDirError naming the key, the folder and the writer.

    That run's next save of final/ replaces the folder and its checkpoint rotation deletes it, maybe while this run
    loads it or after: its record (run.json) and a LoRA checkpoint's recorded base digest the folder when they are
    written, so they could name weights other than the ones the run started from, and a later --resume or predict
    would take the new ones for its own.
    """
    for key, given in inputs.items():
        if not given:
            continue
        if not os.path.lexists(given):
            # A run's --overwrite removes its final/ before it saves the new one: the folder is not there yet, where
            # it was taken for a hub id or a typo; a hub id, or a missing folder no one writes, is check_inputs' to name.
            if (writer := writer_around(Path(given))) is not None:
                raise RunDirError(f"{key} {given}: no such folder yet: `bbuvl {writer.command}` ({writer.who}) "
                                  f"is writing {writer.output} now; wait for that command to finish, then run this one "
                                  "again")
            continue
        located = real_path(Path(given))
        for folder in (located, *located.parents):
            writer = writer_at(folder)
            if writer is None or not writer.running:
                continue
            where = "" if folder == located else f"lies in {folder}, which "
            raise RunDirError(f"{key} {given}: {where}`bbuvl {writer.command}` ({writer.who}) is writing it now, and "
                              "may replace or delete it while this run reads it; wait for that command to finish, or "
                              f"copy {given} out of {folder} and start from the copy")


@contextmanager
def holding_run(cfg: Config, resume_from: str | Path | None, overwrite: bool) -> Iterator[None]:
    """Hold `training.output_dir` against every other process, and register the run's inputs as read, for as long as
    the block runs: whoever starts the run, `bbuvl train` or a notebook calling `train` or `train_grpo`
    (docs/outputs.md, "Called from Python"). Refused (OutputConflict, RunDirError) when another process writes the
    folder or an input, or reads what the run would replace: the whole folder with `overwrite`, else its final/.

    Only the first process holds them under torchrun or accelerate; a lock already held by this thread (a caller's
    own claim) is taken again, not refused, and one another thread holds is refused (bbuvl/outputs.py, `OutputLock`)."""
    if not first_process():
        yield
        return
    out = Path(cfg.training.output_dir)
    read = {"model.path": cfg.model.path, "--resume-from": resume_from}
    try:
        # a dataset another command is still writing would train on part of it
        refuse_inputs_being_written({f"data.{k}": Path(v) for k in ("train", "val", "teachers")
                                     if (v := getattr(cfg.data, k)) is not None})
        # a model folder, or another run's checkpoint, inside a run still training: its saves replace them
        check_not_being_written(read)
        register_reading(read)  # adopted by the hold below, and released with it
        claim = _hold_run_folder(out)
    except BaseException:
        release_readings()  # what was registered above, that no hold adopted
        raise
    succeeded = False
    try:
        # --overwrite deletes the run; any run replaces final/ (its rotation deletes only its own checkpoints)
        refuse_outputs_being_read({"training.output_dir": out} if overwrite else
                                  {"training.output_dir's final/": out / FINAL_DIR})
        yield
        succeeded = True
    finally:
        claim.finish(succeeded)


@contextmanager
def left_as_found(out: Path) -> Iterator[None]:
    """Remove `out` and the folders above it that were not there when the block began, deepest first and only while
    empty, when the block fails: a refused start leaves no folder of its own behind (docs/resume.md, "train: a refused
    start"), and a folder that was there, or one that holds anything (a run's records), stays."""
    made = [p for p in (out, *out.parents) if not os.path.lexists(p)]  # deepest first
    try:
        yield
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except FileNotFoundError:  # another process of the run removed it first, or it was never made
                continue
            except OSError:  # something was written there: it stays, and so does every folder above it
                break
        raise


def _hold_run_folder(out: Path) -> Claim:
    """`hold_outputs` of the run folder (one run per folder); where its lock file cannot be written beside the folder
    (a read-only or full disk, a file where a folder above it should be), a RunDirError naming the key and that file."""
    try:
        return hold_outputs("train", [out])
    except OSError as e:
        where = f"{e.filename}: " if e.filename is not None else ""
        raise RunDirError(f"training.output_dir {out}: cannot be written: {where}{e.strerror or e} (the lock file "
                          "beside it, written before anything else); choose another training.output_dir") from e


def _folder(output_dir: str | Path) -> Path:
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"training.output_dir {out}: is a file, not a folder")
    if out.is_symlink() and not out.exists():
        # The run would make the folder only once the model had loaded, and fail there with "File exists"
        raise RunDirError(f"training.output_dir {out}: a link that reaches nothing is there (to {os.readlink(out)}, or "
                          "its links lead in a loop); make the folder it points to, or choose another training.output_dir")
    return out


def clear_previous_run(output_dir: str | Path, found: list[str]) -> None:
    """Remove what `check_output_dir` found of the previous run (what `--overwrite` replaces)."""
    out = Path(output_dir)
    remove_dead_removals(out)
    for name in found:
        # Whole or not at all, a stop part-way: half a checkpoint could pass for the newest. A link (checkpoint-7 ->
        # another run's) goes, never what it points to.
        remove_whole(out / name)
    if found:
        log.warning("--overwrite: removed the previous run's %s from %s", ", ".join(found), out)


def check_run_inputs(output_dir: str | Path, inputs: Mapping[str, str | Path | None], overwrite: bool,
                     own: Mapping[str, str | Path | None] | None = None, files: DataFiles | None = None) -> None:
    """Refuse a run whose folder is, holds or lies in one of its inputs (model.path, a data file's folder, a photo
    folder), or that would write onto one (model.path = this folder's final/, say), resuming or not.

    `inputs` map config keys to paths (data files' photo folders are added here); `own` are inputs that may lie in
    the folder because the run wrote them (`--resume-from`'s checkpoint), checked only against what it replaces.
    The data files are read through `files` when given (train/data_files.py).
    """
    out = _folder(output_dir)
    apart = dict(inputs)
    files = files or DataFiles()
    for key in ("data.train", "data.val", "data.teachers", "detection.caption_refit.photos"):
        if inputs.get(key) and Path(inputs[key]).is_file():
            apart.update(photo_folders(inputs[key], key, files))
    given = {k: Path(v) for k, v in apart.items() if v}
    try:
        check_not_inputs(given, folders=[out])
    except OutputConflict as e:
        raise RunDirError(f"training.output_dir {e} (a run writes checkpoint-N/, final/, tb/, {', '.join(RUN_FILES)} "
                          "there, and --overwrite and --resume take what carries those names for its own)") from None
    replaced = numbered_checkpoints(out) if overwrite else []  # --overwrite deletes them
    check_not_inputs(given | {k: Path(v) for k, v in (own or {}).items() if v}, [out / name for name in RUN_FILES],
                     [out / name for name in RUN_DIRS] + replaced)


def checkpoint_incomplete(path: Path) -> str | None:
    """Why a numbered checkpoint cannot be resumed from (None when it can)."""
    try:
        state = read_json(path / "trainer_state.json")
    except FileNotFoundError:
        if not CHECKPOINT.match(path.name) and not _optimizer_state(path):
            return ("no trainer_state.json nor optimizer state: a finished model (final/, an export), not a checkpoint-N "
                    "saved mid-run; resume from a checkpoint-N, or start a new run with model.path set to it")
        return "no trainer_state.json (the save did not finish)"
    except (ValueError, OSError):
        return "trainer_state.json is cut short or damaged"
    step = state.get("global_step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return "trainer_state.json is damaged: it holds no global_step (the step the checkpoint was saved at)"
    if not (path / "config.json").is_file() and not (path / "adapter_model.safetensors").is_file():
        # Resuming full weights reads the architecture from it: without it transformers built its default model, a
        # full-size one (23 GB of memory for the tiny test model's checkpoint, until the kernel killed it).
        return "config.json missing (the model's architecture)"
    return checkpoint_problem(path) or module_problem(path) or _training_state_problem(path)


def module_problem(path: Path) -> str | None:
    """Which module file the checkpoint's config builds and the checkpoint lacks (None when none is missing).

    Without this a checkpoint missing its detection head passed for complete: `--resume` took it over the whole one
    before it, cut the run's records back to it, and failed once the model had loaded, again at every `--resume`.
    A key its bbuvl.yaml does not hold is one the bbu-vl that saved it did not have, which built no such module: a
    whole checkpoint of before vision positions was called a save killed half-way, and the run's removal advised.
    """
    try:
        cfg = load_config(path / "bbuvl.yaml")
    except (ValueError, OSError):
        return None  # read (and named) by whatever needs it; the weights decide here
    wanted = ((HEAD_FILE, cfg.detection.enabled, "detection.enabled"),
              (POSITIONS_FILE, cfg.model.vision_positions, "model.vision_positions"),
              (READOUT_FILE, cfg.loss.coordinate_regression > 0, "loss.coordinate_regression"))
    for name, built, key in wanted:
        if built and holds_key(cfg, key) and not (path / name).is_file():
            return f"{name} missing (the checkpoint's config sets {key})"
    return None


def _optimizer_state(path: Path) -> bool:
    """Whether `path` holds an optimizer's state: HF's optimizer.pt (.bin), or DeepSpeed's global_step* folder."""
    return (any((path / name).is_file() for name in ("optimizer.pt", "optimizer.bin"))
            or any(p.is_dir() for p in path.glob("global_step*")))


def _training_state_problem(path: Path) -> str | None:
    """Why a file HF resumes the optimizer, the schedule or the random state from is damaged (None when none is)."""
    for file in sorted([*path.glob("*.pt"), *path.glob("*.pth")]):
        if (why := _torch_archive_problem(file)) is not None:
            return why
    return None


def training_state_missing(path: Path) -> str | None:
    """Which file of the optimizer's, the schedule's or the random state `path` lacks (None when HF can resume them).

    HF resumes the two only when both files are there, and says nothing otherwise: a checkpoint pruned of
    optimizer.pt went on with Adam's moments at zero and the warm-up started over. Not a reason to skip the
    checkpoint (train/resume_records.py would remove it, and its weights are whole), but to refuse resuming it.
    """
    if not _optimizer_state(path):
        return "optimizer.pt missing (the optimizer's state): resuming would start the optimizer and the schedule over"
    deepspeed = any(p.is_dir() for p in path.glob("global_step*"))  # it keeps the schedule with its own state
    if not deepspeed and not (path / "scheduler.pt").is_file():
        return "scheduler.pt missing (the learning-rate schedule's state): HF would resume neither it nor the optimizer"
    # HF saves it with every checkpoint (rng_state_N.pth, one a process, under torchrun) and resumes without it in
    # silence: the crops, mirrors and dropout drawn after it would be another run's.
    if not any(path.glob("rng_state*.pth")):
        return ("rng_state.pth missing (the random state): resuming would draw other crops, mirrors and dropout than "
                "the run it continues")
    return _rank_state_missing(path)


def _recorded_processes(path: Path) -> int | None:
    """How many processes saved checkpoint `path`: its carried run record's, else its folder's run.json (None: neither
    is there or names a count)."""
    for record in (path / CHECKPOINT_RECORD, path.parent / RUN_RECORD):
        if record.is_file():
            try:
                ran_on = read_json(record, "run record").get("processes")
            except (ValueError, OSError, AttributeError):
                continue  # named by the resume's own record check
            if isinstance(ran_on, int) and not isinstance(ran_on, bool) and ran_on >= 1:
                return ran_on
    return None


def _rank_state_missing(path: Path) -> str | None:
    """Which process's rng_state_N.pth checkpoint `path` lacks, of every process its run had (None when none is).

    Each process saves its own under torchrun: a save whose rank 1 was killed kept rank 0's, and any one file was
    taken for the whole random state, so the resume drew that rank's crops and dropout anew in silence.
    """
    ranks = {int(m.group(1)) for p in path.glob("rng_state_*.pth")
             if (m := re.fullmatch(r"rng_state_(\d+)\.pth", p.name))}
    processes = _recorded_processes(path)
    if processes is None or processes == 1:
        if not ranks:  # one process saves rng_state.pth alone
            return None
        processes = max(ranks) + 1  # unrecorded: at least every rank below the highest saved
    missing = sorted(set(range(processes)) - ranks)
    if missing:
        return (f"rng_state_{missing[0]}.pth missing (process {missing[0]}'s random state, of the run's {processes} "
                "processes): resuming would draw other crops, mirrors and dropout on it than the run it continues")
    return None


def _torch_archive_problem(path: Path) -> str | None:
    """Why `path` is no whole file of torch.save (a zip archive, whose index is written last), None when it is one.

    A copy or a save cut short lacks the index: torch.load then failed with a traceback about a "central directory",
    or (rng_state.pth) with "[Errno 22] Invalid argument", naming no file, once the model had loaded.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"{path.name} is cut short or damaged (not a whole PyTorch file: {e})"
    return None


def nothing_to_resume(output_dir: str | Path, skipped: list[tuple[Path, str]]) -> str:
    """Why `--resume` finds no checkpoint in `output_dir` to continue from (`skipped`: each checkpoint-N and why it
    cannot be resumed), and what to do: the run saved nothing whole, so it can only start over."""
    out = Path(output_dir)
    why = "".join(f"; {p.name}: {reason}" for p, reason in skipped)
    names = [p.name for p in numbered_checkpoints(out)]
    # Deleting the cut saves would leave a folder still holding the run's records, refused as another run's.
    kept = (f" (it removes {', '.join(names[:4])}{' ...' if len(names) > 4 else ''} and the run's other files there)"
            if names else "")
    return (f"--resume: no complete checkpoint-N folder in {out}{why}. The run saved no step whole (a save killed "
            f"half-way leaves such a folder), so it cannot be continued: start it over by running the same command "
            f"without --resume and with --overwrite{kept}, or train into another training.output_dir to keep them")


def check_resumable(output_dir: str | Path) -> None:
    """Refuse `--resume` of a folder that holds no checkpoint-N it can continue from: RunDirError naming each one and
    why, and what to do (`nothing_to_resume`). A folder that is not there is `fit`'s to name."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    skipped = []
    for path in reversed(numbered_checkpoints(out)):
        if (why := checkpoint_incomplete(path)) is None:
            return
        skipped.append((path, why))
    raise RunDirError(nothing_to_resume(out, skipped))


def looked_from(path: str | Path) -> str:
    """Where a relative path was looked for (the folder the command runs in), in words; '' for an absolute one. The
    same relative config run from another folder (a --resume there) named the file alone, as if it were gone."""
    return "" if Path(path).is_absolute() else f" (looked for from {Path.cwd()})"


def check_resumable_from(checkpoint: str | Path) -> None:
    """Refuse `--resume-from` a checkpoint that cannot be resumed (a save killed half-way, a file, no such folder):
    RunDirError saying why, and the newest checkpoint beside it that can be, to resume from instead."""
    path = Path(checkpoint)
    why = (checkpoint_incomplete(path) if path.is_dir()
           else "a file, not a checkpoint folder" if os.path.lexists(path) else f"no such folder{looked_from(path)}")
    if why is None:
        return
    found = next((p for p in reversed(numbered_checkpoints(path.parent)) if p != path and checkpoint_incomplete(p) is None),
                 None) if path.parent.is_dir() else None
    then = (f"; the newest checkpoint beside it that can be resumed is {found}: pass --resume-from {found}" if found else
            f"; no checkpoint-N beside it in {path.parent} can be resumed either")
    raise RunDirError(f"--resume-from {checkpoint}: cannot resume from it ({why}){then}")


def latest_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that can be resumed, and the newer ones skipped with the reason for each."""
    skipped = []
    for path in reversed(numbered_checkpoints(output_dir)):
        why = checkpoint_incomplete(path)
        if why is None:
            return path, skipped
        skipped.append((path, why))
        if first_process():  # every process looks at the same folder
            log.warning("--resume: skipping %s: %s", path, why)
    return None, skipped
