"""`bbuvl train` with training.method: grpo given what it cannot train with: each refusal one line naming the key or
the function, before any weights load, and a previous run --overwrite would replace kept whole."""

import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import CHECKPOINT_RECORD
from tests.rl.test_grpo_trainer import grpo_config, grpo_config_at  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = pytest.mark.filterwarnings("ignore")


def invoke(cfg, tmp_path, *args: str) -> tuple[int, str]:
    """`bbuvl train` on `cfg` written to a file: (exit code, output with whitespace removed)."""
    path = tmp_path / "grpo.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path), *args])
    return result.exit_code, "".join(result.output.split())


@pytest.fixture(scope="module")
def one_step_run(trained_checkpoint, small_dataset, tmp_path_factory):
    """A finished one-step GRPO run, trained once for the module: the tests only read it, each from its own copy."""
    out = tmp_path_factory.mktemp("grpo-one-step") / "grpo"
    train_grpo(grpo_config_at(trained_checkpoint, small_dataset, out)("training.max_steps=1", "training.save_steps=1"),
               progress=False)
    return out


@pytest.fixture()
def previous_run(one_step_run, tmp_path):
    """A finished one-step GRPO run in the config's output folder, and its files."""
    shutil.copytree(one_step_run, tmp_path / "grpo", symlinks=True)
    before = _tree(tmp_path / "grpo")
    assert "final/model.safetensors" in before and "checkpoint-1/trainer_state.json" in before
    return before


@pytest.mark.parametrize("name, says", [
    ("not_finite", "not_finitereturnednan:arewardmustbeafinitenumber"),
    ("per_box", "per_boxreturned[1.0,1.0,1.0](list),notanumber"),
    ("mean_size", "mean_sizeraised"),
    # Before: every step skipped as non-finite in float32, and the run ended with exit 0, its weights as they started.
    ("too_large", "too_largereturned1e+39:arewardmustliewithin±1e+18,astheobjectivecomputesinfloat32"),
    # Before: the run ended with exit code 3 and no word of where.
    ("exits", "exitsraised"),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_user_reward_that_gives_no_number_is_refused_at_the_start_and_overwrite_keeps_the_previous_run(
        grpo_config, tmp_path, previous_run, name, says):
    """A reward function returning NaN or a list was first called at the first step, once --overwrite had removed
    the previous run: only run.json and tb/ of the new one were left."""
    code, said = invoke(grpo_config(f"grpo.rewards.user_function=tests.rl.reward_fns:{name}"), tmp_path, "--overwrite")
    assert code == 2 and f"grpo.rewards.user_functiontests.rl.reward_fns:{says}" in said, said
    assert "Traceback" not in said and _tree(tmp_path / "grpo") == previous_run


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refused_grpo_start_with_overwrite_keeps_the_previous_run(grpo_config, tmp_path, previous_run):
    """GRPO read its photos, validation file and rewards once --overwrite had removed the previous run: a typo in
    data.val or a frame it cannot train in cost that run and started none."""
    out = tmp_path / "grpo"
    bad = {
        f"data.val={tmp_path / 'typo.jsonl'}": "data.val .*typo.jsonl: no such file",
        "model.max_pixels=100352": "is a checkpoint with its own coordinate frame",
        "grpo.rewards.user_function=tests.rl.reward_fns:no_such_function": "no_such_function",
    }
    for override, says in bad.items():
        with pytest.raises(ValueError, match=says):
            train_grpo(grpo_config("training.max_steps=1", override), progress=False, overwrite=True)
        assert _tree(out) == previous_run, override


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_reward_weight_past_what_float32_holds_stops_the_run_naming_the_weights(grpo_config, tmp_path):
    # A weight of 1e308 is a finite config value, and each weighted reward inf in float32. On a term every rollout
    # earns: a 2-step model's detection reward is 0 at step 1 in Qwen3-VL and Qwen3.5 (no box near a true one), and
    # 1e308 x 0 stopped nothing there.
    code, said = invoke(grpo_config("grpo.rewards.user=1e308", "grpo.rewards.user_function=tests.rl.reward_fns:one",
                                    "training.max_steps=1"), tmp_path)
    assert code == 2 and "arenotfiniteinthefloat32theobjectivecomputesin" in said and "user1e+308" in said, said


@pytest.mark.parametrize("where, says", [
    ("missing", "nosuchcheckpointfolder(GRPOstartsfromalocalfolder"),
    ("run", "atrainingrun'sfolder,notacheckpoint:giveitsfinal/"),
])
def test_a_start_checkpoint_that_is_not_there_names_model_path(grpo_config, trained_checkpoint, tmp_path, where, says):
    path = tmp_path / "nowhere" if where == "missing" else trained_checkpoint.parent
    code, said = invoke(grpo_config(f"model.path={path}"), tmp_path)
    assert code == 2 and f"model.path{path}:{says}" in said, said
    assert not (tmp_path / "grpo").exists()



@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_run_resumed_with_an_sft_config_and_the_reverse_says_the_method_differs(grpo_config, run_config, tmp_path,
                                                                                       previous_run):
    """Refused, but in a list of fifteen differing keys where training.method was one in the middle."""
    from bbuvl.train.trainer import train

    grpo_run, sft_run = tmp_path / "grpo", tmp_path / "sft"
    sft = run_config(f"training.output_dir={grpo_run}", "training.max_steps=2")
    for flags in (["--resume"], ["--resume-from", str(grpo_run / "checkpoint-1")]):
        code, said = invoke(sft, tmp_path, *flags)
        assert code == 2 and f"{grpo_run / 'checkpoint-1'}:therunwastrainedwithtraining.methodgrpo" \
                              f"({grpo_run / 'run.json'}),andthisconfigsayssft:aruncannotchangeitsmethod" in said, said
        assert "detection.num_queries" not in said
    assert _tree(grpo_run) == previous_run
    (grpo_run / "run.json").unlink()  # the record lost: the checkpoint's copy of it says what the run was
    code, said = invoke(sft, tmp_path, "--resume")
    assert code == 2 and f"trainedwithtraining.methodgrpo({grpo_run / 'checkpoint-1' / CHECKPOINT_RECORD})" in said, said
    (grpo_run / "checkpoint-1" / CHECKPOINT_RECORD).unlink()  # a run from before run records: its checkpoint's config
    code, said = invoke(sft, tmp_path, "--resume")
    assert code == 2 and f"trainedwithtraining.methodgrpo({grpo_run / 'checkpoint-1' / 'bbuvl.yaml'})" in said, said
    # The reverse: an SFT run resumed with a GRPO config.
    train(run_config(f"training.output_dir={sft_run}", "training.max_steps=1", "training.save_steps=1"), progress=False)
    before = _tree(sft_run)
    code, said = invoke(grpo_config(f"training.output_dir={sft_run}", "training.max_steps=2"), tmp_path, "--resume")
    assert code == 2 and "therunwastrainedwithtraining.methodsft" in said and "thisconfigsaysgrpo" in said, said
    assert _tree(sft_run) == before
