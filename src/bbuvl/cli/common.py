"""Shared CLI plumbing: one console, and turning expected errors into one red line and exit code 2."""

from __future__ import annotations

import codecs
import io
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, get_args

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

from bbuvl.atomic import WriteFailed, remove_left_temporaries
from bbuvl.cli.stops import START_OVER, keeps_now
from bbuvl.data.input_paths import file_kind, model_files_path_problem, unspellable
from bbuvl.data.named_photos import refuse_named_photos
from bbuvl.data.text import spell_controls
from bbuvl.outputs import LOCK_SUFFIX, Claim, OutputConflict
from bbuvl.outputs import claim_outputs as _claim_outputs
from bbuvl.outputs import hold_outputs as _hold_outputs
from bbuvl.outputs import release_readings
from bbuvl.paths import expand_path


class _Console(Console):
    """A rich Console that spells out control characters in the text it prints (table cells included)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """`text` rendered as rich would, with an ESC or a carriage return from a label or a file name shown as
        `\\x1b` or `\\r`: a predictions file or a model's answer may hold them, and the terminal would obey them."""
        return super().render_str(spell_controls(text), **kwargs)


# emoji=False: rich turned `:name:` in a path, label or option ("cuda:abc:", "site:x:1.jpg") into an emoji (🔤, ❌).
console = _Console(highlight=False, emoji=False)
err_console = _Console(stderr=True, highlight=False, emoji=False)


def fail(message: str, code: int = 2) -> None:
    """Print an error the user can act on and exit; `message` is plain text (paths and labels are never markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def require_file(path: Path, what: str, expected: str = "JSONL file") -> None:
    """Fail (one red line) unless `path` is a regular file, saying what it is instead: missing, a folder, a pipe or a
    device (`what`: its option, `expected`: what it should be)."""
    kind = file_kind(path)
    if kind is not None:
        fail(f"{path}: {kind if kind == 'no such file' else f'{kind}, not a {expected}'} ({what})")


def cell(text: str) -> str:
    """`text` from data as one table cell's markup: escaped, its control characters spelled out, and a newline or tab
    as `\\n` / `\\t`, which would otherwise split the row (a label with a newline drew two rows for one)."""
    return escape(spell_controls(text).replace("\n", "\\n").replace("\t", "\\t"))


def print_first(messages: Sequence[str], more: str = "", limit: int = 5, prefix: str = "[yellow]warning[/]: ",
                out: Console | None = None) -> None:
    """The first `limit` of `messages` (plain text) each after `prefix` (markup), then one line saying how many more
    were left out, followed by `more` (plain text): a long list would bury the command's summary."""
    out = out or console
    for message in messages[:limit]:
        # One line each: a newline in a file name printed a line of its own ("done: 0 with errors").
        line = cell(message)
        out.print(f"{prefix}{line}", soft_wrap=True)
    if len(messages) > limit:
        out.print(f"{prefix}... and {len(messages) - limit} more{escape(more)}", soft_wrap=True)


def refuse_unused(ctx: click.Context, applies: bool, needs: str, *names: str) -> None:
    """Fail when an option among `names` (parameter names) was typed but does nothing because `needs` is not given:
    `eval --worst 5` without `--report` used to say nothing and draw nothing."""
    if applies:
        return
    # By name: typer's context may carry its own copy of click's ParameterSource enum, not click.core's.
    # A flag pair's second spelling when that is the one typed: `--tiles-only` was refused as "--tile-whole"
    typed = [p.secondary_opts[0] if getattr(p, "secondary_opts", None) and ctx.params.get(p.name) is False
             else p.opts[0] for p in ctx.command.params
             if p.name in names and getattr(ctx.get_parameter_source(p.name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")]
    if typed:
        fail(f"{', '.join(typed)} {'applies' if len(typed) == 1 else 'apply'} only with {needs}: add {needs} or "
             f"leave {'it' if len(typed) == 1 else 'them'} out")


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Report the listed exception kinds (default ValueError, OSError) as clean errors, not tracebacks."""
    try:
        yield
    except (kinds or (ValueError, OSError)) as e:  # type: ignore[misc]
        fail(error_text(e))


def error_text(e: BaseException) -> str:
    """What an expected error says, for the user: an OSError as its file and reason, without Python's "[Errno 36]"
    prefix, which tells the user nothing (a write's own sentence, atomic.py's, is its reason)."""
    if isinstance(e, OSError) and e.strerror:
        names = [str(n) for n in (e.filename, e.filename2) if n is not None]
        return f"{' -> '.join(names)}: {e.strerror}" if names else e.strerror
    if isinstance(e, UnicodeEncodeError) and isinstance(e.object, str) and _file_name_codec(e.encoding):
        # A file name turned into bytes in a locale that cannot spell it (`红.jpg` in LC_ALL=C with PYTHONUTF8=0, in
        # en_US.ISO-8859-1): "'ascii' codec can't encode character '\u7ea2' in position 35" named no file.
        return f"{e.object}: {unspellable(e.object)}"
    return str(e)


def _file_name_codec(encoding: str) -> bool:
    """Whether `encoding` is this system's file-name encoding, and that is not UTF-8."""
    try:
        return codecs.lookup(encoding).name == codecs.lookup(sys.getfilesystemencoding()).name != "utf-8"
    except LookupError:
        return False


def refuse_model_folder(path: Path, what: str) -> None:
    """Fail, before any work, when the libraries that write a model folder's files (tokenizers, safetensors) could not
    write them under `path` (`what`: its option or argument): `model export` into a folder named in GBK measured --val
    for minutes, then failed with a codec error naming no file (data/input_paths.py, `model_files_path_problem`)."""
    if (problem := model_files_path_problem(path)) is not None:
        fail(f"{path}: cannot hold a model ({what}): {problem}")


# The metavar of an option that takes a folder or a hub id as text: expanded like any path (`expand_path_options`).
PATH_OR_ID = "FOLDER|HUB_ID"
# The metavar of a file a command writes: a name typed with a trailing '/' is refused (`expand_path_options`), since
# a Path drops the slash and `-o preds/` wrote a file named `preds` where the user meant a folder.
FILE_OUT = "FILE"

OVERWRITE_HELP = "Replace outputs already there that another command (or person) wrote; never an input."


def claim_outputs(command: str, inputs: Mapping[str, Path | None], files: Iterable[Path] = (),
                  folders: Iterable[Path] = (), overwrite: bool = False,
                  own: Mapping[Path, Callable[[str], bool]] | None = None, listed: Iterable[Path] = (),
                  named_after: Mapping[Path, Path] | None = None) -> None:
    """Refuse, as a clean error, outputs that are inputs, that another process is writing, or that would replace
    what `bbuvl COMMAND` did not write; hold them until the command ends (bbuvl/outputs.py). `own`: which names the
    command writes under each folder it sets aside whole, what alone --overwrite gives up there; `listed`: folders it
    replaces whole whose own names are those its last run wrote there (a model folder's vary with the model);
    `named_after`: files named after another output (METRICS.coco.json after --out), whose name's room is its.

    What the command wrote is recorded as its own when it ends: all of it after success, after a failure only
    what it changed (`finish_claims`).
    """
    files = list(files)
    with _claiming():
        refuse_named_photos(inputs, files)  # before the ledger is read: `--overwrite` would have replaced the photo
        _CLAIMS.append(_claim_outputs(command, inputs, files, folders, overwrite, own, listed, named_after))


def hold_outputs(command: str, outputs: Iterable[Path]) -> None:
    """Refuse, as a clean error, outputs another process is writing; hold them until the command ends. For commands
    that keep their own record of what is theirs (predict's manifest, train's run folder)."""
    with _claiming():
        _CLAIMS.append(_hold_outputs(command, outputs))


@contextmanager
def _claiming() -> Iterator[None]:
    """A refused output, or one where nothing can be written (a read-only or full disk, another user's folder), as
    a clean error before any work."""
    try:
        yield
    except OutputConflict as e:
        fail(str(e))
    except (FileExistsError, NotADirectoryError) as e:  # mkdir of a folder whose name (or a parent's) is a file
        if e.filename is not None and os.path.islink(e.filename) and not os.path.exists(e.filename):
            fail(f"{e.filename}: cannot be made a folder: a link that reaches nothing is there (to "
                 f"{os.readlink(e.filename)}, or its links lead in a loop); choose another output")
        kind = file_kind(Path(e.filename)) if e.filename is not None else None
        if kind in SPECIAL_FILES:  # `data synth /dev/null` was told a file has its name
            fail(f"{e.filename}: cannot be made a folder: it is {kind}; choose another output")
        fail(f"{e.filename}: cannot be made a folder: a file has its name, or a folder above it is a file; "
             "choose another output")
    except OSError as e:  # the lock beside each output is the first thing written (a full disk, a read-only folder)
        lock = str(e.filename or "").endswith(LOCK_SUFFIX)
        fail(f"cannot write the outputs: {error_text(e)}"
             f"{' (the lock file each output gets beside it, before anything else)' if lock else ''}; "
             "choose another output")


# What `file_kind` calls a path that is neither file, folder nor missing.
SPECIAL_FILES = ("a FIFO (named pipe)", "a device", "a socket")


# The outputs claimed by the running command.
_CLAIMS: list[Claim] = []


def finish_claims(succeeded: bool) -> None:
    """Record what the command wrote and release its outputs (the CLI calls this when a command ends): every claim,
    the last first, also when finishing one of them fails; then a temporary of a failed write that could not be removed
    (no file descriptor left) is removed now that they are let go, or named."""
    try:
        _finish_each(succeeded)
    finally:
        for left, e in remove_left_temporaries(forget=True):
            err_console.print(f"[yellow]warning[/]: {escape(error_text(e))}; {escape(str(left))}, a temporary of a "
                              "write that failed, is left (the next writer of its output removes it)", soft_wrap=True)


def _finish_each(succeeded: bool) -> None:
    """Finish every claim, the last first, whatever finishing another raises."""
    if not _CLAIMS:
        return
    claim = _CLAIMS.pop()
    try:
        claim.finish(succeeded)
    finally:  # an error finishing the report's claim left the metrics' locks held and their lock files behind
        _finish_each(succeeded)


def start_command(ctx: typer.Context) -> None:
    """Before any command: nothing claimed yet (one process may run many: tests, notebooks), its stop line that of a
    command keeping nothing until it says otherwise (cli/stops.py), claims released however the command ends, and
    paths given as options expanded (`expand_path_options`)."""
    finish_claims(succeeded=False)
    release_readings()
    keeps_now(START_OVER)  # a stop line of the command before (predict's, train's) is not this one's
    ctx.call_on_close(lambda: finish_claims(succeeded=False))  # a command that succeeded has finished them already
    ctx.call_on_close(release_readings)  # what a command that claims nothing read (data check, serve) ends with it
    expand_path_options(ctx.command)
    for stream in (sys.stdout, sys.stderr):
        # A terminal whose encoding has no Chinese (LANG=en_US.ISO-8859-1, a cp1252 console) printed the first label
        # as a UnicodeEncodeError traceback: what it cannot show is spelt \u7ebf instead
        # In the C locale with UTF-8 mode off (PYTHONUTF8=0) stdout is ASCII with surrogateescape, which fails alike.
        if isinstance(stream, io.TextIOWrapper) and (stream.errors == "strict" or (
                stream.errors == "surrogateescape" and codecs.lookup(stream.encoding).name != "utf-8")):
            stream.reconfigure(errors="backslashreplace")


def record_claimed_outputs(*_: object, **__: object) -> None:
    """After a command succeeded: record what it wrote as its own (the CLI's result callback)."""
    finish_claims(succeeded=True)


class CommandGroup(TyperGroup):
    """A click group of `bbuvl` commands in which a write of an output that failed and that no command caught (a
    WriteFailed, bbuvl/atomic.py: it names the file and why) ends the command as one error line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command chosen; its uncaught failed write as `fail` says it."""
        # A full disk met by the last write, after minutes of work (doctor's plot once the model had run), was a
        # traceback ending in WriteFailed where every other write of every command was one line: the class is caught
        # here once, not at each write.
        try:
            return super().invoke(ctx)
        except WriteFailed as e:
            fail(error_text(e))


def command_group(**kwargs: Any) -> typer.Typer:
    """A group of `bbuvl` commands: what its commands claim ends with them and their path options are expanded,
    also when the group runs on its own (as tests run it), not only under `bbuvl`; a failed write no command caught
    is one error line (`CommandGroup`)."""
    return typer.Typer(callback=start_command, result_callback=record_claimed_outputs, cls=CommandGroup, **kwargs)


def parse_size(text: str) -> tuple[int, int]:
    """`"640x480"` -> `(640, 480)`."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"size must look like WIDTHxHEIGHT (e.g. 640x480), got '{text}'")
        raise
    return w, h


def parse_range(text: str, option: str) -> tuple[int, int]:
    """`"10-24"` -> `(10, 24)` for `option`; a single number is a range of one."""
    parts = text.split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
    except ValueError:
        lo, hi = 0, -1
    if not 0 < lo <= hi:
        fail(f"{option} must look like MIN-MAX with 0 < MIN <= MAX (e.g. 10-24), got '{text}'")
    return lo, hi


def stdout_is_tty() -> bool:
    """True when progress bars should animate."""
    return sys.stdout.isatty()


def finite_range(lo: float, hi: float = math.inf, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[float | None], float | None]:
    """A typer callback that accepts a finite number between `lo` and `hi` (each bound closed unless `*_open`).

    Typer's own `min=`/`max=` let inf through an open-ended range, and their error does not say what was given.
    """
    interval = (f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}" if math.isfinite(hi)
                else f"{'>' if lo_open else '>='} {lo:g}")

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        above = value > lo if lo_open else value >= lo
        below = value < hi if hi_open else value <= hi
        if not (math.isfinite(value) and above and below):
            raise typer.BadParameter(f"must be a finite number {interval}, got {value}")
        return value

    return check


# What `--choose-thresholds` aims the verdict's thresholds at (eval/faults.py, `choose_thresholds`).
TARGET_RECALL = typer.Option(0.8, "--target-recall", help="--choose-thresholds: the share of faulty photos the review "
                             "threshold must flag.", callback=finite_range(0, 1, lo_open=True))
TARGET_PRECISION = typer.Option(0.9, "--target-precision", help="--choose-thresholds: the share of failed photos that "
                                "must be faulty at the fail threshold.", callback=finite_range(0, 1, lo_open=True))


def int_range(lo: int, hi: int | None = None) -> Callable[[int | None], int | None]:
    """A typer callback that accepts a whole number in [lo, hi] (no upper bound when `hi` is None), naming what was given."""
    interval = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"

    def check(value: int | None) -> int | None:
        if value is not None and not (lo <= value and (hi is None or value <= hi)):
            raise typer.BadParameter(f"must be a whole number {interval}, got {value}")
        return value

    return check


def one_of(*choices: str) -> Callable[[str | None], str | None]:
    """A typer callback that accepts one of `choices` (case as given), naming them and what was given."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}, got '{value}'")
        return value

    return check


def check_device(device: str | None) -> str | None:
    """`device` if torch can use it here, else a clean error naming what is available."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        fail(f"--device {device}: not a device name; use cpu, cuda, cuda:N or mps")
        raise
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        fail(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible); use cpu or a visible cuda:N")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {device}: MPS is not available here; use cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        fail(f"--device {device}: unsupported device type; use cpu, cuda, cuda:N or mps")
    return device


def expand_path_options(command: Any) -> None:
    """Make every path option and argument of `command` (and its sub-commands) expand `~` and `$VAR` as a shell
    would, or refuse an unset variable: `--out=~/run` is then the same folder as `--out ~/run` (bbuvl/paths.py)."""
    for sub in getattr(command, "commands", {}).values():
        expand_path_options(sub)
    for param in command.params:
        if _takes_paths(param) and not getattr(param.process_value, "expands_paths", False):
            param.process_value = _expanding(param.process_value, param)


def _takes_paths(param: Any) -> bool:
    """Whether a typer parameter's value is a path (or paths): its annotation names Path, or (typer on click) its
    click type is a click.Path."""
    if getattr(param, "metavar", None) == PATH_OR_ID:
        return True
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        return any(isinstance(t, type) and issubclass(t, PurePath) for t in (annotation, *get_args(annotation)))
    return isinstance(getattr(param, "type", None), click.Path)


def _stream_named(value: str) -> str | None:
    """What `value` names when it is no file a command can write whole, else None: '-' (standard output, as most
    tools spell it) or a name in /dev or /proc (/dev/stdout, also where it links to a file stdout is redirected to).
    A pipe or device elsewhere is refused by the writers (bbuvl/outputs.py)."""
    if value == "-":
        return "'-' names standard output"
    # Not resolved: /dev/stdout reaches the file the shell redirected stdout to, and the files written beside an
    # output (eval's METRICS.coco.json, the ledger, the lock) went into /dev.
    # /dev/shm is a folder of plain files in memory, a fair place for outputs.
    where = os.path.abspath(value)
    if where.startswith(("/dev/", "/proc/")) and not where.startswith("/dev/shm/"):
        return "a stream or device's name"
    return None


def _expanding(process: Callable[[Any, Any], Any], param: Any) -> Callable[[Any, Any], Any]:
    def process_value(ctx: Any, value: Any) -> Any:
        try:
            if isinstance(value, str):
                value = expand_path(value)
                # Path("") is the current folder: a dataset split into it, a tiny model replacing it (a FILE_OUT's
                # writer refuses a folder by name itself)
                if not value and getattr(param, "metavar", None) != FILE_OUT:
                    raise ValueError("an empty path (''), which would name the current folder; give a file or folder "
                                     "(is a shell variable empty?)")
                if getattr(param, "metavar", None) == FILE_OUT and value.endswith(("/", os.sep)):
                    raise ValueError(f"{value}: ends in '/', which names a folder, but this takes a file's name "
                                     f"(one inside {value}, say)")
                if getattr(param, "metavar", None) == FILE_OUT and (stream := _stream_named(value)) is not None:
                    raise ValueError(f"{value}: {stream}, but this writes a file whole, then renames it into place "
                                     "and records it beside it; name a file (and `cat` it into a pipe)")
            elif isinstance(value, (list, tuple)):
                value = type(value)(expand_path(v) if isinstance(v, str) else v for v in value)
        except ValueError as e:
            raise typer.BadParameter(str(e), ctx=ctx, param=param) from None
        return process(ctx, value)

    process_value.expands_paths = True  # type: ignore[attr-defined]
    return process_value
