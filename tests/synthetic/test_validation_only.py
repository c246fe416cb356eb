"""data synth --n-train 0: a folder of validation photos whose val.jsonl the next command accepts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.data.schema import read_records


def test_synth_of_validation_photos_only_writes_no_train_file_and_its_val_passes_check(tmp_path: Path) -> None:
    # It wrote an empty train.jsonl (and teachers.jsonl), which `data check` then refused: the folder it had just made
    d = tmp_path / "d"
    r = CliRunner().invoke(app, ["data", "synth", str(d), "--n-train", "1", "--n-val", "1", "--size", "160x120"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["data", "synth", str(d), "--n-train", "0", "--n-val", "2", "--size", "160x120"])
    assert r.exit_code == 0, r.output
    assert not (d / "train.jsonl").exists() and not (d / "teachers.jsonl").exists()  # the first run's went too
    assert len(read_records(d / "val.jsonl")) == 2
    assert not [p for p in check_dataset(d / "val.jsonl") if p.severity == "error"]
    assert str(d / "val.jsonl") in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["data", "check", str(d)])
    assert r.exit_code != 0 and f"give {d / 'val.jsonl'} itself" in " ".join(r.output.split()), r.output


def test_synth_refuses_teachers_without_training_photos_and_no_photos_at_all(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "a"), "--n-train", "0", "--n-val", "2", "--teachers", "3"])
    assert r.exit_code == 2 and "--teachers" in r.output and not (tmp_path / "a").exists(), r.output
    r = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "b"), "--n-train", "0", "--n-val", "0"])
    assert r.exit_code == 2 and "no photo" in r.output and not (tmp_path / "b").exists(), r.output


def test_synth_of_a_size_too_small_names_the_size_option(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--size", "50x50"])
    assert r.exit_code == 2 and "--size 50x50" in r.output and "96 px" in r.output, r.output
    assert not (tmp_path / "d").exists()


def test_synth_shapes_refusals_name_the_option_to_change(tmp_path: Path) -> None:
    # 'object sides must satisfy 4 <= min (1) <= max (3) pixels' named no option
    for args, option in ((["--object-px", "1-3"], "--object-px"), (["--object-px", "4-90"], "--object-px"),
                         (["--min-objects", "3", "--max-objects", "2"], "--min-objects")):
        r = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--scene", "shapes", "--size", "160x120", *args])
        assert r.exit_code == 2 and option in r.output and not (tmp_path / "d").exists(), r.output


def test_synth_of_validation_photos_only_takes_teachers_zero_as_the_demo_types_it(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--n-train", "0", "--teachers", "0",
                                 "--n-val", "1", "--size", "160x120"])
    assert r.exit_code == 0 and len(read_records(tmp_path / "d" / "val.jsonl")) == 1, r.output
