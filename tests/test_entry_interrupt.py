"""Ctrl-C while `bbuvl` is still importing (seconds: torch, transformers) ends with one line and exit 130, not a
traceback through the imports; Ctrl-C to a command's whole process group ends it with its one line, not its forked
workers' tracebacks."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.children import reaped

# A Ctrl-C that arrives while the CLI imports typer, made deterministic: the import itself raises it, as the signal
# handler would at that moment.
CHILD = """
import sys
import bbuvl.entry

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["bbuvl", "--help"]
bbuvl.entry.main()
"""


def test_ctrl_c_during_start_up_exits_130_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "interrupted before the command started" in done.stderr


def test_the_console_script_is_the_entry():
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["bbuvl"] == "bbuvl.entry:main"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_python_dash_m_bbuvl_runs_the_console_script():
    """`python -m bbuvl` is `bbuvl` itself; it was "No module named bbuvl.__main__"."""
    import os
    from pathlib import Path

    import bbuvl

    env = {**os.environ, "PYTHONPATH": str(Path(bbuvl.__file__).parents[1])}
    as_module, as_script = (subprocess.run([sys.executable, *how, "--version"], capture_output=True, text=True,
                                           timeout=120, env=env)
                            for how in (["-m", "bbuvl"], ["-c", "import sys; from bbuvl.entry import main; "
                                                                "sys.argv[0] = 'bbuvl'; main()"]))
    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout == as_script.stdout and as_module.stdout.startswith("bbuvl ")


# A command with a forked worker (a process pool's, a DataLoader's) that inherits bbuvl's Ctrl-C handler; the command
# waits for it, then cleans up while it still runs.
FORKED = """
import multiprocessing, time
from bbuvl.entry import run_as_command

def work():
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1.5,))
    child.start()
    try:  # told only once inside: a Ctrl-C that came between the word and the try was a traceback of its own
        print("working", flush=True)
        child.join()
    except KeyboardInterrupt:  # as the CLI (typer) turns it
        raise SystemExit(130)
    finally:
        child.join()

run_as_command(work, lambda: "what it had begun is removed")
"""


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_ctrl_c_to_the_process_group_ends_a_command_with_only_its_line_not_its_workers_tracebacks():
    child = subprocess.Popen([sys.executable, "-c", FORKED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    with reaped(child, group=True):
        assert child.stdout.readline() == "working\n", child.communicate()
        for _ in range(2):  # pressed twice, as a terminal sends it: to every process of the group
            os.killpg(child.pid, signal.SIGINT)
            time.sleep(0.3)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    # before: "Process ForkProcess-1: Traceback ... in _interrupt ... KeyboardInterrupt" from the worker, first
    assert err == "bbuvl: interrupted (Ctrl-C): the command stopped; what it had begun is removed\n", err
