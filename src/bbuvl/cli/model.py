"""`bbuvl model ...`: build the tiny offline Qwen VL models used to test every real code path without a download."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bbuvl.cli.common import OVERWRITE_HELP, claim_outputs, console, int_range, user_errors

app = typer.Typer(help="Build and inspect vision-language checkpoints.", no_args_is_help=True)


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
    min_pixels: Optional[int] = typer.Option(None, help="Smallest image area after smart_resize (pixels) [the tiny model's].",
                                             callback=int_range(1)),
    max_pixels: Optional[int] = typer.Option(None, help="Largest image area after smart_resize (pixels) [the tiny model's].",
                                             callback=int_range(1)),
    seed: int = typer.Option(0, help="Seed for the tokenizer corpus and the random weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Build a tiny randomly initialised model of a family with a trained offline tokenizer, saved like a real checkpoint."""
    claim_outputs("model tiny", {}, folders=[out], overwrite=overwrite)
    # Imported here so that `bbuvl --help` and other commands do not pay for importing transformers.
    from bbuvl.data.families import get_family
    from bbuvl.tiny.model import build_tiny_model, count_saved_parameters

    start = time.perf_counter()
    with user_errors():
        name = get_family(family).name
        build_tiny_model(
            out,
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


@app.command("merge-lora")
def merge_lora_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder trained with model.lora.enabled=true."),
    out: Path = typer.Argument(..., help="Folder for the merged, adapter-free checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Merge LoRA adapters into the base model and save a standalone checkpoint (head, prompt and contract kept)."""
    claim_outputs("model merge-lora", {"CHECKPOINT": checkpoint}, folders=[out], overwrite=overwrite)
    from bbuvl.model.checkpoint import merge_lora

    with user_errors():
        merge_lora(checkpoint, out)
    console.print(f"[green]merged[/] {escape(str(checkpoint))} -> {escape(str(out))}")
