"""A right-to-left override (or another bidirectional control) in a file name or label from data is printed spelled
out, as control characters are (cli/common.py): the terminal obeyed it, and `evil\\u202egpj.exe` showed as
`evilexe.jpg`. Arabic and Hebrew text is printed as it is."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


def test_a_right_to_left_override_in_a_photo_name_is_printed_spelled_out(tmp_path):
    names = ["evil\u202egpj.exe", "a\u2066b\u2069.jpg", "שלום.jpg", "مرحبا.jpg"]
    rows = [{"images": [n], "width": 64, "height": 48, "objects": [{"bbox_2d": [1, 1, 9, 9], "desc": "线缆"}]} for n in names]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "check", str(data)], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    for control in ("\u202e", "\u2066", "\u2069"):
        assert control not in result.output
    assert "evil\\u202egpj.exe" in result.output and "a\\u2066b\\u2069.jpg" in result.output
    assert "שלום.jpg" in result.output and "مرحبا.jpg" in result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_terminal_whose_encoding_has_no_chinese_gets_the_labels_escaped_not_a_traceback(small_dataset):
    import os
    import subprocess
    import sys

    # LANG=en_US.ISO-8859-1, or a cp1252 console: the first Chinese label was a UnicodeEncodeError traceback
    for encoding in ("ascii", "latin-1"):
        env = {**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-m", "bbuvl.cli", "data", "stats", str(small_dataset)], env=env,
                              capture_output=True, timeout=120)
        out = done.stdout.decode(encoding) + done.stderr.decode(encoding)
        assert done.returncode == 0 and "Traceback" not in out, out
        assert "\\u7ebf\\u7f06" in out  # 线缆, spelled
