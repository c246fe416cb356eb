"""Workflows of several `bbuvl data` commands, where a later step meets what an earlier one left: an output given as
the input of the same step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.synthetic.dataset import synthesize


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_convert_given_its_own_output_names_it_a_dataset_folder_and_writes_nothing(tmp_path: Path):
    synthesize(tmp_path / "export [站点 1]", 6, 0, seed=2, size=(160, 120), fmt="vendor")
    first, again = tmp_path / "ds", tmp_path / "again"
    code, said = run("convert", tmp_path / "export [站点 1]", first, "--workers", "1", "--teachers", "1")
    assert code == 0, said
    code, said = run("convert", first, again, "--workers", "1")
    assert code == 2, said
    assert f"{first}: a dataset folder (it holds train.jsonl), converted already" in said, said
    assert "no image named" not in said and "no photo under" not in said, said
    assert not again.exists()


def test_an_export_holding_a_stray_train_jsonl_is_still_converted(tmp_path: Path):
    export = tmp_path / "export"
    synthesize(export, 4, 0, seed=2, size=(160, 120), fmt="vendor")
    (export / "train.jsonl").write_text("", encoding="utf-8")  # a file of the user's among the platform's
    code, said = run("convert", export, tmp_path / "ds", "--workers", "1", "--teachers", "1", "--val-ratio", "0")
    assert code == 0, said
    assert len((tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 4


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_synth_into_its_own_folder_in_the_other_format_leaves_none_of_the_first_runs_files(tmp_path: Path):
    out, small = tmp_path / "synth [1]", ["--size", "160x120", "--seed", "4"]
    assert run("synth", out, "--n-train", "5", "--n-val", "2", *small)[0] == 0
    code, said = run("synth", out, "--n-train", "3", "--n-val", "1", "--format", "vendor", *small[:2])
    assert code == 0, said
    # The first run's records named images/ that now hold the other run's photos (or none): they go with it.
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["annotations", "images"]
    code, said = run("convert", out, tmp_path / "ds", "--workers", "1", "--teachers", "1", "--val-ratio", "0")
    assert code == 0 and len((tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 4, said
    code, said = run("synth", out, "--n-train", "2", "--n-val", "1", *small)
    assert code == 0, said
    assert not (out / "annotations").exists()
    code, said = run("check", out)
    assert code == 0, said


def test_synth_in_the_other_format_keeps_a_dataset_file_it_did_not_write(tmp_path: Path):
    out = tmp_path / "synth"
    assert run("synth", out, "--n-train", "2", "--n-val", "1", "--size", "160x120")[0] == 0
    (out / "train.jsonl").write_text((out / "train.jsonl").read_text(encoding="utf-8")[:-1] + "\n\n", encoding="utf-8")
    code, said = run("synth", out, "--n-train", "2", "--n-val", "1", "--size", "160x120", "--format", "vendor")
    assert code == 0, said
    assert (out / "train.jsonl").is_file() and not (out / "val.jsonl").exists()


def origins(path: Path) -> set[str]:
    """The photos the tiles of a dataset file were cut from (the id before `data tile`'s `@x,y,wxh`)."""
    return {json.loads(line)["id"].split("@")[0] for line in path.read_text(encoding="utf-8").splitlines()}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_split_of_a_tiled_dataset_keeps_each_photos_tiles_on_one_side(tmp_path: Path):
    synthesize(tmp_path / "ds", 8, 2, seed=3, size=(160, 120), num_teachers=2)
    assert run("tile", tmp_path / "ds", tmp_path / "tiles", "--teachers", "1")[0] == 0
    code, said = run("split", tmp_path / "tiles" / "train.jsonl", tmp_path / "split", "--val-ratio", "0.25")
    assert code == 0, said
    train, val = origins(tmp_path / "split" / "train.jsonl"), origins(tmp_path / "split" / "val.jsonl")
    # Tile by tile, nearly every validation photo's whole (showing all its tiles) was in train.
    assert len(train) == 6 and len(val) == 2 and not train & val, (train, val)
    code, said = run("check", tmp_path / "split")
    assert code == 0 and "a tile of photo" not in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_check_warns_of_one_photos_tiles_in_train_and_val(tmp_path: Path):
    synthesize(tmp_path / "ds", 4, 1, seed=3, size=(160, 120), num_teachers=1)
    assert run("tile", tmp_path / "ds", tmp_path / "tiles", "--teachers", "1")[0] == 0
    lines = (tmp_path / "tiles" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "tiles" / "val.jsonl").write_text(lines[1] + "\n", encoding="utf-8")  # a tile moved to val by hand
    (tmp_path / "tiles" / "train.jsonl").write_text("".join(x + "\n" for i, x in enumerate(lines) if i != 1),
                                                    encoding="utf-8")
    code, said = run("check", tmp_path / "tiles")
    origin = json.loads(lines[1])["id"].split("@")[0]
    assert f"{tmp_path / 'tiles' / 'val.jsonl'}:1: image {json.loads(lines[1])['images'][0]}: a tile of photo " \
           f"'{origin}', which {tmp_path / 'tiles' / 'train.jsonl'} line 1 holds a tile of too" in said, said


def test_a_datasets_counts_given_as_the_dataset_are_named_as_counts(tmp_path: Path):
    ds = tmp_path / "ds"
    synthesize(ds, 3, 1, seed=3, size=(160, 120), num_teachers=1)
    assert run("stats", ds, "--json", tmp_path / "stats.json")[0] == 0
    for counts in (ds / "labels.json", ds / "summary.json", tmp_path / "stats.json"):
        for step in (["check", counts], ["split", counts, tmp_path / "split"], ["teachers", counts, tmp_path / "t.jsonl"]):
            code, said = run(*step)
            assert code != 0 and f"{counts}: a dataset's counts (labels.json, summary.json or `bbuvl data stats " \
                                  "--json`), not a JSONL dataset" in said, (step, said)
            assert "invalid JSON" not in said and "missing key" not in said
