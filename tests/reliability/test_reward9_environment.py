"""The environment variables a GRPO reward reads by a literal name are recorded by the SHA-256 of their values (a value
may be a key to a service): a resume with one set otherwise is refused as changed code, naming the variable; one
read by a computed name is listed with the unchecked imports."""

from __future__ import annotations

import pytest

from bbuvl.train.run_record import RUN_RECORD, ResumeMismatch, check_resume, write_run_record
from tests.reliability.test_reward9_data_files import _config, _entry, code  # noqa: F401 - the fixture


def test_an_environment_variable_the_reward_reads_is_recorded_by_digest_and_another_value_is_refused(
        code, tmp_path, monkeypatch):
    """`REWARD_SCALE=0.2 bbuvl train ... --resume` went on with rewards scaled otherwise than the run's first steps,
    without a word; the value itself stays out of run.json."""
    code("rw9_rewards.py", """\
        import os


        def size(truth, answer):
            if "RW9_STRICT" in os.environ:
                return 0.0
            return float(os.environ.get("RW9_SCALE", "1")) * float(os.getenv("RW9_BONUS", "0")) * len(answer)
        """)
    monkeypatch.setenv("RW9_SCALE", "secret-0.1")
    monkeypatch.delenv("RW9_STRICT", raising=False)
    monkeypatch.delenv("RW9_BONUS", raising=False)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    text = (out / RUN_RECORD).read_text(encoding="utf-8")
    recorded = _entry(out)["environment"]
    assert sorted(recorded) == ["RW9_BONUS", "RW9_SCALE", "RW9_STRICT"] and recorded["RW9_STRICT"] is None
    assert "secret-0.1" not in text
    check_resume(cfg, out / "checkpoint-2")

    monkeypatch.setenv("RW9_SCALE", "0.2")
    monkeypatch.setenv("RW9_STRICT", "1")
    with pytest.raises(ResumeMismatch) as refused:
        check_resume(cfg, out / "checkpoint-2")
    assert ("rw9_rewards:size: environment variable RW9_SCALE, which its code reads, holds another value than when the "
            "run started") in str(refused.value)
    assert "environment variable RW9_STRICT, which its code reads, is set now" in str(refused.value)
    assert "--accept-reward-code" in str(refused.value)
    monkeypatch.setenv("RW9_SCALE", "secret-0.1")
    monkeypatch.delenv("RW9_STRICT")
    check_resume(cfg, out / "checkpoint-2")


def test_an_environment_variable_read_by_a_computed_name_is_listed_as_unchecked(code, tmp_path):
    """`os.environ[f"RW9_{kind}"]` names no variable the record can hold."""
    code("rw9_rewards.py", """\
        import os


        def size(truth, answer, kind="SCALE"):
            return float(os.environ.get(f"RW9_{kind}", "1")) * len(answer)
        """)
    out = tmp_path / "grpo"
    write_run_record(out, _config(out))
    entry = _entry(out)
    assert entry["environment"] == {}
    assert entry["unchecked_imports"] == ["rw9_rewards line 5: os.environ.get(f'RW9_{kind}', '1')"]


def test_the_variables_that_tell_one_process_of_a_run_from_another_are_not_recorded(code, tmp_path, monkeypatch):
    """A reward logging from its first process only reads RANK: recorded, the resume was refused in every process
    but the one that wrote run.json, whose RANK it held. The count of processes is checked as such."""
    code("rw9_rewards.py", """\
        import os


        def size(truth, answer):
            if os.environ.get("RANK", "0") == "0" and os.getenv("LOCAL_RANK") is not None:
                print(len(answer))
            return float(len(answer))
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert _entry(out)["environment"] == {}
    monkeypatch.setenv("RANK", "1")  # the second process of the same resume
    monkeypatch.setenv("LOCAL_RANK", "1")
    check_resume(cfg, out / "checkpoint-2")
