"""A resume under another program (bbu-vl's files, torch, transformers...: bbuvl/versions.py) goes on, says so once,
and run.json records at which step the program changed; an earlier record, without the program, resumes as before.
Another install is stood in for by the program run.json records, as one it wrote would."""

from __future__ import annotations

import json
import logging

from bbuvl.train.run_record import RUN_RECORD
from bbuvl.train.trainer import train
from bbuvl.versions import software
from tests.callbacks import StopAt


def stopped_run(run_config, tmp_path):  # noqa: ANN001, ANN201 - the fixture's maker; a Config
    cfg = run_config("training.max_steps=4", "training.save_steps=2", f"training.output_dir={tmp_path / 'run'}")
    train(cfg, progress=False, callbacks=[StopAt(2)])
    return cfg


def test_a_resume_under_another_program_goes_on_says_so_and_records_the_step(run_config, tmp_path, caplog):
    cfg = stopped_run(run_config, tmp_path)
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


def test_a_record_from_before_records_named_the_program_resumes_without_a_word(run_config, tmp_path, caplog):
    cfg = stopped_run(run_config, tmp_path)
    record_path = tmp_path / "run" / RUN_RECORD
    record = json.loads(record_path.read_text(encoding="utf-8"))
    del record["software"]
    record_path.write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        train(cfg, resume=True, progress=False)
    assert not [r for r in caplog.records if "another program" in r.getMessage()]
    assert "resumed_under" not in json.loads(record_path.read_text(encoding="utf-8"))
