"""`bbuvl model tiny` asked for sizes no tiny model has: refused with its size before anything is built or written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


@pytest.mark.parametrize("sizes, about", [
    (["--hidden", "100000", "--layers", "100"], "about 10,000,000,081,920 parameters (40,000 GB as float32)"),
    (["--vision-hidden", "20000", "--vision-depth", "1"], "about 4,000,327,680 parameters (16 GB as float32)"),
])
def test_model_tiny_at_sizes_no_tiny_model_has_is_refused_naming_them_before_any_work(tmp_path, sizes, about):
    r = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "m"), *sizes], env={"COLUMNS": "400"})
    # Before: torch's 'DefaultCPUAllocator: can't allocate memory: you tried to allocate 40000000000 bytes' traceback.
    assert r.exit_code == 2 and about in r.output and "builds at most 1,000,000,000" in r.output, r.output
    assert list(tmp_path.iterdir()) == []
