"""An empty path typed on the command line (`"$OUT"` with OUT empty) is a usage error naming the argument, never the
current folder: `data split d.jsonl ""` wrote train/val/teachers.jsonl into it, `data synth ""` a dataset, and
`model tiny "" --overwrite` would have replaced it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


@pytest.mark.parametrize("command, argument", [
    (["data", "split", "{data}", ""], "'out_dir'"),
    (["data", "synth", "", "--n-train", "1", "--n-val", "0"], "'out'"),
    (["data", "tile", "{data}", ""], "'out'"),
    (["data", "import-coco", "{data}", "{images}", ""], "'out'"),
    (["data", "convert", "{images}", ""], "'out'"),
    (["model", "tiny", "", "--overwrite"], "'out'"),
    (["fewshot", "tiny-backbone", "resnet", "", "--overwrite"], "'out'"),
    (["data", "check", ""], "'path'"),
    (["data", "stats", ""], "'path'"),
    (["doctor", "data", ""], "'dataset'"),
    (["data", "check", "{data}", "--hierarchy", ""], "'--hierarchy'"),
])
def test_an_empty_path_is_a_usage_error_and_nothing_is_written_into_the_current_folder(small_dataset, tmp_path,
                                                                                      monkeypatch, command, argument):
    monkeypatch.chdir(tmp_path)
    args = [a.format(data=small_dataset / "train.jsonl", images=small_dataset / "images") for a in command]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"Invalid value for {argument}: an empty path ('')" in said, said
    assert list(tmp_path.iterdir()) == []


def test_data_stats_json_typed_as_a_folder_is_refused_as_every_file_output_is(small_dataset, tmp_path):
    # `--json stats/` wrote a file named `stats` (a Path drops the slash): --json was the one file output of the data
    # commands not marked as one (cli/common.py, FILE_OUT)
    result = CliRunner().invoke(app, ["data", "stats", str(small_dataset), "--json", f"{tmp_path}/stats/"],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "ends in '/', which names a folder, but this takes a file's name" in said, said
    assert list(tmp_path.iterdir()) == []
