"""A GRPO resume whose every save was cut short (killed half-way) said 'no complete checkpoint' and no next step: it
says to start the run over (without --resume, with --overwrite), and that start runs."""

import shutil

import pytest

from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_dir import RunDirError
from tests.rl.test_grpo_trainer import grpo_config, grpo_config_at  # noqa: F401 - the fixture

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

RUN = ("training.max_steps=2", "training.save_steps=1", "grpo.beta=0")


@pytest.fixture(scope="module")
def saved(trained_checkpoint, small_dataset, tmp_path_factory):
    """A GRPO run of 2 steps saved at each, trained once: each test cuts the saves of a copy of its own."""
    out = tmp_path_factory.mktemp("saved") / "grpo"
    train_grpo(grpo_config_at(trained_checkpoint, small_dataset, out)(*RUN), progress=False)
    return out


@pytest.fixture()
def cfg(saved, grpo_config, tmp_path):
    """The config of the saved run, and the run copied where it says."""
    shutil.copytree(saved, tmp_path / "grpo")
    return grpo_config(*RUN)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_whose_saves_were_all_cut_says_to_start_over_and_that_start_runs(cfg, tmp_path):
    for step in (1, 2):  # each save killed before HF wrote its trainer_state.json, which it writes last
        (tmp_path / "grpo" / f"checkpoint-{step}" / "trainer_state.json").unlink()
    with pytest.raises(RunDirError) as e:
        train_grpo(cfg, resume=True, progress=False)
    assert str(e.value) == (
        f"--resume: no complete checkpoint-N folder in {tmp_path / 'grpo'}; checkpoint-2: no trainer_state.json (the save "
        "did not finish); checkpoint-1: no trainer_state.json (the save did not finish). The run saved no step whole "
        "(a save killed half-way leaves such a folder), so it cannot be continued: start it over by running the same "
        "command without --resume and with --overwrite (it removes checkpoint-1, checkpoint-2 and the run's other files "
        "there), or train into another training.output_dir to keep them")
    train_grpo(cfg, overwrite=True, progress=False)  # as said
    assert sorted(p.name for p in (tmp_path / "grpo").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (tmp_path / "grpo" / "checkpoint-2" / "trainer_state.json").is_file()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_from_a_cut_save_names_the_newest_checkpoint_beside_it_that_resumes(cfg, tmp_path):
    cut = tmp_path / "grpo" / "checkpoint-2"
    (cut / "trainer_state.json").unlink()  # the save killed before HF wrote it, last
    with pytest.raises(RunDirError) as e:
        train_grpo(cfg, resume=str(cut), progress=False)
    whole = tmp_path / "grpo" / "checkpoint-1"
    assert str(e.value) == (f"--resume-from {cut}: cannot resume from it (no trainer_state.json (the save did not "
                            f"finish)); the newest checkpoint beside it that can be resumed is {whole}: pass "
                            f"--resume-from {whole}")
    train_grpo(cfg, resume=str(whole), progress=False)  # as said: step 2 trained and saved again, whole this time
    assert (cut / "trainer_state.json").is_file() and (tmp_path / "grpo" / "final" / "model.safetensors").is_file()
