"""The `bbuvl` console script: the CLI, where Ctrl-C (also during start-up: its imports take seconds), SIGTERM and
SIGHUP (a closed terminal or ssh session) end any command with one line and the shell's status for the signal, 130,
143 or 129."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

# What a stopped command says, once its outputs are released (bbuvl/outputs.py), followed by the command's own account
# of what stays and how to go on (cli/stops.py): the command says it as it goes, since what a re-run finds depends on
# how far it got (a train before and after its first whole checkpoint), and most commands start over.
STOPPED = "bbuvl: {what}: the command stopped"

# The signals that end a command as SIGTERM does, each with what its line calls it. SIGHUP is what a closed terminal
# window or ssh session sends: at its default it killed the command where it stood, a half dataset and the lock files
# left behind (docs/resume.md). Windows has no SIGHUP.
ENDINGS = {signal.SIGTERM: "terminated (SIGTERM)",
           **({signal.SIGHUP: "hangup (SIGHUP)"} if hasattr(signal, "SIGHUP") else {})}


class Terminated(BaseException):
    """SIGTERM or SIGHUP (`signum`), raised where the main thread is, so that the command ends as it does on Ctrl-C:
    every `finally` runs and its outputs are released. Not an Exception: an `except Exception` retry loop must not
    swallow it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


def _held_for_later(signum: int) -> bool:
    """Whether a pool's results are being taken under a lock (data/workers.py `hold_signal`): the signal is then raised
    again once the lock is let go, where stopping cannot leave it taken and the pool's shutdown waiting for ever."""
    workers = sys.modules.get("bbuvl.data.workers")  # not imported: no pool runs
    return workers is not None and workers.hold_signal(signum)


def _terminate(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _MAIN_PID[0]:
        # A forked worker (data synth --workers, a DataLoader's) inherits this handler; its parent ends it, and it
        # dies by the signal as before rather than printing a traceback of its own.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _held_for_later(signum):
        return
    _stopping()
    raise Terminated(signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _MAIN_PID[0]:
        # A forked worker inherits this handler too, and a terminal's Ctrl-C reaches the whole process group. Raised
        # there, a second Ctrl-C found the worker waiting for its next photo and multiprocessing printed its traceback
        # before our line. The command ends its workers itself (data/workers.py; torch its DataLoader's), so they leave
        # Ctrl-C to it.
        return
    if _held_for_later(signum):
        return
    _INTERRUPTED[0] = True
    _stopping()
    signal.default_int_handler(signum, frame)


def _stopping() -> None:
    """From here on a repeated SIGTERM, SIGHUP or Ctrl-C, and a child's exit, leave the cleanup under way alone."""
    # The command stops once: a second Ctrl-C or SIGTERM (pressed twice, a supervisor asking again) raised again inside
    # the first's cleanup and cut it short, leaving a data synth folder of 300 photos without train.jsonl behind the
    # line saying it was removed. SIGKILL, or Ctrl-\, still ends a cleanup at once.
    # And a group SIGTERM (a terminal, `timeout`, systemd's stop) ends the command's DataLoader workers too, by the
    # signal; torch's SIGCHLD handler here reported each as "DataLoader worker is killed by signal" wherever the cleanup
    # stood: a traceback after our line, or instead of it with status 1 (15 of 20 runs). The command shuts its workers
    # down itself, so it stops watching them.
    for sig in (*ENDINGS, signal.SIGINT, signal.SIGCHLD):
        if callable(signal.getsignal(sig)):
            signal.signal(sig, _already_stopping)
    threading.excepthook = _quiet_broken_pool(threading.excepthook)
    _hung_up_terminal_to_null()


def _hung_up_terminal_to_null() -> None:
    """stdout and stderr to the null device where they are a terminal that hung up (its window or ssh session
    closed)."""
    # Every write to a hung-up terminal fails (EIO): the cleanup's own output, a progress bar closing, raised in place
    # of the stop and the command ended with status 1, where SIGHUP's 129 was due. Only a hung-up terminal answers EIO
    # here; a live one, a file or a pipe keeps the stop's line.
    try:
        import termios
    except ImportError:  # Windows: no such terminals, and no SIGHUP
        return
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
        except termios.error as e:
            if e.args[0] == errno.EIO:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)


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


def _say(what: str, keeps: str) -> None:
    try:
        print(STOPPED.format(what=what) + (f"; {keeps}" if keeps else ""), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed, or a pipe whose reader is gone: the status still tells
        pass


def main() -> None:
    """Run the CLI; an interrupt while it is still importing exits 130 with one line, not the imports' traceback,
    and Ctrl-C, SIGTERM or SIGHUP during a command exits 130, 143 or 129 with one line once the command has cleaned
    up, saying what the command keeps (cli/stops.py)."""
    try:
        from bbuvl.cli import app, bars_off_in_logs, collect_once_at_exit
        from bbuvl.cli.stops import stop_keeps
    except KeyboardInterrupt:
        print("interrupted before the command started; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    bars_off_in_logs()
    collect_once_at_exit()
    run_as_command(app, stop_keeps)


def run_as_command(command: Callable[[], object], keeps: Callable[[], str] = lambda: "") -> None:
    """Run `command` as `bbuvl` runs its CLI: SIGTERM, SIGHUP or Ctrl-C ends it, once its `finally` blocks have run,
    with one line on stderr (ending in `keeps()`, when it says something) and the shell's status for the signal, 143,
    129 or 130."""
    _MAIN_PID[0] = os.getpid()
    # A signal the caller ignores (nohup, a shell's background job) stays ignored.
    for signum in ENDINGS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        command()
    except Terminated as e:
        _say(ENDINGS[e.signum], keeps())
        raise SystemExit(128 + e.signum) from None
    except SystemExit as e:
        # typer turns Ctrl-C into exit 130 without a word; `serve` catches its own signals and says what it did.
        if e.code == 130 and _INTERRUPTED[0]:
            _say("interrupted (Ctrl-C)", keeps())
        raise
