"""The environment variables a GRPO reward reads by a literal name are recorded by the SHA-256 of their values (a value
may be a key to a service): a resume with one set otherwise is refused as changed code, naming the variable; one
read by a computed name is listed with the unchecked imports."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from bbuvl.config import load_config
from bbuvl.train.run_record import RUN_RECORD, ResumeMismatch, check_resume, write_run_record


@pytest.fixture()
def reward(tmp_path, monkeypatch):
    """The user's reward module `rw9_env` in its own folder on the import path, written from `text`."""
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(text: str):
        (tmp_path / "code").mkdir(exist_ok=True)
        (tmp_path / "code" / "rw9_env.py").write_text(textwrap.dedent(text), encoding="utf-8")
        sys.modules.pop("rw9_env", None)

    yield write
    sys.modules.pop("rw9_env", None)


def test_an_environment_variable_the_reward_reads_is_recorded_by_digest_and_another_value_is_refused(
        reward, tmp_path, monkeypatch):
    """`REWARD_SCALE=0.2 bbuvl train ... --resume` went on with rewards scaled otherwise than the run's first steps,
    without a word; the value itself stays out of run.json."""
    reward("""\
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
    cfg = load_config(None, ["training.method=grpo", f"training.output_dir={out}",
                             "grpo.rewards.user_function=rw9_env:size"])
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    text = (out / RUN_RECORD).read_text(encoding="utf-8")
    recorded = json.loads(text)["code"]["grpo.rewards.user_function"]["environment"]
    assert sorted(recorded) == ["RW9_BONUS", "RW9_SCALE", "RW9_STRICT"] and recorded["RW9_STRICT"] is None
    assert "secret-0.1" not in text
    check_resume(cfg, out / "checkpoint-2")

    monkeypatch.setenv("RW9_SCALE", "0.2")
    monkeypatch.setenv("RW9_STRICT", "1")
    with pytest.raises(ResumeMismatch) as refused:
        check_resume(cfg, out / "checkpoint-2")
    assert ("rw9_env:size: environment variable RW9_SCALE, which its code reads, holds another value than when the "
            "run started") in str(refused.value)
    assert "environment variable RW9_STRICT, which its code reads, is set now" in str(refused.value)
    assert "--accept-reward-code" in str(refused.value)
    monkeypatch.setenv("RW9_SCALE", "secret-0.1")
    monkeypatch.delenv("RW9_STRICT")
    check_resume(cfg, out / "checkpoint-2")


def test_an_environment_variable_read_by_a_computed_name_is_listed_as_unchecked(reward, tmp_path):
    """`os.environ[f"RW9_{kind}"]` names no variable the record can hold."""
    reward("""\
        import os


        def size(truth, answer, kind="SCALE"):
            return float(os.environ.get(f"RW9_{kind}", "1")) * len(answer)
        """)
    out = tmp_path / "grpo"
    write_run_record(out, load_config(None, ["training.method=grpo", f"training.output_dir={out}",
                                             "grpo.rewards.user_function=rw9_env:size"]))
    entry = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))["code"]["grpo.rewards.user_function"]
    assert entry["environment"] == {}
    assert entry["unchecked_imports"] == ["rw9_env line 5: os.environ.get(f'RW9_{kind}', '1')"]


def test_the_variables_that_tell_one_process_of_a_run_from_another_are_not_recorded(reward, tmp_path, monkeypatch):
    """A reward logging from its first process only reads RANK: recorded, the resume was refused in every process
    but the one that wrote run.json, whose RANK it held. The count of processes is checked as such."""
    reward("""\
        import os


        def size(truth, answer):
            if os.environ.get("RANK", "0") == "0" and os.getenv("LOCAL_RANK") is not None:
                print(len(answer))
            return float(len(answer))
        """)
    out = tmp_path / "grpo"
    cfg = load_config(None, ["training.method=grpo", f"training.output_dir={out}",
                             "grpo.rewards.user_function=rw9_env:size"])
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))["code"]["grpo.rewards.user_function"][
        "environment"] == {}
    monkeypatch.setenv("RANK", "1")  # the second process of the same resume
    monkeypatch.setenv("LOCAL_RANK", "1")
    check_resume(cfg, out / "checkpoint-2")
