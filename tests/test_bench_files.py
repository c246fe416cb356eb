"""A bench writes its report, or appends its rows, only where the file there is its own (bench/bench_files.py): a
mistyped `--json`, `--out` is refused before any work, naming the file, and the file is left as it was. Inputs that
are not there are one line naming them, from any working folder."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from tests.bench_runner import bench_module, run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"


def refusal(script: str, args: list[str]) -> str:
    """The one line a bench exits with when run as `python bench/SCRIPT *args` (it must exit)."""
    argv, path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = [str(BENCH / script), *args], [str(BENCH)]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(BENCH / script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
    return str(stop.value.code)


@pytest.fixture
def bench_files():
    """bench/bench_files.py, imported as the benches import it (their folder on the path)."""
    return bench_module(BENCH, "bench_files")


def test_decode_memory_refuses_a_json_path_holding_another_file_before_decoding(tmp_path):
    config = tmp_path / "base.yaml"
    config.write_bytes(CONFIG.read_bytes())
    message = refusal("decode_memory.py", ["--side", "8", "--json", str(config)])
    assert message.startswith(f"{config}: not a decode_memory report")
    assert config.read_bytes() == CONFIG.read_bytes()


def test_gpu_bench_refuses_an_out_holding_another_file_with_one_line(tmp_path, capsys):
    gpu = bench_module(BENCH, "gpu")
    config = tmp_path / "base.yaml"
    config.write_bytes(CONFIG.read_bytes())
    assert gpu.main(["--config", str(CONFIG), "--device", "cpu", "--out", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err.replace("\n", "") and "Traceback" not in err
    assert config.read_bytes() == CONFIG.read_bytes()


def test_a_sweep_never_appends_to_a_dataset_given_as_its_out(tmp_path):
    data = tmp_path / "train.jsonl"
    line = json.dumps({"images": ["a.jpg"], "width": 4, "height": 4, "objects": []}) + "\n"
    data.write_text(line, encoding="utf-8")
    message = refusal("guard_spread.py", ["--seeds", "0", "--threads", "1", "--steps", "1", "--out", str(data)])
    assert message.startswith(f"{data}:1: not a line of sweep rows")  # before any training run
    assert data.read_text(encoding="utf-8") == line


def test_a_report_the_bench_wrote_is_replaced_whole_and_its_rows_are_read_back(bench_files, tmp_path):
    report = tmp_path / "runs" / "peaks.json"
    ours = lambda r: isinstance(r, dict) and set(r) == {"8-bit RGB"}  # noqa: E731
    bench_files.refuse_foreign(report, ours, "report")  # nothing there yet
    bench_files.write_report(report, {"8-bit RGB": 9.6})
    bench_files.refuse_foreign(report, ours, "report")  # its own: may be replaced
    bench_files.write_report(report, {"8-bit RGB": 8.2})
    assert json.loads(report.read_text(encoding="utf-8")) == {"8-bit RGB": 8.2}
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"seed": 1}\n\n{"seed": 2}\n', encoding="utf-8")
    assert bench_files.refuse_foreign_rows(rows, lambda r: "seed" in r, "rows") == [{"seed": 1}, {"seed": 2}]
    rows.write_text('{"seed": 1}\n{"seed": 2', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{rows}:2"):
        bench_files.refuse_foreign_rows(rows, lambda r: "seed" in r, "rows")


@pytest.mark.parametrize("script, args", [
    ("inspection.py", ["--checkpoint", "never-read", "--seeds", "1", "--closeups", "1", "--wide", "0"]),
    ("query_coverage.py", ["--checkpoint", "never-read", "--val", "never-read.jsonl"]),
])
def test_a_bench_appending_its_table_never_appends_to_a_dataset(script, args, tmp_path, capsys):
    data = tmp_path / "val.jsonl"
    line = json.dumps({"images": ["a.jpg"], "width": 4, "height": 4, "objects": []}) + "\n"
    data.write_text(line, encoding="utf-8")
    assert refusal(script, [*args, "--json", str(data)]) == "2"  # before any photo is rendered or checkpoint read
    assert f"--json: {data}:1: not a line of" in " ".join(capsys.readouterr().err.split())
    assert data.read_text(encoding="utf-8") == line


def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_appends(tmp_path):
    import fcntl

    out = tmp_path / "runs" / "spread.jsonl"
    out.parent.mkdir()
    with out.open("a") as first:  # what a running sweep holds (child_runs.finished_rows)
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = refusal("guard_spread.py", ["--seeds", "0", "--threads", "1", "--steps", "1", "--out", str(out)])
    assert message == f"{out}: another sweep is appending to it; wait for it to end, or give another --out"
    assert out.read_text() == ""


def test_name_mode_from_another_folder_names_the_missing_demo_files_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its defaults are demo_out/... under the repository's root
    assert refusal("name_mode.py", []) == ("demo_out/bbu/val/val.jsonl: cannot open dataset: No such file or directory "
                                           "(run `make demo`, or give --checkpoint and --gt)")
    (tmp_path / "val.jsonl").write_text("", encoding="utf-8")
    assert refusal("name_mode.py", ["--gt", "val.jsonl"]).startswith("demo_out/bbu/run/final: no such checkpoint folder")


@pytest.mark.parametrize("script, args", [
    ("stage_b.py", ["--checkpoint", "nope", "--val", "1"]),
    ("query_coverage.py", ["--checkpoint", "nope", "--val", "val.jsonl"]),
    ("small_parts.py", ["--checkpoint", "nope", "--scene", "small-shapes", "--n-val", "1"]),
    ("inspection.py", ["--checkpoint", "nope", "--closeups", "1", "--wide", "0"]),
    ("caption_refit.py", ["--checkpoint", "nope", "--train", "train.jsonl", "--out", "refit", "--steps", "1"]),
])
def test_a_missing_checkpoint_is_one_line_before_any_photo_is_rendered(script, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_bench_in_process(BENCH / script, args)
    assert code == 2 and f"{script}: error: nope: no such checkpoint folder" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_inspection_removes_its_temporary_photos_and_predictions(trained_checkpoint, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its default work folder is made
    code, out, err = run_bench_in_process(BENCH / "inspection.py", [
        "--checkpoint", str(trained_checkpoint), "--seeds", "9001", "--closeups", "1", "--wide", "0", "--size", "224x168"])
    assert code == 0, err[-3000:]
    assert "seed 9001: 1 photos" in out
    assert list(tmp_path.iterdir()) == []
