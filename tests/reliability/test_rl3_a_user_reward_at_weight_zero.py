"""`grpo.rewards.user_function` named with `grpo.rewards.user` at 0 (its default): the function is never called, and
the term pays nothing. Before, nothing said so (`bbuvl config check` called the config valid, and a user who named a
function and forgot its weight trained without it); yet the start imported it and the run's record held its code, so a
resume after an edit to a module the run never called was refused as "reward code changed", and a module that no
longer imports stopped the run."""

import sys
import textwrap

import pytest

from bbuvl.rl.start_notes import grpo_ignores
from bbuvl.rl.trainer import train_grpo
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")

SAID = ("grpo.rewards.user_function (rl3_unweighted:size): grpo.rewards.user is 0, so the function is never called and "
        "pays no reward")


@pytest.fixture()
def reward_module(tmp_path, monkeypatch):
    """`write(body)`: the module `rl3_unweighted` on the import path, its `size(truth, answer)` returning `body`."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(body: str) -> None:
        (folder / "rl3_unweighted.py").write_text(textwrap.dedent(f"""\
            def size(truth, answer):
                return {body}
            """), encoding="utf-8")
        sys.modules.pop("rl3_unweighted", None)

    yield write
    sys.modules.pop("rl3_unweighted", None)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_user_function_without_its_weight_is_said_unused_and_its_edits_do_not_block_a_resume(grpo_config,
                                                                                                  reward_module, tmp_path):
    reward_module("len(answer) / 10")
    cfg = grpo_config("training.max_steps=1", "training.save_steps=1", "grpo.rewards.user=0",
                      "grpo.rewards.user_function=rl3_unweighted:size")
    assert [p for p in grpo_ignores(cfg) if SAID in p], grpo_ignores(cfg)
    train_grpo(cfg, progress=False)
    reward_module("1 / 0")  # edited since: the run never called it
    longer = cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": 2})})
    history = train_grpo(longer, resume=True, progress=False)["history"]
    assert [h["step"] for h in history if "reward" in h] == [1, 2]
    assert not any("reward_user" in h for h in history)
    (tmp_path / "code" / "rl3_unweighted.py").write_text("raise ImportError('gone')\n", encoding="utf-8")
    sys.modules.pop("rl3_unweighted", None)
    train_grpo(cfg.model_copy(update={"training": cfg.training.model_copy(update={"output_dir": str(tmp_path / "b")})}),
               progress=False)  # a module that no longer imports: never imported
