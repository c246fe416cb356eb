"""Commands that read no model start without torch, transformers or peft: importing them cost `bbuvl eval` 7 of its 8
seconds on a 2-core machine, for each of the demo's dozen evaluations and every eval a user scripts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.eval.conftest import EvalFiles

HEAVY = ("torch", "transformers", "peft")

# Runs one command in a fresh interpreter, then prints which of HEAVY it imported.
PROBE = """
import json, sys
from bbuvl.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def loaded_by(args: list[str]) -> dict:
    """Exit code and heavy modules imported by `bbuvl ARGS` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["eval", "eval --report", "viz", "data check"])
def test_commands_that_read_no_model_import_no_model_library(eval_files: EvalFiles, tmp_path, command):
    args = {
        "eval": ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")],
        "eval --report": ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                          str(tmp_path / "m.json"), "--report", str(tmp_path / "report")],
        "viz": ["viz", str(eval_files.gt), str(tmp_path / "viz"), "--pred", str(eval_files.pred)],
        "data check": ["data", "check", str(eval_files.gt)],
    }[command]
    result = loaded_by(args)
    assert result["code"] in (0, None), result
    assert result["loaded"] == [], f"bbuvl {command} imported {result['loaded']}"
