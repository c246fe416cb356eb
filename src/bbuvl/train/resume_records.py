"""Cut a run's records back to the checkpoint it resumes from, so that no record holds two runs' steps.

A run killed at step 5 after saving checkpoint-3 has logged steps 4 and 5 to TensorBoard (and maybe dumped a
non-finite batch at step 5); the resumed run logs steps 4 and 5 again. A run resumed from a checkpoint older than
its newest (that newest cut short, or `--resume-from`) has written even more past it: history.json, health.json,
newer checkpoints. Before the resumed run takes its first step, everything past the checkpoint's step goes, so each
step has one value, the resumed run's (docs/resume.md, "The records around the weights").

TensorBoard's own remedy, a SummaryWriter `purge_step`, does not work here: two writers share `tb/` (the trainer's
and the health monitors'), and TensorBoard applies a purge marker to every event it has read before it in that
folder, so the second resumed writer's marker would hide the first one's new steps; and it only hides the old steps
from readers that honour it. The event files are cut instead, each rewritten atomically.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from bbuvl.atomic import (atomic_path, remove_dead_removals, remove_dead_writers_temporaries, remove_whole,
                          write_text_atomic)
from bbuvl.data.jsonfile import read_json
from bbuvl.outputs import Reader, reader_around
from bbuvl.paths import real_path
from bbuvl.train.monitors import HEALTH_FILE, HealthLog
from bbuvl.train.run_dir import (CHECKPOINT, RunDirError, checkpoint_incomplete, numbered_checkpoints,
                                 training_state_missing)

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
NAN_BATCH = re.compile(r"^step(\d+)_\d+\.json$")  # the non-finite guard's dumps (train/trainer.py)


def checkpoints_past(output_dir: str | Path, checkpoint: str | Path, step: int) -> list[Path]:
    """The numbered checkpoints in `output_dir` past `step` (`checkpoint`'s), other than `checkpoint` itself."""
    return [p for p in numbered_checkpoints(output_dir)
            if int(CHECKPOINT.match(p.name).group(1)) > step and real_path(p) != real_path(checkpoint)]


def global_step(checkpoint: str | Path) -> int:
    """The step a checkpoint was saved at (its trainer_state.json)."""
    return int(read_json(Path(checkpoint) / "trainer_state.json", "trainer state")["global_step"])


def abandoned_checkpoints(output_dir: str | Path, checkpoint: str | Path) -> list[Path]:
    """The complete numbered checkpoints in `output_dir` past `checkpoint`'s step: what resuming from it would drop."""
    return [p for p in checkpoints_past(output_dir, checkpoint, global_step(checkpoint))
            if checkpoint_incomplete(p) is None]


def check_training_state(checkpoint: str | Path) -> None:
    """RunDirError when `checkpoint` lacks the optimizer's or the schedule's state (`training_state_missing`): checked
    before the model loads and before anything is cut, since the run must not start."""
    if why := training_state_missing(Path(checkpoint)):
        raise RunDirError(f"resuming from {checkpoint}: {why}; put the file back, or start a new run with model.path "
                          "set to the checkpoint to train on from its weights")


# What a save writes first into checkpoint-N/ (transformers' weights and config, HF's state, ours): a folder past the
# resumed step holding files and none of these is no save cut short, but someone's folder under that name.
SAVE_SIGNS = ("config.json", "adapter_config.json", "generation_config.json", "trainer_state.json", "bbuvl.yaml",
              "optimizer.pt", "optimizer.bin", "scheduler.pt", "*.safetensors", "rng_state*.pth", "global_step*", ".*.tmp*")


def check_cut_back(output_dir: str | Path, checkpoint: str | Path) -> None:
    """RunDirError naming a checkpoint-N folder past `checkpoint`'s step that `cut_back` would remove and that no save
    wrote (it holds files, none of which a save writes), or anything it would remove that a live reader holds (`held`):
    checked before the model loads; removing it lost them."""
    _refuse_held(output_dir, checkpoint, global_step(checkpoint))
    for path in checkpoints_past(output_dir, checkpoint, global_step(checkpoint)):
        if path.is_symlink() or not any(path.iterdir()):
            continue  # a link goes as a link; an empty folder is a save killed as it began
        if not any(any(path.glob(sign)) for sign in SAVE_SIGNS):
            shown = ", ".join(sorted(p.name for p in path.iterdir())[:3])
            raise RunDirError(f"resuming from {checkpoint}: {path} holds {shown}, none of it a checkpoint's, and lies "
                              "past the step resumed, where the run removes what a killed save left: move it out of "
                              "training.output_dir (or rename it so that its name does not start with checkpoint-)")


def held(output_dir: str | Path, checkpoint: str | Path, step: int) -> list[tuple[Path, Reader]]:
    """What `cut_back` would remove from `output_dir` (the checkpoints and non-finite batch dumps past `step`) that a
    live reader of another process holds (docs/outputs.md, "Readers"), with its reader."""
    out = Path(output_dir)
    dumps = [p for p in sorted((out / "nan_batches").glob("step*.json")) if (m := NAN_BATCH.match(p.name))
             and int(m.group(1)) > step] if (out / "nan_batches").is_dir() else []
    # A link goes as a link (`remove_whole`): what it points to, however read, stays
    return [(path, reader) for path in (*checkpoints_past(out, checkpoint, step), *dumps)
            if not path.is_symlink() and (reader := reader_around(path)) is not None]


def _refuse_held(output_dir: str | Path, checkpoint: str | Path, step: int) -> None:
    """RunDirError naming what `cut_back` would remove that a live reader holds, and the reader: a `bbuvl serve` of a
    checkpoint whose save was cut short after its weights (they load; its optimizer's state does not) lost it under it.
    Not kept and gone on, as the rotation does (train/callbacks.py): the resumed run saves that step anew under its
    name, and a later --resume would take it meanwhile for this run's newest."""
    if found := held(output_dir, checkpoint, step):
        path, reader = found[0]
        raise RunDirError(f"resuming from {checkpoint}: {path} lies past the step resumed ({step}), where the run "
                          f"removes what the stopped run left, and `{reader.command}` ({reader.who}, since "
                          f"{reader.started}) is reading {'it' if reader.path == real_path(path) else reader.path}; "
                          "stop that command first, or move it out of training.output_dir (a reader goes on reading "
                          "a folder moved)" + (f" ({len(found) - 1} more held likewise)" if len(found) > 1 else ""))


def cut_back(output_dir: str | Path, checkpoint: str | Path) -> None:
    """Cut the records in `output_dir` back to `checkpoint`'s step: history.json and health.json become the
    checkpoint's, TensorBoard events, non-finite batch dumps and numbered checkpoints past its step go. The run checks
    the checkpoint's training state first (`check_training_state`), and calls this only once its weights, optimizer
    and schedule are loaded (train/trainer.py `fit`): a checkpoint it refuses gets nothing cut, nor does a folder where
    a live reader holds what would be removed (`held`)."""
    out, checkpoint = Path(output_dir), Path(checkpoint)
    state = read_json(checkpoint / "trainer_state.json", "trainer state")
    step = int(state["global_step"])
    _refuse_held(out, checkpoint, step)  # again: a reader may have started while the model loaded; nothing is cut yet
    write_text_atomic(out / HISTORY_FILE, json.dumps(state.get("log_history", []), indent=1))
    _cut_health(out, state, step)
    for path in sorted((out / "tb").glob("*tfevents*")) if (out / "tb").is_dir() else []:
        if path.is_file() and not path.name.startswith("."):
            cut_events(path, step)
    for path in sorted((out / "nan_batches").glob("step*.json")) if (out / "nan_batches").is_dir() else []:
        if (m := NAN_BATCH.match(path.name)) and int(m.group(1)) > step:
            path.unlink()
    remove_dead_removals(out)  # what a cut killed part-way left aside: nothing of it is read
    newer = checkpoints_past(out, checkpoint, step)
    for path in newer:  # a later --resume would take one of them, a step of the abandoned run, for this run's newest
        remove_whole(path)  # a stop part-way leaves it whole or gone: half of one could pass for this run's newest
    if newer:
        log.warning("resuming from step %d: removed the checkpoints past it (%s) from %s", step,
                    ", ".join(p.name for p in newer), out)


def _cut_health(out: Path, state: dict[str, Any], step: int) -> None:
    """health.json with the alarms up to `step`: the checkpoint's own (train/monitors.py `HealthLog` saves them),
    else those of the file already there (a checkpoint saved before alarms were kept in it)."""
    saved = (state.get("stateful_callbacks") or {}).get(HealthLog.__name__)
    if isinstance(saved, dict):
        alarms = saved.get("attributes", {}).get("alarms", [])
    elif (out / HEALTH_FILE).is_file():
        alarms = [a for a in read_json(out / HEALTH_FILE).get("alarms", []) if a.get("step", 0) <= step]
    else:
        return
    health = HealthLog()
    health.load_state({"alarms": alarms})
    health.write(out)


def cut_events(path: Path, step: int) -> bool:
    """Rewrite the TensorBoard event file `path` without its events past `step`; whether anything was cut."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    remove_dead_writers_temporaries(path)  # a cut killed half-way: its copy would be read as one more event file
    records = list(RawEventFileLoader(str(path)).Load())  # a record a kill cut short ends the list
    kept = [r for r in records if Event.FromString(r).step <= step]
    if len(kept) == len(records):
        return False
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        writer = RecordWriter(fh)
        for record in kept:
            writer.write(record)
    return True
