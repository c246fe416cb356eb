"""A dataset writer whose written paths Windows would not open (260 characters with the closing NUL) says so, once,
naming the longest: copied there, such a photo is "not found" by every tool that does not enable long paths."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.names import WINDOWS_MAX_PATH, windows_length

WARNING = "Windows opens"


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "2000"})
    return result.exit_code, result.output


def longest_file(folder: Path) -> Path:
    return max((Path(top) / n for top, _, names in os.walk(folder) for n in names), key=windows_length)


def test_synth_convert_tile_and_import_warn_once_naming_the_longest_path(tmp_path: Path):
    deep = tmp_path / ("机房" * 40) / ("x" * 100)  # 80 CJK characters: 240 bytes, 80 of Windows' characters
    deep.mkdir(parents=True)
    code, said = invoke("data", "synth", deep / "vendor", "--format", "vendor", "--n-train", "2", "--n-val", "0",
                        "--size", "160x120")
    assert code == 0 and said.count(WARNING) == 1, said
    assert windows_length(longest_file(deep / "vendor")) >= WINDOWS_MAX_PATH
    assert str(longest_file(deep / "vendor")) in said
    for args, out in (
        (("data", "convert", deep / "vendor", deep / "conv", "--workers", "1", "--val-ratio", "0"), deep / "conv"),
        (("data", "tile", deep / "conv", deep / "tiles", "--grid", "2x1"), deep / "tiles"),
        (("data", "export-coco", deep / "conv" / "train.jsonl", deep / "conv" / "coco.json"), None),
        (("data", "import-coco", deep / "conv" / "coco.json", deep / "conv", deep / "imported", "--val-ratio", "0"), deep / "imported"),
    ):
        code, said = invoke(*args)
        assert code == 0, said
        if out is not None:
            assert said.count(WARNING) == 1 and str(longest_file(out)) in said, (args[1], said)


def test_paths_that_fit_are_not_warned_about(tmp_path: Path):
    code, said = invoke("data", "synth", tmp_path / "syn", "--n-train", "2", "--n-val", "0", "--size", "160x120")
    assert code == 0 and WARNING not in said, said
    code, said = invoke("data", "tile", tmp_path / "syn", tmp_path / "tiles", "--grid", "2x1")
    assert code == 0 and WARNING not in said, said
