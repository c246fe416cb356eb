"""A pipeline writes `--out -` or `--out /dev/stdout` to get a command's result on standard output. A file option
(metavar FILE) writes a file whole, renames it into place and records it beside it, so either is refused before any
work: `eval --out -` wrote files named '-' and '-.coco.json', and `eval --out /dev/stdout` (as root) wrote
/dev/stdout.coco.json and a ledger into /dev."""

import os

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


@pytest.mark.parametrize("out", ["-", "/dev/stdout", "/dev/null"])
def test_a_file_option_naming_standard_output_or_a_device_is_refused_before_any_work(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir("/dev"))
    # /dev/stdout reaches a regular file when stdout is redirected to one (as a cron job's is): the case that wrote
    # into /dev
    result = CliRunner().invoke(app, ["eval", "--pred", "p.jsonl", "--gt", "gt.jsonl", "--out", out])
    assert result.exit_code == 2, result.output
    assert "this writes a file whole" in " ".join(result.output.replace("│", " ").split()), result.output
    assert not list(tmp_path.iterdir())
    assert set(os.listdir("/dev")) == before


def test_an_output_in_dev_shm_is_a_plain_file_and_written(tmp_path):
    from bbuvl.cli.common import _stream_named

    assert _stream_named("/dev/shm/bbuvl-test/m.json") is None
    assert _stream_named("/dev/stdout") is not None and _stream_named("-") is not None
