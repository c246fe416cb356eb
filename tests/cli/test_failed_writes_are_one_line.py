"""A write of an output that fails where no command caught it (a full disk, a file-size limit met by the last write)
ends the command as one error line naming the file and why, exit 2, never a traceback (cli/common.py, CommandGroup).

Each doctor command wrote its plot or JSON outside the errors it reports, after the model had run: a traceback ending
in bbuvl.atomic.WriteFailed. The limit here is `ulimit -f` (any user); the same command run again writes it.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.diagnostics.conftest import one_thread  # noqa: F401 - the doctor commands run a model: one torch thread
from tests.reliability.faults import file_size_limit

LIMIT = 768  # more than a lock file or the ledger holds, less than any plot or table written here
RERUN = ("attention.png", "data.json")  # a plot and a table: run again, once the limit is lifted


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_doctor_commands_last_write_failing_is_one_error_line_and_a_rerun_writes_it(trained_checkpoint,
                                                                                        small_dataset, tmp_path):
    image = small_dataset / "images" / "val_00001.jpg"
    commands = {
        "memory.png": ["memory", str(trained_checkpoint), "--n", "5", "--images", str(image)],
        "features.png": ["features", str(trained_checkpoint), "--samples", "1"],
        "attention.png": ["attention", str(trained_checkpoint), str(image), "--top-k", "1"],
        "landscape.png": ["landscape", str(trained_checkpoint), str(small_dataset / "val.jsonl"), "--steps", "2",
                          "--samples", "1"],
        "coordinates.json": ["coordinates", str(trained_checkpoint), "--data", str(small_dataset / "train.jsonl"),
                             "--samples", "8"],
        "data.json": ["data", str(small_dataset), "--json"],
    }
    for name, args in commands.items():
        out = tmp_path / name
        typed = [*args, str(out)] if name == "data.json" else [*args, "--out", str(out)]
        with file_size_limit(LIMIT):
            r = CliRunner().invoke(app, ["doctor", *typed])
        said = " ".join(r.output.split())
        assert r.exit_code == 2 and f"error: {out}: writing failed (File too large); nothing was written" in said, \
            (name, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (name, r.exception)
        assert not out.exists(), name
        if name in RERUN:
            r = CliRunner().invoke(app, ["doctor", *typed])  # the limit lifted: the same command writes it
            assert r.exit_code in (0, 1) and out.stat().st_size > LIMIT, (name, r.output)
