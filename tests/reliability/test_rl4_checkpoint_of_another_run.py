"""A checkpoint of another GRPO run, trained on other data with the same settings, put in a run's folder in place of
its own: the checkpoint's bbuvl.yaml keeps the start's data section, so the comparison of its `training` and `grpo`
sections with run.json passed it, and the resume went on from the other run's weights and optimizer. The run record
it carries (run_record.json) names the other data."""

import shutil

import pytest

from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import CHECKPOINT_RECORD, ResumeMismatch
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_of_a_run_on_other_data_put_in_place_of_the_runs_own_is_refused(grpo_config, small_dataset,
                                                                                       tmp_path):
    data = shutil.copytree(small_dataset, tmp_path / "data")
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    other = data / "other.jsonl"  # one photo fewer, beside the photos it names
    other.write_text("".join(lines[:-1]), encoding="utf-8")
    common = ("training.max_steps=2", "training.save_steps=2", "grpo.beta=0")
    ours = grpo_config(*common, f"training.output_dir={tmp_path / 'ours'}", f"data.train={data / 'train.jsonl'}")
    train_grpo(ours, progress=False)
    train_grpo(grpo_config(*common, f"training.output_dir={tmp_path / 'theirs'}", f"data.train={other}"), progress=False)
    shutil.rmtree(tmp_path / "ours" / "checkpoint-2")
    shutil.copytree(tmp_path / "theirs" / "checkpoint-2", tmp_path / "ours" / "checkpoint-2")
    before = _tree(tmp_path / "ours")
    longer = ours.model_copy(update={"training": ours.training.model_copy(update={"max_steps": 3})})
    with pytest.raises(ResumeMismatch) as e:
        train_grpo(longer, resume=True, progress=False)
    assert (f"{tmp_path / 'ours' / 'checkpoint-2' / CHECKPOINT_RECORD} was recorded with data.train '{other}' of other "
            f"content than the run's record's '{data / 'train.jsonl'}' (a checkpoint of another run)") in str(e.value)
    assert _tree(tmp_path / "ours") == before
