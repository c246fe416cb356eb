"""Ctrl-C while `bbuvl` is still importing (seconds: torch, transformers) ends with one line and exit 130, not a
traceback through the imports."""

import subprocess
import sys

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
