"""The `bbuvl` console script: the CLI, where Ctrl-C (also during start-up: its imports take seconds) and SIGTERM end
any command with one line and the shell's status for the signal, 130 or 143."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

# What a stopped command says, once its outputs are released: the claims (bbuvl/outputs.py) keep what it wrote whole
# and remove what it began in a folder that was not there, as after any failure.
STOPPED = ("bbuvl: {what}: the command stopped; what it finished is kept, what it left half-done is removed; "
           "run it again to go on (train: --resume)")


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that the command ends as it does on Ctrl-C: every `finally` runs
    and its outputs are released. Not an Exception: an `except Exception` retry loop must not swallow it."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _MAIN_PID[0]:
        # A forked worker (data synth --workers, a DataLoader's) inherits this handler; its parent ends it, and it
        # dies by the signal as before rather than printing a traceback of its own.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _stopping()
    raise Terminated


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _INTERRUPTED[0] = os.getpid() == _MAIN_PID[0]
    if _INTERRUPTED[0]:
        _stopping()
    signal.default_int_handler(signum, frame)


def _stopping() -> None:
    """From here on a repeated SIGTERM or Ctrl-C, and a child's exit, leave the cleanup under way alone."""
    # The command stops once: a second Ctrl-C or SIGTERM (pressed twice, a supervisor asking again) raised again inside
    # the first's cleanup and cut it short, leaving a data synth folder of 300 photos without train.jsonl behind the
    # line saying it was removed. SIGKILL, or Ctrl-\, still ends a cleanup at once.
    # And a group SIGTERM (a terminal, `timeout`, systemd's stop) ends the command's DataLoader workers too, by the
    # signal; torch's SIGCHLD handler here reported each as "DataLoader worker is killed by signal" wherever the cleanup
    # stood: a traceback after our line, or instead of it with status 1 (15 of 20 runs). The command shuts its workers
    # down itself, so it stops watching them.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        if callable(signal.getsignal(sig)):
            signal.signal(sig, _already_stopping)
    threading.excepthook = _quiet_broken_pool(threading.excepthook)


def _quiet_broken_pool(hook: Callable[[threading.ExceptHookArgs], object]
                       ) -> Callable[[threading.ExceptHookArgs], None]:
    """`hook` without the InvalidStateError of a process pool whose workers ended with the command."""
    # A group SIGTERM ends `data synth --workers`' pool processes too, after the pool's map() cancelled the photos not
    # yet rendered; Python 3.11's pool then sets an error on those cancelled futures and its thread died printing
    # InvalidStateError after our line (7 of 8 runs). Later Pythons ignore the cancelled futures there, as this does.
    def hook_while_stopping(args: threading.ExceptHookArgs) -> None:
        from concurrent.futures import InvalidStateError  # imported already by the pool that raised it

        if not issubclass(args.exc_type, InvalidStateError):
            hook(args)

    return hook_while_stopping


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    """A signal once the command is stopping: its cleanup goes on. A handler, not SIG_IGN: a signal already pending when
    the handler changed would be printed as 'Signal N ignored due to race condition'."""


_MAIN_PID = [0]
_INTERRUPTED = [False]


def _say(what: str) -> None:
    try:
        print(STOPPED.format(what=what), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed, or a pipe whose reader is gone: the status still tells
        pass


def main() -> None:
    """Run the CLI; an interrupt while it is still importing exits 130 with one line, not the imports' traceback,
    and Ctrl-C or SIGTERM during a command exits 130 or 143 with one line once the command has cleaned up."""
    try:
        from bbuvl.cli import app, bars_off_in_logs
    except KeyboardInterrupt:
        print("interrupted before the command started; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    bars_off_in_logs()
    run_as_command(app)


def run_as_command(command: Callable[[], object]) -> None:
    """Run `command` as `bbuvl` runs its CLI: SIGTERM or Ctrl-C ends it, once its `finally` blocks have run, with one
    line on stderr and the shell's status for the signal, 143 or 130."""
    _MAIN_PID[0] = os.getpid()
    # A signal the caller ignores (nohup, a shell's background job) stays ignored.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        command()
    except Terminated:
        _say("terminated (SIGTERM)")
        raise SystemExit(143) from None
    except SystemExit as e:
        # typer turns Ctrl-C into exit 130 without a word; `serve` catches its own signals and says what it did.
        if e.code == 130 and _INTERRUPTED[0]:
            _say("interrupted (Ctrl-C)")
        raise
