"""`bbuvl model ...`: build the tiny offline Qwen VL models used to test every real code path without a download."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bbuvl.cli.common import (OVERWRITE_HELP, check_device, claim_outputs, command_group, console, fail, int_range,
                              refuse_model_folder, refuse_unused, user_errors)
from bbuvl.outputs import check_replaced_whole

ACCEPT_BASE_HELP = ("LoRA: merge into the base model.path holds now although it is not the one the adapters trained "
                    "on (only when it is the same model saved again: re-downloaded, re-copied).")

app = command_group(help="Build and inspect vision-language checkpoints.", no_args_is_help=True)


# A tiny model is for tests and benchmarks; sizes past this were a torch allocation traceback (--hidden 100000
# --layers 100 asked for 40 GB in one tensor), or on a machine that over-commits, a process the kernel kills.
TINY_MAX_PARAMETERS = 1_000_000_000


def _check_tiny_size(hidden: int, layers: int, vision_hidden: int, vision_depth: int) -> None:
    """Refuse sizes whose model would not be tiny, before anything is built: a block holds about 10 x width^2
    weights (attention 4, the MLP at twice the width 6; tiny/configs.py)."""
    about = 10 * (layers * hidden**2 + vision_depth * vision_hidden**2)
    if about > TINY_MAX_PARAMETERS:
        fail(f"--hidden {hidden} --layers {layers} --vision-hidden {vision_hidden} --vision-depth {vision_depth} make "
             f"about {about:,} parameters ({about * 4 / 1e9:,.0f} GB as float32); `model tiny` builds at most "
             f"{TINY_MAX_PARAMETERS:,}: give smaller sizes")


def _check_tiny_shape(family: str, hidden: int, heads: int, kv_heads: int, vision_hidden: int, vision_heads: int,
                      min_pixels: int | None, max_pixels: int | None) -> None:
    """Fail, naming the options typed, on sizes no model can take, before the seconds its tokenizer takes to train."""
    from bbuvl.data.families import get_family

    try:
        get_family(family)
    except ValueError as e:
        fail(f"--family {family}: {e}")
    from bbuvl.tiny.configs import shape_problem

    problem = shape_problem(hidden, heads, kv_heads, vision_hidden, vision_heads, name=lambda a: "--" + a.replace("_", "-"))
    if problem:
        fail(problem)
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        fail(f"--min-pixels {min_pixels} must not exceed --max-pixels {max_pixels}")


@app.command("tiny")
def tiny(
    out: Path = typer.Argument(..., help="Folder to save the checkpoint to (created if missing)."),
    family: str = typer.Option("qwen2_5_vl", help="Model family (config.json model_type): qwen2_5_vl, qwen3_vl or qwen3_5."),
    hidden: int = typer.Option(128, help="Text model hidden size.", callback=int_range(1)),
    layers: int = typer.Option(2, help="Text model layers.", callback=int_range(1)),
    heads: int = typer.Option(4, help="Attention heads (hidden/heads is the head dim).", callback=int_range(1)),
    kv_heads: int = typer.Option(2, help="Key/value heads (grouped-query attention).", callback=int_range(1)),
    vision_depth: int = typer.Option(2, help="Vision tower blocks.", callback=int_range(1)),
    vision_hidden: int = typer.Option(64, help="Vision tower hidden size.", callback=int_range(1)),
    vision_heads: int = typer.Option(4, help="Vision tower attention heads.", callback=int_range(1)),
    min_pixels: Optional[int] = typer.Option(None, help="Smallest image area after smart_resize, in pixels (default: 12544).",
                                             callback=int_range(1)),
    max_pixels: Optional[int] = typer.Option(None, help="Largest image area after smart_resize, in pixels (default: 50176).",
                                             callback=int_range(1)),
    seed: int = typer.Option(0, help="Seed for the tokenizer corpus and the random weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Build a tiny randomly initialised model of a family with a trained offline tokenizer, saved like a real checkpoint."""
    _check_tiny_size(hidden, layers, vision_hidden, vision_depth)
    _check_tiny_shape(family, hidden, heads, kv_heads, vision_hidden, vision_heads, min_pixels, max_pixels)
    refuse_model_folder(out, "OUT")
    # Replaced whole below: --overwrite gives up the files its last run wrote, never one put there since
    claim_outputs("model tiny", {}, folders=[out], overwrite=overwrite, listed=[out])
    if overwrite:
        with user_errors(ValueError):
            check_replaced_whole(out, "model tiny")
    # Imported here so that `bbuvl --help` and other commands do not pay for importing transformers.
    from bbuvl.atomic import atomic_folder
    from bbuvl.data.families import get_family
    from bbuvl.tiny.model import build_tiny_model, count_saved_parameters

    start = time.perf_counter()
    with user_errors(), atomic_folder(out) as tmp:  # whole, or the previous folder kept
        name = get_family(family).name
        build_tiny_model(
            tmp,
            family=family,
            hidden=hidden,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            vision_depth=vision_depth,
            vision_hidden=vision_hidden,
            vision_heads=vision_heads,
            seed=seed,
            **{k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None},
        )
    n_params = count_saved_parameters(out)
    console.print(
        f"[green]saved[/] tiny {name} ({n_params:,} parameters) to {escape(str(out))} in {time.perf_counter() - start:.1f} s"
    )


def warn_of_saved_files(checkpoint: Path) -> None:
    """Say which files of `checkpoint` changed or are gone since training saved it, as `bbuvl predict` does: the merged
    checkpoint records its files anew and an export records none, so a copy's damage was carried on without a word,
    and no record was left to tell it by."""
    from bbuvl.model.identity import saved_files_note

    if checkpoint.is_dir() and (note := saved_files_note(checkpoint)) is not None:
        console.print(f"[yellow]warning[/]: {escape(note)}", soft_wrap=True)


@app.command("merge-lora")
def merge_lora_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder trained with model.lora.enabled=true."),
    out: Path = typer.Argument(..., help="Folder for the merged, adapter-free checkpoint."),
    accept_base: bool = typer.Option(False, "--accept-base", help=ACCEPT_BASE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Merge LoRA adapters into the base model and save a standalone checkpoint (head, prompt and contract kept)."""
    from bbuvl.model.checkpoint import is_plain_model_folder, lora_base, merge_lora, read_model_folder

    refuse_model_folder(out, "OUT")
    # Replaced whole: --overwrite gives up the files its last run wrote, never one put there since
    claim_outputs("model merge-lora", {"CHECKPOINT": checkpoint, "its base model": lora_base(checkpoint)}, folders=[out],
                  overwrite=overwrite, listed=[out])
    if overwrite:
        with user_errors(ValueError):
            check_replaced_whole(out, "model merge-lora")
    # Before any weights load (minutes on a real model): a folder with no adapters has nothing to merge.
    if is_plain_model_folder(checkpoint):
        fail(f"{checkpoint}: a plain model folder (no bbuvl.yaml), not a LoRA checkpoint: nothing to merge")
    with user_errors():
        if not read_model_folder(checkpoint).adapter:
            fail(f"{checkpoint}: not a LoRA checkpoint (no adapter_config.json): its weights are whole already, "
                 "nothing to merge")

    warn_of_saved_files(checkpoint)
    with user_errors():
        merge_lora(checkpoint, out, accept_base=accept_base)
    console.print(f"[green]merged[/] {escape(str(checkpoint))} -> {escape(str(out))}")


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder written by `bbuvl train` (LoRA or full)."),
    out: Path = typer.Argument(..., help="Folder for the stock Hugging Face model (weights, processor, model card)."),
    drop_vision_positions: bool = typer.Option(
        False, "--drop-vision-positions", help="Leave the checkpoint's vision positions out (no stock loader runs them), "
        "with their cost in AP measured on --val and written into the model card."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation JSONL on which --drop-vision-positions measures "
                                       "what leaving them out costs (generate mode, greedy, unconstrained)."),
    batch_size: int = typer.Option(4, help="Photos per forward pass while measuring on --val.", callback=int_range(1)),
    device: Optional[str] = typer.Option(None, help="Where --val is predicted: cpu, cuda ... (default: cuda when available)."),
    accept_base: bool = typer.Option(False, "--accept-base", help=ACCEPT_BASE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Export a checkpoint as a stock Hugging Face folder that transformers and vLLM load alone, with a model card.

    LoRA is merged, the processor is saved under its stock class, and README.md in OUT says which prompt, frame and
    box convention to use. A part no stock loader runs is refused by name (docs/serving.md, "Export").
    """
    if drop_vision_positions and val is None:
        fail("--drop-vision-positions needs --val VAL.jsonl: its cost in AP is measured there and written into the card")
    if val is not None and not drop_vision_positions:
        fail("--val measures what --drop-vision-positions costs; add --drop-vision-positions")
    if val is not None and val.is_dir():
        fail(f"{val}: a folder; --val is a validation JSONL file (a dataset folder's val.jsonl)")
    refuse_unused(ctx, drop_vision_positions, "--drop-vision-positions", "device", "batch_size")
    check_device(device)  # a CUDA device on a machine without one was torch's AssertionError once the weights loaded
    from bbuvl.model.checkpoint import POSITIONS_FILE, CheckpointError, lora_base

    if drop_vision_positions and checkpoint.is_dir() and not (checkpoint / POSITIONS_FILE).is_file():
        # Said before the weights load (minutes on a real model), not after.
        fail(f"{checkpoint}: has no vision positions ({POSITIONS_FILE}); nothing to drop: export it without "
             "--drop-vision-positions and --val")
    refuse_model_folder(out, "OUT")
    # Replaced whole: --overwrite gives up the files its last export wrote (its model card too), never one put there since
    claim_outputs("model export", {"CHECKPOINT": checkpoint, "its base model": lora_base(checkpoint), "--val": val},
                  folders=[out], overwrite=overwrite, listed=[out])
    if overwrite:
        with user_errors(ValueError):
            check_replaced_whole(out, "model export")
    from bbuvl.model.export import export_checkpoint

    warn_of_saved_files(checkpoint)
    costs = []
    if drop_vision_positions:
        from bbuvl.eval.part_cost import vision_positions_cost

        with user_errors(ValueError, OSError, CheckpointError), console.status("measuring the cost on --val"):
            costs.append(vision_positions_cost(checkpoint, val, batch_size=batch_size, device=device))
        c = costs[0]
        console.print(f"vision positions on {c.photos} photos of {escape(str(val))}: AP50 {c.with_part.AP50:.3f} with, "
                      f"{c.without_part.AP50:.3f} without; {c.changed} answers differ without them")
    with user_errors(ValueError, OSError, CheckpointError):
        result = export_checkpoint(checkpoint, out, costs, accept_base=accept_base)
    left = ", ".join(p.part for p in result.left_out) or "nothing"
    console.print(f"[green]exported[/] {escape(str(checkpoint))} -> {escape(str(out))} ({escape(result.family)}"
                  f"{', LoRA merged' if result.merged_lora else ''}; left out: {escape(left)})")
    if result.frame_gap is not None:
        # The card says it too, but a deployer who reads only this output would serve such photos in another frame.
        console.print(f"[yellow]frame:[/] {escape(result.frame_gap)} (the model card's Frame section says so too)")
    console.print(f"model card: {escape(str(result.card))}")
