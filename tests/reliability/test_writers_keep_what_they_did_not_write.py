"""Class 1: predict appends only to its own output, one run at a time, repairs it on resume; outputs are atomic."""

import errno
import json
import os
import random
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.atomic import write_text_atomic
from bbuvl.cli import app
from bbuvl.eval.predictions import read_predictions
from bbuvl.infer.batch import PredictJob, run_predictions
from bbuvl.infer.output import OutputError, manifest_path
from tests.reliability.faults import disk_full_after, fake_lines, small_tmpfs, start_slow_run, wait_for

PATHS = [f"/photos/img{i}.jpg" for i in range(12)]


def job(out: Path, inputs=PATHS, checkpoint="/ckpt") -> PredictJob:
    return PredictJob(list(inputs), out, "head", 1, source="/photos", checkpoint=checkpoint)


def images_in(out: Path) -> list[str]:
    return [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()]


def test_a_ground_truth_file_given_as_out_is_refused_and_left_byte_for_byte(tmp_path):
    gt = tmp_path / "val.jsonl"
    gt.write_bytes(b'{"image": "a.jpg", "width": 4, "height": 4, "objects": []}\n{"image": "b.jpg", "objects": []}')  # no final newline
    before = gt.read_bytes()
    with pytest.raises(OutputError, match="no manifest beside it .*: written by another tool"):
        run_predictions(job(gt), fake_lines)
    assert gt.read_bytes() == before and not manifest_path(gt).exists()


def test_the_cli_refuses_a_foreign_out_before_loading_any_model(tmp_path):
    gt = tmp_path / "train.jsonl"
    gt.write_text('{"student": {"image": "a.jpg"}}\n', encoding="utf-8")
    photos = tmp_path / "photos"
    photos.mkdir()
    r = CliRunner().invoke(app, ["predict", "-c", str(tmp_path / "no-such-ckpt"), "-i", str(photos), "-o", str(gt), "--mode", "head"])
    assert r.exit_code == 2 and "written by another tool" in r.output and "Traceback" not in r.output
    assert gt.read_text(encoding="utf-8") == '{"student": {"image": "a.jpg"}}\n'


def test_out_pointing_at_a_folder_is_a_clean_error(tmp_path):
    r = CliRunner().invoke(app, ["predict", "-c", str(tmp_path), "-i", str(tmp_path), "-o", str(tmp_path), "--mode", "head"])
    assert r.exit_code == 2 and "is a folder" in r.output


def test_an_output_of_another_checkpoint_is_refused(tmp_path):
    out = tmp_path / "pred.jsonl"
    run_predictions(job(out, PATHS[:3]), fake_lines)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="another run.*checkpoint"):
        run_predictions(job(out, checkpoint="/other-ckpt"), fake_lines)
    assert out.read_bytes() == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_second_run_on_the_same_out_refuses_naming_the_first_runs_pid(tmp_path):
    out = tmp_path / "pred.jsonl"
    first = start_slow_run(out, n=len(PATHS), delay=0.3)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0)
        with pytest.raises(OutputError, match=f"pid {first.pid}"):
            run_predictions(job(out), fake_lines)
    finally:
        first.kill()
        first.wait()
    run_predictions(job(out), fake_lines)  # the kernel dropped the killed run's lock: no stale lock to clean
    assert sorted(images_in(out)) == sorted(PATHS) and len(images_in(out)) == len(PATHS)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_killed_at_random_points_then_rerun_has_every_image_exactly_once(tmp_path):
    out = tmp_path / "pred.jsonl"
    rng = random.Random(0)
    for _ in range(3):
        proc = start_slow_run(out, n=len(PATHS), delay=0.02, pad=200_000)  # big lines: a kill often lands mid-line
        size = rng.randint(1, 1_500_000)
        wait_for(lambda: (out.exists() and out.stat().st_size > size) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_predictions(job(out), lambda c: fake_lines(c, pad=200_000))
    assert sorted(images_in(out)) == sorted(PATHS) and len(images_in(out)) == len(PATHS)
    assert len(read_predictions(out)) == len(PATHS)


def test_a_damaged_middle_line_and_a_repeated_image_are_repaired_on_resume(tmp_path):
    out = tmp_path / "pred.jsonl"
    run_predictions(job(out, PATHS[:4]), fake_lines)
    lines = out.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:25]  # garbled in the middle
    lines.append(lines[2])  # the same image twice
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match="pred.jsonl:2:"):
        read_predictions(out)  # eval refuses the damaged file ...
    calls = []
    run_predictions(job(out, PATHS[:4]), lambda c: calls.append(c[0]) or fake_lines(c))
    assert calls == [PATHS[1]]  # ... resume drops the damaged line and predicts only that image again
    assert sorted(images_in(out)) == sorted(PATHS[:4]) and len(read_predictions(out)) == 4


def test_an_injected_enospc_on_predict_is_one_clean_error_and_resumes_without_loss(tmp_path, monkeypatch):
    out = tmp_path / "pred.jsonl"
    disk_full_after(monkeypatch, 3)
    with pytest.raises(OSError, match=r"pred.jsonl: writing predictions failed.*re-run the same command to resume"):
        run_predictions(job(out), fake_lines)
    monkeypatch.undo()
    run_predictions(job(out), fake_lines)
    assert sorted(images_in(out)) == sorted(PATHS) and len(images_in(out)) == len(PATHS)


def test_predict_on_a_really_full_disk_stops_cleanly_and_finishes_once_there_is_room(tmp_path):
    disk = tmp_path / "disk"
    with small_tmpfs(disk, kib=512):
        filler = disk / "filler.bin"
        filler.write_bytes(b"\0" * 300 * 1024)
        out = disk / "pred.jsonl"
        with pytest.raises(OSError) as e:
            run_predictions(job(out), lambda c: fake_lines(c, pad=30_000))
        assert e.value.errno == errno.ENOSPC and "re-run the same command" in str(e.value)
        assert not [p for p in disk.iterdir() if p.suffix == ".tmp"]
        partial = images_in_tolerant(out)
        with pytest.raises(OSError, match="pred.jsonl: writing failed .* the previous file is kept"):
            run_predictions(job(out), lambda c: fake_lines(c, pad=30_000))  # still full: the repair cannot even start
        filler.unlink()  # free space
        run_predictions(job(out), lambda c: fake_lines(c, pad=30_000))
        assert 1 <= len(partial) < len(PATHS)
        assert sorted(images_in(out)) == sorted(PATHS) and len(images_in(out)) == len(PATHS)


def images_in_tolerant(out: Path) -> list[str]:
    found = []
    for line in out.read_bytes().splitlines():
        try:
            found.append(json.loads(line)["image"])
        except ValueError:
            pass
    return found


def test_an_atomic_write_on_a_full_disk_keeps_the_previous_file(tmp_path):
    disk = tmp_path / "disk"
    with small_tmpfs(disk, kib=64):
        metrics = disk / "metrics.json"
        metrics.write_text('{"AP50": 0.5}\n', encoding="utf-8")
        with pytest.raises(OSError) as e:
            write_text_atomic(metrics, "x" * 200_000)
        assert e.value.errno == errno.ENOSPC
        assert metrics.read_text(encoding="utf-8") == '{"AP50": 0.5}\n'
        assert [p.name for p in disk.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_an_injected_enospc_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"AP50": 0.5}\n', encoding="utf-8")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_text_atomic(metrics, '{"AP50": 0.7}\n')
    assert metrics.read_text(encoding="utf-8") == '{"AP50": 0.5}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
