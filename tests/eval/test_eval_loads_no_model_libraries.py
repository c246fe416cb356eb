"""Commands that read no model start without torch, transformers or peft: importing them cost `bbuvl eval` 7 of its 8
seconds on a 2-core machine, for each of the demo's dozen evaluations and every eval a user scripts."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.eval.conftest import EvalFiles

HEAVY = ("torch", "transformers", "peft")

# Runs commands in turn in one fresh interpreter, printing after each which of HEAVY it has imported so far: a module
# one imported stays, so the first command that imports one is the one named.
PROBE = """
import json, sys
from bbuvl.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args)
    except SystemExit as e:
        code = e.code
    print("loaded:", json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def loaded_by(commands: list[list[str]]) -> list[dict]:
    """Exit code and heavy modules imported so far after each `bbuvl ARGS` of `commands`, run in turn in a fresh
    interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True, text=True,
                          timeout=300)
    return [json.loads(line.removeprefix("loaded: ")) for line in done.stdout.splitlines() if line.startswith("loaded: ")]


def test_commands_that_read_no_model_import_no_model_library(eval_files: EvalFiles, tmp_path):
    commands = {
        "eval": ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")],
        "eval --report": ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                          str(tmp_path / "m2.json"), "--report", str(tmp_path / "report")],
        "viz": ["viz", str(eval_files.gt), str(tmp_path / "viz"), "--pred", str(eval_files.pred)],
        "data check": ["data", "check", str(eval_files.gt)],
    }
    results = loaded_by(list(commands.values()))
    assert len(results) == len(commands), results
    for command, result in zip(commands, results):
        assert result["code"] in (0, None), (command, result)
        assert result["loaded"] == [], f"bbuvl {command} imported {result['loaded']}"
