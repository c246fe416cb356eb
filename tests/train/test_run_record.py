"""run.json: a resume continues only the run it records, the number of processes it ran on included."""

import pytest

from bbuvl.train.run_record import ResumeMismatch, check_resume, write_run_record


def test_a_resume_on_another_number_of_processes_is_refused_naming_both(run_config, tmp_path, monkeypatch):
    """A run started on 2 processes resumed on 1 without a word: each step then averaged half the samples, in
    another order, while a change of training.per_device_batch_size, the same change per process, is refused."""
    cfg = run_config()
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    write_run_record(out, cfg)
    check_resume(cfg, out / "checkpoint-3")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ResumeMismatch, match=r"differs from .*run.json .*: processes \(WORLD_SIZE\) 2 \(now 1\)"):
        check_resume(cfg, out / "checkpoint-3")


def test_a_run_record_with_no_count_of_processes_resumes_and_a_bad_count_is_a_damaged_record(run_config, tmp_path):
    """A record written before processes were counted says nothing of them; a count that is no count is damage."""
    import json

    cfg = run_config()
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    write_run_record(out, cfg)
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del record["processes"]
    (out / "run.json").write_text(json.dumps(record), encoding="utf-8")
    check_resume(cfg, out / "checkpoint-3")
    record["processes"] = "two"
    (out / "run.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ResumeMismatch, match=r"run.json: damaged run record \(ValueError: processes is 'two'"):
        check_resume(cfg, out / "checkpoint-3")
