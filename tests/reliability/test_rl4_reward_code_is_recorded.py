"""A GRPO run records its user reward function (grpo.rewards.user_function) by content, the file it is defined in and
its own source: compared by name only, a resume went on with edited code, its rewards paid by two functions."""

import shutil
import sys
import textwrap

import pytest

from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import ResumeMismatch, check_resume
from tests.rl.test_grpo_trainer import grpo_config, grpo_config_at  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

RUN = ("training.max_steps=2", "training.save_steps=2", "grpo.beta=0")


def _write(folder, body: str, helper: str = "1.0") -> None:
    """The module `rl4_rewards` in `folder`: `size(truth, answer)` returns `body` times `helper()`, read afresh."""
    (folder / "rl4_rewards.py").write_text(textwrap.dedent(f"""\
        def helper():
            return {helper}


        def size(truth, answer):
            return {body} * helper()
        """), encoding="utf-8")
    sys.modules.pop("rl4_rewards", None)


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    """The folder of the user reward module, on the import path for the module's tests."""
    folder = tmp_path_factory.mktemp("code")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        patch.setattr(sys, "dont_write_bytecode", True)  # a rewrite in the same second must not load a stale .pyc
        yield folder
    sys.modules.pop("rl4_rewards", None)


@pytest.fixture()
def reward_module(code):
    """`write(body)`: the user reward module `rl4_rewards` in `code`, whose function `size(truth, answer)` returns
    `body` and calls `helper()`; each write is read afresh, as a new process would."""
    yield lambda body, helper="1.0": _write(code, body, helper)
    sys.modules.pop("rl4_rewards", None)


@pytest.fixture(scope="module")
def sized_run(code, trained_checkpoint, small_dataset, tmp_path_factory):
    """A finished GRPO run rewarded by `rl4_rewards:size` as first written, trained once: each test resumes a copy."""
    _write(code, "len(answer) / 10")
    out = tmp_path_factory.mktemp("sized") / "grpo"
    train_grpo(grpo_config_at(trained_checkpoint, small_dataset, out)(*RUN, "grpo.rewards.user_function=rl4_rewards:size"),
               progress=False)
    return out


@pytest.mark.parametrize("body, helper, said", [
    ("len(answer) / 5", "1.0", "grpo.rewards.user_function rl4_rewards:size: its source changed since the run started"),
    ("len(answer) / 10", "2.0", "grpo.rewards.user_function rl4_rewards:size: the file it is defined in, '{file}', "
                                "changed since the run started (the function's own source is the same"),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_with_edited_reward_code_is_refused_naming_it(grpo_config, sized_run, reward_module, code,
                                                               tmp_path, body, helper, said):
    shutil.copytree(sized_run, tmp_path / "grpo")
    cfg = grpo_config(*RUN, "grpo.rewards.user_function=rl4_rewards:size")
    longer = cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": 3})})
    reward_module("len(answer) / 10")  # written again, the same code: resumes
    check_resume(longer, tmp_path / "grpo" / "checkpoint-2")
    module = code / "rl4_rewards.py"  # a comment and a blank line more: the same code, resumes
    module.write_text("# rewards for the rl4 runs\n\n" + module.read_text(encoding="utf-8").replace(
        "* helper()", "* helper()  # scaled"), encoding="utf-8")
    sys.modules.pop("rl4_rewards", None)
    check_resume(longer, tmp_path / "grpo" / "checkpoint-2")
    reward_module(body, helper)
    before = _tree(tmp_path / "grpo")
    with pytest.raises(ResumeMismatch) as e:
        train_grpo(longer, resume=True, progress=False)
    assert said.format(file=code / "rl4_rewards.py") in str(e.value)
    assert _tree(tmp_path / "grpo") == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_reward_that_is_a_callable_object_is_recorded_by_its_modules_file(grpo_config, reward_module, code, tmp_path):
    """inspect finds no source file for an object with __call__: its code went unrecorded, and edited, it resumed."""
    module = code / "rl4_rewards.py"
    reward_module("len(answer) / 10")
    module.write_text(module.read_text(encoding="utf-8") + textwrap.dedent("""

        class Size:
            def __call__(self, truth, answer):
                return size(truth, answer)


        sized = Size()
        """), encoding="utf-8")
    cfg = grpo_config(*RUN, "grpo.rewards.user_function=rl4_rewards:sized")
    train_grpo(cfg, progress=False)
    module.write_text(module.read_text(encoding="utf-8").replace("/ 10", "/ 5"), encoding="utf-8")
    sys.modules.pop("rl4_rewards", None)
    with pytest.raises(ResumeMismatch, match=rf"grpo.rewards.user_function rl4_rewards:sized: the file it is defined in, "
                                             rf"'{module}', changed since the run started"):
        check_resume(cfg, tmp_path / "grpo" / "checkpoint-2")
