"""A GRPO run records the user's own modules its reward function imports (transitively, outside the standard library,
installed packages and bbuvl): a helper called from another module of the user's changed unseen, only the reward's
own file being recorded. `--accept-reward-code` resumes with code edited on purpose, naming what changed, and records
the new code for the next resume."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import CHECKPOINT_RECORD, RUN_RECORD, ResumeMismatch, check_resume
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree
from tests.user_code import user_code

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

MODULES = ("rl5_rewards", "rl5_helpers", "rl5_pkg", "rl5_pkg.deep")
REWARD = "grpo.rewards.user_function rl5_rewards:size"


@pytest.fixture()
def code(tmp_path, monkeypatch):
    """`write(scale)`: the user's code in its own folder on the import path: rl5_rewards.size calls rl5_helpers.scaled,
    which calls rl5_pkg.deep.SCALE (a package's module, imported relatively); each write is read afresh, as a new process
    would."""
    (tmp_path / "code" / "rl5_pkg").mkdir(parents=True)
    with user_code(tmp_path / "code", monkeypatch, MODULES) as write:
        write("rl5_rewards.py", """\
            import json

            from rl5_helpers import scaled


            def size(truth, answer):
                return scaled(len(answer))
            """)
        write("rl5_helpers.py", "from rl5_pkg import deep\n\n\ndef scaled(n):\n    return n * deep.SCALE\n")
        write("rl5_pkg/__init__.py", "from . import deep  # noqa: F401\n")
        yield lambda scale: write("rl5_pkg/deep.py", f"SCALE = {scale}\n")


def longer(cfg, steps: int):
    """The same config, asked for `steps` steps and saving each."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": steps, "save_steps": 1})})


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_helper_module_the_reward_imports_is_recorded_and_a_resume_with_it_edited_names_it(grpo_config, code,
                                                                                           tmp_path):
    deep = code("0.1")
    cfg = grpo_config("training.max_steps=2", "training.save_steps=2", "grpo.beta=0",
                      "grpo.rewards.user_function=rl5_rewards:size")
    train_grpo(cfg, progress=False)
    recorded = json.loads((tmp_path / "grpo" / RUN_RECORD).read_text("utf-8"))["code"]["grpo.rewards.user_function"]
    assert sorted(recorded["modules"]) == ["rl5_helpers", "rl5_pkg", "rl5_pkg.deep"]  # json: the stdlib, left out
    code("0.1")  # written again, the same code: resumes
    check_resume(longer(cfg, 3), tmp_path / "grpo" / "checkpoint-2")
    code("0.2")
    before = _tree(tmp_path / "grpo")
    with pytest.raises(ResumeMismatch) as refused:
        train_grpo(longer(cfg, 3), resume=True, progress=False)
    said = str(refused.value)
    assert f"{REWARD}: module rl5_pkg.deep '{deep}', which it imports, changed since the run started" in said
    assert "rl5_helpers" not in said and "pass --accept-reward-code" in said
    assert _tree(tmp_path / "grpo") == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_accept_reward_code_resumes_names_the_change_and_the_next_resume_checks_the_new_code(grpo_config, code,
                                                                                            tmp_path, caplog):
    deep = code("0.1")
    cfg = grpo_config("training.max_steps=2", "training.save_steps=2", "grpo.beta=0",
                      "grpo.rewards.user_function=rl5_rewards:size")
    train_grpo(cfg, progress=False)
    code("0.2")
    train_grpo(longer(cfg, 3), resume=True, progress=False, accept_code=True)
    change = f"{REWARD}: module rl5_pkg.deep '{deep}', which it imports, changed since the run started"
    assert change in caplog.text and "--accept-reward-code" in caplog.text
    record = json.loads((tmp_path / "grpo" / RUN_RECORD).read_text("utf-8"))
    assert record["code_accepted"] == [{"step": 2, "changes": [change]}]
    assert (tmp_path / "grpo" / "checkpoint-3" / CHECKPOINT_RECORD).read_bytes() == \
           (tmp_path / "grpo" / RUN_RECORD).read_bytes()
    check_resume(longer(cfg, 4), tmp_path / "grpo" / "checkpoint-3")  # the new code is the run's now
    code("0.1")  # back to the old code: a change again, refused without the flag
    with pytest.raises(ResumeMismatch, match="module rl5_pkg.deep .* changed since the run started"):
        check_resume(longer(cfg, 4), tmp_path / "grpo" / "checkpoint-3")


def test_accept_reward_code_is_refused_without_a_resume_and_for_an_sft_run(run_config, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(run_config()), encoding="utf-8")
    for args, says in ((["--accept-reward-code"], "pass--resumeor--resume-from"),
                       (["--resume", "--accept-reward-code"], "training.methodsfthasnorewardcode")):
        result = CliRunner().invoke(app, ["train", str(path), *args])
        said = "".join(result.output.split())
        assert result.exit_code == 2 and says in said, result.output
    assert not (tmp_path / "run").exists()


def test_recording_the_reward_code_imports_no_package_of_the_standard_library_or_installed(code, tmp_path):
    """Finding `a.b` imports package `a`: a reward importing an installed package's module where it is used (inside a
    function) had that package imported by the record of the run, its start-up side effects and minutes included."""
    from bbuvl.config import load_config
    from bbuvl.train.run_record import user_code

    code("0.1")
    rewards = tmp_path / "code" / "rl5_rewards.py"
    rewards.write_text(rewards.read_text("utf-8") + "\n\ndef serve():\n    import wsgiref.simple_server\n",
                       encoding="utf-8")
    cfg = load_config(None, ["training.method=grpo", "grpo.rewards.user=1", "grpo.rewards.user_function=rl5_rewards:size"])
    # As in a fresh process: another test of the session may have imported it; put back as it was after.
    loaded = {name: sys.modules.pop(name) for name in list(sys.modules) if name.partition(".")[0] == "wsgiref"}
    try:
        recorded = user_code(cfg)["grpo.rewards.user_function"]
        assert "wsgiref" not in sys.modules
    finally:
        sys.modules.update(loaded)
    assert sorted(recorded["modules"]) == ["rl5_helpers", "rl5_pkg", "rl5_pkg.deep"]


def test_a_resume_naming_another_reward_function_is_refused_without_offering_accept_reward_code(code, tmp_path):
    """The flag lets edited code through, not another function: a refusal for a renamed one offered it all the same,
    its phrase starting with the key's name as a code change's does."""
    from bbuvl.config import load_config
    from bbuvl.train.run_record import write_run_record

    code("0.1")
    (tmp_path / "code" / "rl5_rewards.py").write_text(
        "from rl5_helpers import scaled\n\n\ndef size(truth, answer):\n    return scaled(len(answer))\n\n\n"
        "def count(truth, answer):\n    return len(answer)\n", encoding="utf-8")
    out = tmp_path / "grpo"
    start = ["training.method=grpo", f"training.output_dir={out}", "grpo.rewards.user=1"]
    write_run_record(out, load_config(None, [*start, "grpo.rewards.user_function=rl5_rewards:size"]))
    (out / "checkpoint-2").mkdir()
    other = load_config(None, [*start, "grpo.rewards.user_function=rl5_rewards:count"])
    for accept in (False, True):
        with pytest.raises(ResumeMismatch) as refused:
            check_resume(other, out / "checkpoint-2", accept_code=accept)
        said = str(refused.value)
        assert "grpo.rewards.user_function 'rl5_rewards:size' (now 'rl5_rewards:count')" in said
        assert "--accept-reward-code" not in said
