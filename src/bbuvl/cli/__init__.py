"""The `bbuvl` command: one verb per job (config, data, model, train, predict, eval, viz, choose-tiles, fewshot, doctor,
serve)."""

from __future__ import annotations

import atexit
import gc
import os
import sys

import typer

from bbuvl.cli.common import CommandGroup, record_claimed_outputs, start_command
from bbuvl.cli.choose_tiles import choose_tiles
from bbuvl.cli.config import app as config_app
from bbuvl.cli.data import app as data_app
from bbuvl.cli.doctor import app as doctor_app
from bbuvl.cli.evaluate import evaluate, viz
from bbuvl.cli.fewshot import app as fewshot_app
from bbuvl.cli.model import app as model_app
from bbuvl.cli.predict import predict
from bbuvl.cli.serve import serve
from bbuvl.cli.train import train
from bbuvl.versions import software


def bars_off_in_logs() -> None:
    """Hugging Face's progress bars off when stderr is no terminal, unless the caller set them either way."""
    if not sys.stderr.isatty():
        # Its bars (loading weights, writing shards) redraw with carriage returns that a log, a CI page, a cron mail or
        # a torchrun rank's log keeps as one long line per bar; read when huggingface_hub is first imported, which
        # importing this package does not do.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def collect_once_at_exit() -> None:
    """At the process's exit, collect its garbage once, then spare what survives from the interpreter's teardown."""
    atexit.unregister(_freeze_survivors)  # once, however often a process runs the CLI
    atexit.register(_freeze_survivors)


def _freeze_survivors() -> None:
    # The teardown collects again and again while it empties the modules, each pass walking every object still alive
    # (torch, transformers, a model: hundreds of thousands): 0.7 s of CPU of a 4 s `python -m bbuvl.cli` that only
    # imports them, seconds of a server's stop on a loaded machine. Garbage is collected here first, its finalizers run
    # (a file's buffer written out) as at any exit; what is frozen still goes when its module is emptied.
    gc.collect()
    gc.freeze()


def show_version(value: bool) -> None:
    """`bbuvl --version`: the program as every output records it (bbuvl/versions.py), one `name version` a line."""
    if value:
        for name, version in software().items():
            typer.echo(f"{name} {version}")
        raise typer.Exit()


def main(ctx: typer.Context, version: bool = typer.Option(
        False, "--version", is_eager=True, callback=show_version,
        help="Print bbu-vl's version, the digest of its files and the libraries' versions, as outputs record them.")) -> None:
    """Fine-tune Qwen VL models (Qwen2.5-VL, Qwen3-VL, Qwen3.5) to find and judge BBU-room equipment in inspection photos."""
    start_command(ctx)


app = typer.Typer(
    name="bbuvl",
    help="Fine-tune Qwen VL models (Qwen2.5-VL, Qwen3-VL, Qwen3.5) to find and judge BBU-room equipment in inspection photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Outputs a command claimed are held until it ends, then recorded by what it wrote (bbuvl/outputs.py);
    # path options are expanded for every command in one place (cli/common.py).
    callback=main,
    result_callback=record_claimed_outputs,
    cls=CommandGroup,  # a failed write no command caught is one error line
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(fewshot_app, name="fewshot")
app.add_typer(doctor_app, name="doctor")
app.command("train")(train)
app.command("predict")(predict)
app.command("eval")(evaluate)
app.command("viz")(viz)
app.command("choose-tiles")(choose_tiles)
app.command("serve")(serve)
