"""`bbuvl train CONFIG [key=value ...]`."""

from __future__ import annotations

import errno
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import typer
from rich.markup import escape
from rich.table import Table

from bbuvl.atomic import NO_ROOM, WriteFailed, failed_write_errno
from bbuvl.cli.common import console, error_text, fail, user_errors
from bbuvl.cli.config import OVERRIDES_HELP, report_valid
from bbuvl.cli.stops import keeps_now
from bbuvl.config import BudgetError, ConfigError, ConfigOrigin, dump_config, load_located_config

if TYPE_CHECKING:
    from bbuvl.train.callbacks import AfterSave


def train(
    config: Path = typer.Argument(..., help="Run config (YAML); see configs/base.yaml for every key."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint-* in training.output_dir."),
    resume_from: Path = typer.Option(None, help="Continue from this checkpoint folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in training.output_dir "
                                   "(its checkpoints, final/, logs); without it a used folder is refused."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check config, load the model, run one batch; print memory "
                                 "and tokens. SFT only (training.method sft): refused for a GRPO config, whose run "
                                 "shows its first step's rewards in its log."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    validate_only: bool = typer.Option(False, "--validate-only", help="Validate the config and exit."),
    accept_reward_code: bool = typer.Option(False, "--accept-reward-code", help="With --resume or --resume-from of a "
                                            "GRPO run: go on with grpo.rewards.user_function's code (or a module of "
                                            "yours it imports) edited since, on purpose; the changed files are named "
                                            "and run.json records the new code for the next resume."),
) -> None:
    """Fine-tune a Qwen VL model (and the detection head) on a bbuvl dataset.

    Several GPUs: `accelerate launch -m bbuvl.cli train CONFIG` or `torchrun --nproc-per-node N -m bbuvl.cli train CONFIG`
    (add training.deepspeed=configs/deepspeed/zero2.json for DeepSpeed).
    """
    refuse_flags_that_do_nothing(dry_run, print_config, validate_only, resume, resume_from, overwrite)
    if accept_reward_code and not (resume or resume_from):
        fail("--accept-reward-code lets a resume go on with edited reward code; a new run records its code as it is: "
             "pass --resume or --resume-from, or leave it out")
    try:
        cfg, origin = load_located_config(config, overrides or [])
    except ConfigError as e:
        fail(str(e))
    if print_config:
        console.print(dump_config(cfg), end="", markup=False)
        return
    if validate_only:
        report_valid(config, cfg, origin)  # what `bbuvl config check` says: a start refuses a batch over its budget too
        return
    if accept_reward_code and cfg.training.method != "grpo":
        fail(f"--accept-reward-code: training.method {cfg.training.method} has no reward code (GRPO's "
             "grpo.rewards.user_function): leave it out")
    if resume and resume_from:  # the newest checkpoint and a named one may differ: which one was meant?
        fail(f"--resume continues from the newest checkpoint in training.output_dir, --resume-from from "
             f"{resume_from}: pass one of them")
    # What a stop keeps depends on how far the run got: said from here, and again at its first whole checkpoint
    saves = [] if dry_run else [say_what_a_stop_keeps(Path(cfg.training.output_dir), resume, resume_from, overwrite)]
    # The run holds its folder and registers what it reads itself (train/run_dir.py `holding_run`), as from Python
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from bbuvl.encode.loss_terms import LossTerms
    from bbuvl.train.all_ranks import first_process
    from bbuvl.train.callbacks import TrainingDiverged  # a run the non-finite guard stopped: one line, not a traceback
    from bbuvl.train.trainer import dry_run as run_dry
    from bbuvl.train.trainer import train as run_train

    if cfg.training.method == "grpo":
        if dry_run:
            fail("--dry-run checks an sft run; a grpo run shows its first step's rewards in its log (docs/grpo.md)")
        if overwrite and (resume or resume_from):
            fail("--overwrite replaces the run that --resume would continue: pass one of them")
        from bbuvl.rl.trainer import train_grpo

        # a start refused for its starting checkpoint names the key's file:line, as `config check` does
        with user_errors(ValueError, OSError, TrainingDiverged), budgets_located(origin), \
                no_room_is_resumable(Path(cfg.training.output_dir), resume_from), another_rank_ended():
            result = train_grpo(cfg, resume=str(resume_from) if resume_from else resume, overwrite=overwrite,
                                accept_code=accept_reward_code, callbacks=saves)
        if not first_process():
            return
        print_grpo_summary(result["history"])
        console.print(f"non-finite steps skipped: {result['nan_skipped']}")
        print_unreadable(result["unreadable"], "photos that could not be read when drawn, the next photo answered in "
                         "each one's place")
        print_unreadable(result["unreadable_val"], "validation photos that could not be read when evaluated, left out "
                         "of eval_reward")
        console.print(f"[green]checkpoint[/]: {escape(result['final'])}  (TensorBoard: "
                      f"{escape(str(Path(cfg.training.output_dir) / 'tb'))})")
        return
    if dry_run:
        with user_errors(ValueError, OSError, KeyError), budgets_located(origin):
            report = run_dry(cfg)
        table = Table(title="dry run: one batch", show_header=False)
        for k, v in report.items():
            table.add_row(k, escape(json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)))
        console.print(table)
        if not report["finite"]:
            fail("the loss of the first batch is not finite")
        return
    if overwrite and (resume or resume_from):
        fail("--overwrite replaces the run that --resume would continue: pass one of them")
    with user_errors(ValueError, OSError, TrainingDiverged), \
            no_room_is_resumable(Path(cfg.training.output_dir), resume_from), budgets_located(origin), \
            another_rank_ended():
        result = run_train(cfg, resume=str(resume_from) if resume_from else resume, overwrite=overwrite,
                           announce=print_fault_counts, callbacks=saves)
    if not first_process():
        return
    logs = [h for h in result["history"] if "loss" in h]
    if logs:
        table = Table(title="training loss (first, last)")
        # a term of either row: the head's, frozen at first (training.detection_freeze_epochs), were left out
        keys = [k for k in LossTerms.names() if k in logs[0] or k in logs[-1]]
        for k in ["step", *keys]:
            table.add_column(k)
        for h in (logs[0], logs[-1]):
            table.add_row(str(h["step"]), *[f"{h[k]:.4g}" if k in h else "-" for k in keys])
        console.print(table)
    alarms = result.get("alarms") or {}
    for kind, a in alarms.items():
        console.print(f"[yellow]alarm[/] {kind}: {a['count']}x, first at step {a['first_step']}: {escape(str(a['first']))}", markup=True)
    if not alarms:
        console.print("training health: no alarms")
    drawn = result.get("answers_cut_in_draws", 0)  # photos whose crop or mirror alone made the answer too long
    console.print(f"non-finite steps skipped: {result['nan_skipped']}; samples dropped for budget: "
                  f"{result['budget_dropped']}; over-budget photos skipped: {oversize_text(result['oversize_skipped'])}; answers cut at "
                  f"data.max_length: {result['answers_truncated']}"
                  + (f" (and {drawn} more photo(s) through a crop or mirror)" if drawn else ""))
    print_unreadable(result.get("unreadable") or [], "photos that could not be read when drawn, another sample trained "
                     "in each one's place")
    print_unreadable(result.get("unreadable_val") or [], "validation photos that could not be read when evaluated, the "
                     "next sample evaluated in each one's place (eval_loss counts it twice)")
    if cache := result.get("sample_cache"):
        draws = cache["hits"] + cache["misses"]
        console.print(f"samples kept between epochs (data.sample_cache_mb={cfg.data.sample_cache_mb:g}, this process): "
                      f"{cache['hits']} of {draws} draws read from memory, {cache['samples']} samples in "
                      f"{cache['held_mb']:.0f} MiB")
    if result.get("longest_answer"):
        longer = result["answers_over_budget"]
        console.print(f"training answers: up to {result['longest_answer']} tokens; generate mode's budget "
                      f"(inference.max_new_tokens) {cfg.inference.max_new_tokens}"
                      + (f": [yellow]{longer} of {result['answers_measured']} answers are longer, and answers like them will "
                         "be cut[/]" if longer else ""))
    console.print(f"[green]checkpoint[/]: {escape(result['final'])}  (TensorBoard: {escape(str(Path(cfg.training.output_dir) / 'tb'))})")


def print_unreadable(unreadable: list[str], what: str) -> None:
    """The end of a run's list of the photos that could not be read (`file:line: why` each), under `what` they are
    and what took each one's place; nothing when there are none."""
    if not unreadable:
        return
    console.print(f"[yellow]{what}: {len(unreadable)}[/]; fix or remove them:", markup=True)
    for line in unreadable[:5]:
        console.print(f"  {escape(line)}", highlight=False)
    if len(unreadable) > 5:
        console.print(f"  ... {len(unreadable) - 5} more")


@contextmanager
def another_rank_ended() -> Iterator[None]:
    """A rank whose collective failed because another rank of the run ended says so in one line, and ends with status
    1 (train/all_ranks.py `peer_lost`); any other error goes on up."""
    try:
        yield
    except RuntimeError as e:
        from bbuvl.train.all_ranks import peer_lost

        if (said := peer_lost(e)) is None:
            raise
        fail(said, code=1)


# What a stopped run keeps once a numbered checkpoint of its own is whole (cli/stops.py); a run resumed from a checkpoint
# of its own folder has one from its start. Said before that, `--resume` found nothing to continue and was refused.
RESUMES = "its whole checkpoints are kept, a half-saved one removed; run it again with --resume to go on from the newest"


def say_what_a_stop_keeps(output_dir: Path, resume: bool, resume_from: Path | None, overwrite: bool) -> AfterSave:
    """Say what a stop of this run keeps (cli/stops.py) from now on; returns the trainer callback that says `RESUMES`
    once the run has saved a numbered checkpoint whole."""
    from bbuvl.outputs import same_path
    from bbuvl.train.callbacks import AfterSave
    from bbuvl.train.run_dir import previous_run

    if resume or (resume_from is not None and same_path(resume_from.parent, output_dir)):
        keeps_now(RESUMES)
    elif not previous_run(output_dir) or overwrite:
        keeps_now(lambda: before_a_checkpoint(output_dir, resume_from))
    # else the folder holds another run, which the run refuses before it writes anything: it keeps nothing
    return AfterSave(lambda: keeps_now(RESUMES))


def before_a_checkpoint(output_dir: Path, resume_from: Path | None) -> str:
    """What a run stopped before its first whole checkpoint keeps, and how to go on, from what it left in `output_dir`:
    nothing `--resume` continues, so the run starts over (one of `--resume-from` goes on from that checkpoint again);
    the run's files left there are refused as another run's, so a re-run needs `--overwrite`, which removes them, or
    for `--resume-from` (which `--overwrite` does not go with) their removal."""
    from bbuvl.train.run_dir import previous_run

    left = previous_run(output_dir)
    shown = ", ".join(left[:4]) + (" ..." if len(left) > 4 else "")
    if resume_from is not None:
        again = f"run it again to go on from {resume_from}"
        return (f"it saved no checkpoint whole in {output_dir}, where a re-run refuses what it wrote ({shown}) as "
                f"another run's: remove that, then {again}") if left else f"it saved no checkpoint whole; {again}"
    if left:
        return (f"it saved no checkpoint whole, so the run starts over: run it again with --overwrite (it removes {shown} "
                f"from {output_dir})")
    return "it saved no checkpoint whole; run it again to start over"


def refuse_flags_that_do_nothing(dry_run: bool, print_config: bool, validate_only: bool, resume: bool,
                                 resume_from: Path | None, overwrite: bool) -> None:
    """Fail when two checks are asked for, or a run's flag with a check that starts no run: `--resume --dry-run` ran
    the dry run from scratch, and `--print-config --validate-only` printed the config, each without a word about the
    flag left unused."""
    checks = [f for f, on in (("--print-config", print_config), ("--validate-only", validate_only),
                              ("--dry-run", dry_run)) if on]
    runs = [f for f, on in (("--resume", resume), ("--resume-from", resume_from is not None),
                            ("--overwrite", overwrite)) if on]
    if len(checks) > 1:
        fail(f"{' and '.join(checks)}: each does one thing and stops, so only the first would run; pass one")
    if checks and runs:
        fail(f"{' and '.join(runs)} {'applies' if len(runs) == 1 else 'apply'} to a training run, which {checks[0]} does "
             f"not start (it {CHECKS[checks[0]]}); leave {'it' if len(runs) == 1 else 'them'} out, or leave out "
             f"{checks[0]} to train")


CHECKS = {"--print-config": "prints the config", "--validate-only": "validates the config",
          "--dry-run": "runs one batch from the start"}


def print_fault_counts(inputs) -> None:  # noqa: ANN001 - a RunInputs
    """How many faults the training and validation photos hold, as the run's hierarchy marks them: a validation set
    without a faulty photo (or without a clean one) measures no fault recall and no verdict."""
    faults = inputs.faults
    counts = {key: faults.count([o.desc for o in s.student.record.objects] for s in sources)
              for key, sources in (("data.train", inputs.train), ("data.val", inputs.val)) if sources is not None}
    for key, count in counts.items():
        console.print(f"{key}: {escape(count.describe())}")
    val = counts.get("data.val")
    if counts["data.train"].faults and val is not None and val.faulty_photos in (0, val.photos):
        held = ("no faulty photo, so neither fault recall nor the photo verdict can" if not val.faulty_photos
                else "only faulty photos, so the photo verdict cannot")
        console.print(f"[yellow]note[/]: data.val holds {held} be measured on it (the verdict needs faulty and clean "
                      "photos: docs/faults.md)", soft_wrap=True)


def oversize_text(skipped: dict[str, int]) -> str:
    """The photos `data.oversize: skip` left out, in all and by the key of their file: "3 (data.train 1, data.val 2)"."""
    if not skipped:
        return "0"
    return f"{sum(skipped.values())} (" + ", ".join(f"{key} {n}" for key, n in skipped.items()) + ")"


def print_grpo_summary(history: list[dict]) -> None:
    """The first and last logged step of a GRPO run: loss, rewards, answer length, KL, clip fraction."""
    logs = [h for h in history if "loss" in h and "reward" in h]
    if not logs:
        return
    keys = [k for k in logs[-1] if k == "loss" or k.startswith(("reward", "answer_length", "kl", "clip", "zero_spread"))]
    table = Table(title="GRPO (first, last logged step)")
    for k in ["step", *keys]:
        table.add_column(k)
    for h in (logs[0], logs[-1]):
        table.add_row(str(h["step"]), *[f"{h.get(k, float('nan')):.4g}" for k in keys])
    console.print(table)


@contextmanager
def budgets_located(origin: ConfigOrigin) -> Iterator[None]:
    """A start refused for a batch over its budget names the file:line of the key at fault, as `config check` does."""
    try:
        yield
    except BudgetError as e:
        fail(origin.describe(e.problems))


# What makes room for the save, by the errno of the write that found none (bbuvl/atomic.py, NO_ROOM).
MAKE_ROOM = {errno.ENOSPC: "free space on that disk", errno.EDQUOT: "free space within your disk quota (or have it raised)",
             errno.EFBIG: "lift the file-size limit (ulimit -f), or write the run where files may be larger (FAT32 stops "
                          "at 4 GiB)"}


@contextmanager
def no_room_is_resumable(output_dir: Path, resume_from: Path | None) -> Iterator[None]:
    """A save that found no room (a full disk, a used-up quota, a file past the size limit) becomes one line naming the
    file and why, and saying how to go on: make room, then what a stop at that point would say (`how_to_go_on`)."""
    try:
        yield
    except Exception as e:
        code = failed_write_errno(e)
        if code is None or code not in NO_ROOM:
            raise
        if isinstance(e, WriteFailed):  # names its file and why (train/trainer.py, `save_failed`)
            said = str(e.strerror)
        elif isinstance(e, OSError) and e.filename:
            said = error_text(e)
        else:
            said = f"{output_dir}: saving failed ({os.strerror(code)})"
        fail(f"{said}. To go on, first {MAKE_ROOM[code]}; {how_to_go_on(output_dir, resume_from)}")


def how_to_go_on(output_dir: Path, resume_from: Path | None) -> str:
    """What a run that stopped saving keeps and how to go on, in the words a stop says (`say_what_a_stop_keeps`), from
    the whole checkpoints in `output_dir`: a save is reached only once `--overwrite` has cleared the folder, so each
    is this run's. `RESUMES` from the newest; else `before_a_checkpoint`, whose advice for a run of `--resume-from`
    is no `--overwrite` (refused with it)."""
    from bbuvl.train.run_dir import checkpoint_incomplete, numbered_checkpoints

    newest = next((p for p in reversed(numbered_checkpoints(output_dir)) if checkpoint_incomplete(p) is None), None)
    return before_a_checkpoint(output_dir, resume_from) if newest is None else f"{RESUMES}, {newest}"
