"""`bbuvl config print|check`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from bbuvl.cli.common import command_group, console, fail
from bbuvl.config import (BudgetError, Config, ConfigError, ConfigOrigin, batch_budget_problems, dump_config,
                          load_config, load_located_config, run_conflicts, run_notes)
from bbuvl.data.input_paths import file_kind
from bbuvl.paths import looks_local

app = command_group(help="Show and validate run configs.", no_args_is_help=True)

# How `key=value` overrides combine, as a Hydra user expects (config.py `load_config`): in order, so that a script's
# defaults can be followed by the user's own (scripts/demo.sh).
OVERRIDES_HELP = ("key.sub=value overrides, each value read as YAML, e.g. training.num_epochs=3. They apply in order, "
                  "as Hydra's do: of two for one key the later wins, and a mapping (training='{max_steps: 3}') merges "
                  "into its section; a section set to null (training=null) and a key in it after returns the section's "
                  "other keys to their defaults, said, and refused where that drops model.path, a data file or "
                  "training.output_dir. Quote a value holding ' #', which YAML reads as a comment.")


@app.command("print")
def print_config(
    config: Path = typer.Argument(..., help="YAML config file."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Print the full config (every key, defaults filled in) after overrides."""
    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as e:
        fail(str(e))
    console.print(dump_config(cfg), end="", markup=False)


@app.command("check")
def check_config(
    config: Path = typer.Argument(..., help="YAML config file."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Validate a config: unknown keys, wrong types and bad values are errors with file:line; batches that would
    overflow a budget too, and what a training start refuses in the files here (validation photos it would train on,
    an output folder holding an input). What this machine lacks (data files, model.path, bf16, FlashAttention,
    DeepSpeed) is noted, not refused."""
    try:
        cfg, origin = load_located_config(config, overrides or [])
    except ConfigError as e:
        fail(str(e))
    report_valid(config, cfg, origin)


# The names people try first (`config show`, `config validate`) ran nothing: "No such command", with no word of the
# command they meant.
app.command("show", hidden=True, help="Another name of `bbuvl config print`.")(print_config)
app.command("validate", hidden=True, help="Another name of `bbuvl config check`.")(check_config)


def report_valid(config: Path, cfg: Config, origin: ConfigOrigin) -> None:
    """Say `config` is valid, or fail naming what a training start would refuse in it (a batch over its budget), each
    problem at the file:line (or override) of the key at fault, as `origin` locates it."""
    from bbuvl.train.run_inputs import early_stopping_problems

    problems = origin.describe(run_conflicts(cfg) + early_stopping_problems(cfg) + batch_budget_problems(cfg))
    if reward := _reward_problem(cfg):
        problems = "\n".join(filter(None, (problems, f"{origin.locate(('grpo.rewards.user_function',))}: {reward}")))
    if packing := _packing_problem(cfg):
        problems = "\n".join(filter(None, (problems, f"{origin.locate(('data.collator',))}: {packing}")))
    problems = "\n".join(filter(None, (problems, *_broken_here(cfg, origin))))
    notes = run_notes(cfg)
    if cfg.training.method == "grpo":  # what its start says too (rl/trainer.py `read_grpo_inputs`)
        from bbuvl.rl.start_notes import start_notes

        try:
            notes += start_notes(cfg)
        except BudgetError as e:  # what the start refuses in its starting checkpoint (another frame, LoRA without LoRA)
            problems = "\n".join(filter(None, (problems, origin.describe(e.problems))))
    if problems:
        fail(problems)
    console.print(f"[green]ok[/]: {escape(str(config))} is valid")
    for note in [*(f"{origin.locate(n.keys)}: {n}" for n in notes), *_not_here(cfg, origin)]:
        console.print(f"note: {escape(note)}", soft_wrap=True)  # a path broken across lines is not one to copy


def _broken_here(cfg: Config, origin: ConfigOrigin) -> list[str]:
    """What training would refuse in the files the config names that are here: a hierarchy it cannot read, a DeepSpeed
    config that is no JSON object, a data.val that is or shares photos with what training shows (train/held_out.py),
    an output folder that is a file. `ok` was said of each, and training refused it."""
    from bbuvl.data.labels import Hierarchy
    from bbuvl.train.held_out import HeldOutError, check_held_out
    from bbuvl.train.run_inputs import deepspeed_problem

    found = []
    if cfg.data.hierarchy is not None and Path(cfg.data.hierarchy).is_file():
        try:
            Hierarchy.load(cfg.data.hierarchy)
        except (OSError, ValueError) as e:
            found.append(f"{origin.locate(('data.hierarchy',))}: data.hierarchy {e}")
    deepspeed = cfg.training.deepspeed
    if deepspeed is not None and Path(deepspeed).is_file() and (why := deepspeed_problem(deepspeed)) is not None:
        found.append(f"{origin.locate(('training.deepspeed',))}: training.deepspeed {why}")
    try:  # data.val that is, or shares photos with, what training shows: the start refuses it whatever the machine
        check_held_out(cfg)
    except HeldOutError as e:
        found.append(f"{origin.locate(e.keys)}: {e}")
    out = Path(cfg.training.output_dir)
    if os.path.lexists(out) and not out.is_dir():
        found.append(f"{origin.locate(('training.output_dir',))}: training.output_dir {out}: "
                     f"{file_kind(out) or 'a file'}, not a folder: a run writes its checkpoints into a folder")
    elif (why := _output_dir_problem(cfg)) is not None:
        found.append(f"{origin.locate(('training.output_dir',))}: {why}")
    return found


def _output_dir_problem(cfg: Config) -> str | None:
    """Why any start of this run refuses training.output_dir, --overwrite or not: it is or lies in another run's
    checkpoint or final/ (run_dir.py check_not_nested), or is, holds or lies in one of the run's inputs
    (check_run_inputs); None when it does not, or when a data file cannot be read (its reader names that)."""
    from bbuvl.outputs import OutputConflict
    from bbuvl.train.run_dir import RunDirError, check_not_nested, check_run_inputs

    refit = cfg.detection.caption_refit.photos if cfg.detection.refits else None
    inputs = {"model.path": cfg.model.path, "data.train": cfg.data.train, "data.val": cfg.data.val,
              "data.teachers": cfg.data.teachers, "data.hierarchy": cfg.data.hierarchy,
              "detection.caption_refit.photos": refit}  # as train/trainer.py fit gives them
    try:
        check_not_nested(cfg.training.output_dir)
        check_run_inputs(cfg.training.output_dir, inputs, overwrite=False)
    except (RunDirError, OutputConflict) as e:
        return str(e)
    except (OSError, ValueError):
        return None
    return None


def _not_here(cfg: Config, origin: ConfigOrigin) -> list[str]:
    """The files the config names that are not on this machine, and the settings this machine cannot run (a CUDA GPU's
    attention or quantisation, DeepSpeed without its package), each at its key's line: a config is valid anywhere (it
    may be written for the machine that trains), but training here would refuse it, so `ok` alone misled."""
    named = {"data.train": cfg.data.train, "data.hierarchy": cfg.data.hierarchy,
             "training.deepspeed": cfg.training.deepspeed}
    if cfg.detection.refits:  # the files a training start reads (train/run_inputs.py check_inputs)
        named["detection.caption_refit.photos"] = cfg.detection.caption_refit.photos
    # val and teachers left at their defaults are optional (training goes on without them); named, they are not
    named |= {f"data.{key}": getattr(cfg.data, key) for key in ("val", "teachers") if key in cfg.data.model_fields_set}
    from bbuvl.train.run_inputs import looked_from, machine_problems, start_problem  # relative: where it runs

    notes = [f"{origin.locate((key,))}: {key} {path}: {kind}{looked_from(path)}; training on this machine would refuse "
             "it"
             for key, path in named.items() if path is not None and (kind := file_kind(Path(path))) is not None]
    notes += [f"{origin.locate(p.keys)}: training on this machine would refuse it: {p}" for p in machine_problems(cfg)]
    start = Path(cfg.model.path)
    # `runs/bbu-3b/final` (configs/grpo.yaml) can be no hub id (`name` or `owner/name`): training here refuses it
    if looks_local(cfg.model.path) or start.exists():
        if not start.is_dir():
            notes.append(f"{origin.locate(('model.path',))}: model.path {start}: no such folder on this machine"
                         f"{looked_from(cfg.model.path)}")
        else:
            try:
                problem = start_problem(cfg)
            except (OSError, ValueError) as e:  # a config.json the family is read from that cannot be read
                problem = f"model.path {start}: {e}"
            if problem is not None:
                notes.append(f"{origin.locate(('model.path',))}: {problem}")
    return notes


def _packing_problem(cfg: Config) -> str | None:
    """Why the run's start would refuse packed rows for this model's family (it passed here, and failed there); None
    when it would not, or when the family cannot be told without the model (`model.family: auto` on a model that is
    not on this machine: the start reads it)."""
    if cfg.data.collator != "packed":
        return None
    from bbuvl.train.run_inputs import packing_problem

    try:
        family = cfg.model.resolve_family(offline=True)
    except (ValueError, OSError):
        return None
    return packing_problem(cfg, family)


def _reward_problem(cfg: Config) -> str | None:
    """Why a GRPO run could not use its reward function (its import path, what it names), as its start would say;
    None when it can, or when the run is no GRPO run (which never calls it)."""
    if cfg.training.method != "grpo" or not cfg.grpo.rewards.called_function:
        return None  # with grpo.rewards.user 0 the start neither imports nor calls it (rl/start_notes.py says so)
    from bbuvl.rl.rewards import load_user_reward  # imports the user's module, as the run's start does

    try:
        load_user_reward(cfg.grpo.rewards.called_function)
    except ValueError as e:
        return str(e)
    return None
