"""Training's start-up parses each dataset file once: the checks before the output folder is claimed (photo folders,
validation held out), the datasets, the label vocabulary and the caption refit's photos share what was read."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from bbuvl.train.trainer import build_run, train

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]

_WATCHED: dict[str, int] = {}  # resolved path -> times the JSONL reader opened it while a test watches it


def _reading_jsonl() -> bool:
    """Whether the open under way is the JSONL reader's (data/schema.py); hashing a file for run.json opens it too."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "iter_json_lines":
            return True
        frame = frame.f_back
    return False


def _count_parses(event: str, args: tuple) -> None:
    if event == "open" and _WATCHED and isinstance(args[0], (str, Path)):
        key = str(Path(args[0]).resolve())
        if key in _WATCHED and _reading_jsonl():
            _WATCHED[key] += 1


sys.addaudithook(_count_parses)  # hooks cannot be removed: it counts only while _WATCHED names files


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_data_file_is_parsed_once_from_the_first_check_to_the_first_step(run_config, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    refit = data / "refit.jsonl"
    shutil.copy(data / "train.jsonl", refit)
    files = [data / "train.jsonl", data / "val.jsonl", data / "teachers.jsonl", refit]
    # data.max_length cuts some answers: the warning names each one's file:line, which used to read the file again.
    cfg = run_config(f"data.train={files[0]}", f"data.val={files[1]}", f"data.teachers={files[2]}",
                     "data.teacher_ratio=0.5", "data.max_length=300", "training.max_steps=1",
                     "detection.caption_refit.steps=1", "detection.caption_refit.min_iou=0.01", f"detection.caption_refit.photos={refit}")
    _WATCHED.update({str(f.resolve()): 0 for f in files})
    try:
        result = train(cfg, progress=False)
    finally:
        opened = dict(_WATCHED)
        _WATCHED.clear()
    assert opened == {str(f.resolve()): 1 for f in files}
    assert result["answers_truncated"] > 0
    images = {n + 1: json.loads(text)["images"][0] for n, text in enumerate(files[0].read_text().splitlines())}
    run = build_run(cfg)
    assert [images[s.student.line] for s in run.train_dataset.sources] == [s.student.record.image
                                                                          for s in run.train_dataset.sources]
    lines = {f"{files[0]}:{s.student.line}" for s in run.train_dataset.sources}
    assert run.train_dataset.truncated and all(m.split(": ", 1)[0] in lines for m in run.train_dataset.truncated)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_hierarchys_faults_are_found_once_for_the_counts_and_the_fault_weight(run_config, tmp_path, monkeypatch):
    """`bbuvl train` found them for the fault counts it prints and again for loss.fault_weight's captions."""
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.config import dump_config
    from bbuvl.data.faults import Faults

    calls = []
    load = Faults.load

    def counted(*args, **kwargs):
        calls.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(Faults, "load", counted)  # the real loader, counted
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config("training.max_steps=1", "loss.fault_weight=2")), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    assert "data.train:" in result.output and len(calls) == 1
