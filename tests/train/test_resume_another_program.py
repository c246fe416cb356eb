"""A resume under another program (bbu-vl's files, torch, transformers...: bbuvl/versions.py) goes on, says so once,
and run.json records at which step the program changed; an earlier record, without the program, resumes as before.
Another install is stood in for by the program run.json records, as one it wrote would."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from bbuvl.train.run_record import CHECKPOINT_RECORD, RUN_RECORD
from bbuvl.train.trainer import train
from bbuvl.versions import software
from tests.callbacks import StopAt
from tests.conftest import run_config_at


STOPPED_AT_2 = ("training.max_steps=4", "training.save_steps=2")


@pytest.fixture(scope="module")
def stopped_at_2(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """A run of 4 steps stopped after step 2 as a kill leaves it, trained once for the module: each test resumes a
    copy of it."""
    out = tmp_path_factory.mktemp("stopped-at-2") / "run"
    train(run_config_at(tiny_model_dir, small_dataset, out)(*STOPPED_AT_2), progress=False, callbacks=[StopAt(2)])
    return out


def stopped_run(run_config, stopped_at_2, tmp_path):  # noqa: ANN001, ANN201 - the fixture's maker; a Config
    shutil.copytree(stopped_at_2, tmp_path / "run", symlinks=True)
    return run_config(*STOPPED_AT_2, f"training.output_dir={tmp_path / 'run'}")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_under_another_program_goes_on_says_so_and_records_the_step(run_config, stopped_at_2, tmp_path,
                                                                              caplog):
    cfg = stopped_run(run_config, stopped_at_2, tmp_path)
    record_path = tmp_path / "run" / RUN_RECORD
    record = json.loads(record_path.read_text(encoding="utf-8"))
    assert record["software"] == software()
    then = record["software"] | {"torch": "1.0.0"}
    record["software"] = then
    record_path.write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        result = train(cfg, resume=True, progress=False)
    assert result["final"] is not None
    said = [r.getMessage() for r in caplog.records if "another program" in r.getMessage()]
    assert len(said) == 1 and "torch 1.0.0 (now " in said[0], said
    after = json.loads(record_path.read_text(encoding="utf-8"))
    assert after["resumed_under"] == [{"step": 2, "software": software(), "was": then}]
    assert after["software"] == software()  # the next resume compares with the program it last ran under


@pytest.mark.parametrize("record", ["without the program", "none"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_an_older_bbuvl_recorded_without_its_program_is_said_resumed_under_another_and_recorded(
        run_config, stopped_at_2, tmp_path, caplog, record):
    # As the bbu-vl of three days before wrote run.json (its config and inputs, no program), or of seven, which wrote
    # none: the resume said nothing, and run.json was left naming no program, or named the one now running as the run's.
    cfg = stopped_run(run_config, stopped_at_2, tmp_path)
    record_path = tmp_path / "run" / RUN_RECORD
    (tmp_path / "run" / "checkpoint-2" / CHECKPOINT_RECORD).unlink()  # no copy of a record that bbu-vl never wrote
    if record == "none":
        record_path.unlink()
    else:
        written = json.loads(record_path.read_text(encoding="utf-8"))
        record_path.write_text(json.dumps({k: written[k] for k in ("config", "inputs")}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        train(cfg, resume=True, progress=False)
    said = [r.getMessage() for r in caplog.records if "another program" in r.getMessage()]
    assert len(said) == 1 and "not recorded" in said[0] and "an older bbu-vl" in said[0], said
    after = json.loads(record_path.read_text(encoding="utf-8"))
    assert after["resumed_under"] == [{"step": 2, "software": software(), "was": None}]
    assert after["software"] == software()
    caplog.clear()  # the next resume, under the program now recorded, goes on without a word
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        train(cfg, resume=True, progress=False)  # from checkpoint-4, the last step: nothing left to train
    assert not [r for r in caplog.records if "another program" in r.getMessage()]
    assert len(json.loads(record_path.read_text(encoding="utf-8"))["resumed_under"]) == 1
