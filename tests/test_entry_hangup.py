"""SIGHUP, what a closed terminal window or ssh session sends, ends a `bbuvl` command as SIGTERM does: its cleanup runs,
one line, status 129. At its default it killed the command where it stood: a `data synth` folder of photos without
train.jsonl and six lock files were left behind, with no word and status -1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.children import reaped

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this OS")

CHILD = "import sys, bbuvl.entry; sys.argv = ['bbuvl', *sys.argv[1:]]; bbuvl.entry.main()"
SYNTH = ["data", "synth", "--scene", "shapes", "--n-train", "100000", "--n-val", "1", "--size", "96x96"]


def _hangup_at(disposition: signal.Handlers):  # noqa: ANN202 - a preexec_fn
    """The child's SIGHUP as a terminal leaves it (default) or as nohup does (ignored)."""
    return lambda: signal.signal(signal.SIGHUP, disposition)


def _photos_written(out: Path, child: subprocess.Popen, least: int = 1) -> None:
    """Wait until `child` has written `least` photos into `out/images`."""
    deadline = time.monotonic() + 60
    while not (out / "images").is_dir() or len(os.listdir(out / "images")) < least:
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.02)


def _left_in(folder: Path) -> list[str]:
    """Every name under `folder`, hidden ones (lock files) included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_hangup_mid_command_ends_it_as_sigterm_does(tmp_path):
    out = tmp_path / "synth"
    child = subprocess.Popen([sys.executable, "-c", CHILD, *SYNTH[:2], str(out), *SYNTH[2:]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_hangup_at(signal.SIG_DFL))
    with reaped(child):
        _photos_written(out, child)
        child.send_signal(signal.SIGHUP)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 129, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bbuvl: hangup (SIGHUP): the command stopped;"), err
    assert _left_in(tmp_path) == []  # no half dataset, no lock file


def _stacks_of(pid: int, stacks: Path) -> str:
    """What `pid` and its children are doing: each one's Python stacks (faulthandler, on SIGUSR1, into `stacks`), and
    its state and kernel wait channel."""
    family = [pid] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == pid]
    said = []
    for member in family:
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGUSR1)
            state = next(line for line in Path(f"/proc/{member}/status").read_text().splitlines()
                         if line.startswith("State"))
            said.append(f"pid {member}: {state}, waiting in {Path(f'/proc/{member}/wchan').read_text()}")
    time.sleep(1)
    return "\n".join(said) + "\n" + (stacks.read_text(errors="replace") if stacks.exists() else "(no stacks written)")


def _parent_of(proc: Path) -> int | None:
    """The parent pid of /proc/PID `proc`; None once it is gone."""
    try:
        return int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_closing_the_terminal_a_command_runs_in_ends_it_with_its_cleanup_and_129(tmp_path, tmp_path_factory):
    """The real thing: a pseudo-terminal closed under the command, as an ssh session's is. Every write to it then
    fails, the cleanup's own (a progress bar closing) too, which ended the command with status 1."""
    import pty

    out = tmp_path / "synth"
    # Where the command and its workers write their Python stacks should it hang (seen twice in loaded full runs, its
    # cause not yet known): the failure then says where each process waits.
    stacks = tmp_path_factory.mktemp("hangup_stacks") / "stacks.txt"
    dump = f"import faulthandler, signal; faulthandler.register(signal.SIGUSR1, open({str(stacks)!r}, 'a'), True); "
    pid, terminal = pty.fork()
    if pid == 0:  # the command, on the terminal: stdin, stdout and stderr, as a shell runs it
        try:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            os.execv(sys.executable, [sys.executable, "-c", dump + CHILD, *SYNTH[:2], str(out), *SYNTH[2:], "--workers",
                                      "2"])
        finally:
            os._exit(127)
    try:
        deadline = time.monotonic() + 60
        while not (out / "images").is_dir() or len(os.listdir(out / "images")) < 20:
            assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0)
            try:
                os.read(terminal, 65536)  # what it shows (a progress bar): read, as a terminal does
            except OSError:
                pass
    finally:
        os.close(terminal)  # the window closes: the command is sent SIGHUP and its terminal is gone
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            where = _stacks_of(pid, stacks)
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the command did not end after its terminal closed; where it and its workers wait:\n{where}")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 129
    assert _left_in(tmp_path) == []


def test_a_hangup_the_caller_ignores_stays_ignored(tmp_path):
    """`nohup bbuvl ...`: the command goes on when its terminal closes."""
    out = tmp_path / "synth"
    child = subprocess.Popen([sys.executable, "-c", CHILD, *SYNTH[:2], str(out), *SYNTH[2:]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_hangup_at(signal.SIG_IGN))
    with reaped(child):
        _photos_written(out, child)
        child.send_signal(signal.SIGHUP)
        _photos_written(out, child, len(os.listdir(out / "images")) + 20)  # still writing
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 143 and "terminated (SIGTERM)" in err, err
