"""The GRPO stage end to end on the tiny model: accumulation, exact resume, the CLI, what a checkpoint keeps."""

import contextlib
import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import load_model
from bbuvl.rl.trainer import METRICS, build_grpo_run, make_grpo_trainer, no_spread_warning, train_grpo
from bbuvl.train.weight_average import AVERAGE_FILE
from tests.callbacks import StopAt
from tests.rl.reference_check import assert_reference_is_the_start
from tests.train.test_resume_records import scalars
from tests.diagnostics.conftest import one_thread  # noqa: F401 - one torch thread, as the training tests

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture()
def grpo_config(trained_checkpoint, small_dataset, tmp_path):
    """`make(*overrides)`: GRPO from the session's tiny checkpoint (at its frame), 3 short rollouts per photo, a log
    per step."""
    return grpo_config_at(trained_checkpoint, small_dataset, tmp_path / "grpo")


def grpo_config_at(trained_checkpoint, small_dataset, out):
    """The `grpo_config` fixture's `make(*overrides)`, its run written to `out` (for a fixture wider than a test)."""

    def make(*overrides):
        return load_config(None, [
            f"model.path={trained_checkpoint}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
            "training.method=grpo",
            f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
            f"training.output_dir={out}", "training.per_device_batch_size=2",
            "training.gradient_accumulation_steps=1", "training.max_steps=2", "training.logging_steps=1",
            "training.save_steps=100", "training.bf16=false", "training.gradient_checkpointing=false",
            "training.use_cpu=true", "training.warmup_ratio=0", "training.lr.llm=1e-3", "training.lr.vision=1e-3",
            "training.lr.merger=1e-3", "training.lr.adapter=1e-3", "grpo.group_size=3", "grpo.max_new_tokens=48",
            "grpo.rewards.user=1.0", "grpo.rewards.user_function=tests.rl.reward_fns:answer_size", *overrides,
        ])

    return make


class _Grads(TrainerCallback):
    """Every parameter's gradient just before the first optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_type, advantages, logprobs", [("dapo", "answer", "vocabulary"), ("grpo", "answer", "vocabulary"),
                                                             ("dapo", "parts", "grammar")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_accumulating_two_micro_batches_of_one_photo_gives_the_gradient_of_one_batch_of_two(grpo_config, tmp_path,
                                                                                             loss_type, advantages, logprobs):
    common = ("training.max_steps=1", "training.max_grad_norm=1e9", f"grpo.loss_type={loss_type}",
              f"grpo.advantages={advantages}", f"grpo.logprobs={logprobs}", "grpo.beta=0.1")
    one, two = _Grads(), _Grads()
    train_grpo(grpo_config(*common, f"training.output_dir={tmp_path / 'b2'}"), progress=False, callbacks=[one])
    train_grpo(grpo_config(*common, f"training.output_dir={tmp_path / 'b1a2'}", "training.per_device_batch_size=1",
                           "training.gradient_accumulation_steps=2"), progress=False, callbacks=[two])
    assert one.grads.keys() == two.grads.keys()
    assert any(g.abs().max() > 1e-6 for g in one.grads.values())  # the rewards had spread: something to compare
    for name, g in one.grads.items():
        assert torch.allclose(g, two.grads[name], atol=1e-6, rtol=1e-4), name


def _logged(history):
    return {h["step"]: h for h in history if "loss" in h and "train_runtime" not in h}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_continues_rewards_loss_and_weights_exactly(grpo_config, tmp_path):
    common = ("training.max_steps=4", "training.save_steps=2", "grpo.beta=0.05")
    full = train_grpo(grpo_config(*common, f"training.output_dir={tmp_path / 'a'}"), progress=False)
    cfg_b = grpo_config(*common, f"training.output_dir={tmp_path / 'b'}")
    train_grpo(cfg_b, progress=False, callbacks=[StopAt(3)])  # step 3 logged past checkpoint-2, as a kill leaves it
    resumed = train_grpo(cfg_b, resume=True, progress=False)
    a, b = _logged(full["history"]), _logged(resumed["history"])
    assert sorted(k for k in b if k > 2) == [3, 4]
    curves = scalars(tmp_path / "b")  # TensorBoard shows one curve, the resumed run's
    assert curves["train/loss"] == scalars(tmp_path / "a")["train/loss"] and [s for s, _ in curves["train/reward"]] == [1, 2, 3, 4]
    for step in (3, 4):
        for key in ("loss", "reward", "reward_detection", "reward_user", "kl", "answer_length"):
            assert b[step][key] == pytest.approx(a[step][key], abs=1e-5), (step, key)
    wa, wb = load_model(full["final"])[0].state_dict(), load_model(resumed["final"])[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # byte-identical


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_inside_a_logging_window_logs_its_loss_rewards_and_kl_as_a_run_never_stopped(grpo_config, tmp_path):
    # Logged every 2 steps, resumed from step 3: step 4's window holds step 3, drawn and trained before the stop.
    common = ("training.max_steps=4", "training.save_steps=3", "training.logging_steps=2", "grpo.beta=0.05")
    full = train_grpo(grpo_config(*common, f"training.output_dir={tmp_path / 'a'}"), progress=False)
    cfg = grpo_config(*common, f"training.output_dir={tmp_path / 'b'}")
    train_grpo(cfg, progress=False, callbacks=[StopAt(3)])
    resumed = train_grpo(cfg, resume=True, progress=False)
    a, b = _logged(full["history"]), _logged(resumed["history"])
    assert sorted(a) == sorted(b) == [2, 4]
    for key in ("loss", *METRICS, "reward_detection", "reward_label", "reward_user"):
        assert b[4][key] == pytest.approx(a[4][key], abs=1e-6), key


@pytest.fixture(scope="module")
def averaged_run(trained_checkpoint, small_dataset, tmp_path_factory):
    """(config, result) of one GRPO run of 2 steps with a weight average, saving at step 2, and data.val to be scored
    only at its end (eval_steps past max_steps): the two tests that read it share it (neither writes in its folder)."""
    out = tmp_path_factory.mktemp("averaged") / "grpo"
    cfg = grpo_config_at(trained_checkpoint, small_dataset, out)(
        "training.ema_decay=0.5", "training.save_steps=2", f"data.val={small_dataset / 'val.jsonl'}",
        "training.eval_steps=200", "training.lr.detection=0")
    return cfg, train_grpo(cfg, progress=False)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_run_with_a_weight_average_saves_the_average(averaged_run):
    cfg, result = averaged_run
    saved = load_file(str(Path(cfg.training.output_dir) / "checkpoint-2" / AVERAGE_FILE))
    live = dict(load_model(Path(cfg.training.output_dir) / "checkpoint-2")[0].named_parameters())
    final = dict(load_model(result["final"])[0].named_parameters())
    assert saved and all(torch.equal(final[n], t) for n, t in saved.items())
    assert any(not torch.equal(live[n], t) for n, t in saved.items())


@pytest.fixture(scope="module")
def scored_run(trained_checkpoint, small_dataset, tmp_path_factory):
    """(config, result, printed lines) of one GRPO run of 2 steps with a KL term, scored on data.val after each step:
    the tests that only read a run's history and console share it (none writes in its folder)."""
    out = tmp_path_factory.mktemp("scored") / "grpo"
    cfg = grpo_config_at(trained_checkpoint, small_dataset, out)("grpo.beta=0.05", f"data.val={small_dataset / 'val.jsonl'}",
                                                                 "training.eval_steps=1")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # progress=False prints each log's line
        result = train_grpo(cfg, progress=False)
    return cfg, result, printed.getvalue().splitlines()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_reward_term_kl_length_clip_and_spread_are_logged_per_step(scored_run):
    history = scored_run[1]["history"]
    assert sorted(_logged(history)) == [1, 2]
    for h in _logged(history).values():
        for key in ("reward", "reward_detection", "reward_label", "reward_user", "kl", "answer_length", "clip_fraction",
                    "zero_spread_groups", "answer_objects", "cut_answers"):
            assert key in h, key
        assert 0 < h["answer_length"] <= 49 and 0 <= h["zero_spread_groups"] <= 1 and 0 <= h["cut_answers"] <= 1


def test_each_log_prints_the_reward_kl_and_answer_length_and_each_evaluation_its_reward(scored_run):
    # They were in history.json and TensorBoard only: the console showed the surrogate loss, and eval_reward nowhere
    _, result, printed = scored_run
    history = result["history"]
    for step, h in _logged(history).items():
        [line] = [p for p in printed if p.startswith(f"step {step}: loss ")]
        assert f"reward {h['reward']:.4g}  kl {h['kl']:.4g}  answer_length {h['answer_length']:.4g}  nan_skipped 0" in line
    evals = [h for h in history if "eval_reward" in h]
    assert [h["step"] for h in evals] == [1, 2]
    for h in evals:
        assert f"step {h['step']}: eval_reward {h['eval_reward']:.4g}" in printed


def test_bbuvl_train_runs_grpo_and_its_checkpoint_predicts_with_the_head_it_started_with(grpo_config, trained_checkpoint,
                                                                                     small_dataset, tmp_path):
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(dump_config(grpo_config()), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "GRPO" in result.output and "reward" in result.output
    final = tmp_path / "grpo" / "final"
    before, after = load_model(trained_checkpoint)[0], load_model(final)[0]
    head_before, head_after = before.detection_head.state_dict(), after.detection_head.state_dict()
    assert all(torch.equal(head_before[k], head_after[k]) for k in head_before)
    assert load_config(final / "bbuvl.yaml").training.method == "grpo"
    out = Predictor.load(final, device="cpu").predict([small_dataset / "images" / p.name
                                                        for p in sorted((small_dataset / "images").iterdir())[:1]],
                                                       mode="head")
    assert out[0].error is None


@pytest.mark.parametrize("override, message", [
    ("grpo.rewards.format=1.0", "rewards.format counts only when decoding is free"),
    ("grpo.rewards.user_function=nosuchmodule_xyz:f", "cannot import module 'nosuchmodule_xyz'"),
    ("grpo.group_size=1", "grpo.group_size"),
])
def test_a_bad_grpo_config_is_one_clear_line_before_any_training(grpo_config, tmp_path, override, message):
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(dump_config(grpo_config()), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(cfg), override])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "grpo" / "final").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_lora_grpo_trains_only_adapters_keeps_a_kl_to_them_switched_off_and_its_checkpoint_loads(grpo_config):
    result = train_grpo(grpo_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "grpo.beta=0.05"),
                        progress=False)
    logs = _logged(result["history"])
    assert logs[2]["kl"] > 0  # the adapters moved away from the weights they started on
    model = load_model(result["final"])[0]
    lora_b = [p for n, p in model.vlm.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_lora_grpo_measures_its_kl_against_the_start_though_the_vision_positions_train_beside_the_adapters(
        grpo_config, trained_checkpoint):
    cfg = grpo_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "grpo.beta=0.1")
    run = build_grpo_run(cfg)
    trainer = make_grpo_trainer(run, progress=False)
    trainer.train()
    start = load_model(trained_checkpoint)[0]
    # The vision positions train in full beside the adapters (training.lr.adapter), as SFT's LoRA trains them; the head
    # stays as it came. Before, the reference was the model with its adapters switched off: the moved positions in it.
    assert not torch.equal(run.model.vision_positions.proj.weight, start.vision_positions.proj.weight)
    head = run.model.detection_head.state_dict()
    assert all(torch.equal(v, head[k]) for k, v in start.detection_head.state_dict().items())
    assert_reference_is_the_start(run, trainer, start, cfg)
    # The reference holds what trains, not a second copy of the base weights peft froze
    frozen = {p.data_ptr() for p in run.model.vlm.parameters() if not p.requires_grad}
    assert frozen and frozen <= {p.data_ptr() for p in trainer.reference.vlm.parameters()}


def test_a_window_with_no_spread_blames_the_token_budget_only_where_it_ended_answers():
    grpo = load_config(None, ["training.method=grpo", "grpo.max_new_tokens=48", "grpo.group_size=4", "grpo.beta=0",
                              "grpo.rewards.detection=1", "grpo.rewards.label=0.5"]).grpo
    # Photos with no parts, every rollout an object of 32 tokens that earned 0: the budget was blamed, though a `[]`
    # would have earned the whole reward and no answer was closed by it
    wrote = {"reward": 0.0, "reward_detection": 0.0, "reward_label": 0.0, "answer_length": 32.0,
             "answer_objects": 1.0, "cut_answers": 0.0, "zero_spread_groups": 1.0}
    said = no_spread_warning(3, wrote, grpo)
    assert "budget too short" not in said and "raise it" not in said, said
    assert "No answer was ended by the token budget (grpo.max_new_tokens 48): each wrote its own end after 32.0 " \
           "tokens on average and 1 object(s) on average, and every photo's answers earned alike (reward_detection " \
           "0, reward_label 0); answers that differ need a higher grpo.temperature or grpo.group_size" in said, said
    empty = no_spread_warning(3, {**wrote, "answer_length": 2.0, "answer_objects": 0.0}, grpo)
    assert "each wrote its own end after 2.0 tokens on average and `[]`, no object" in empty, empty
    closed = no_spread_warning(3, {**wrote, "answer_length": 3.0, "answer_objects": 0.0, "cut_answers": 0.25}, grpo)
    assert "Answers averaged 3.0 tokens of grpo.max_new_tokens 48, and it ended 25% of them: a budget too short for " \
           "one object closes every answer as `[]` (raise it)" in closed, closed


def test_grpo_names_the_settings_it_reads_nothing_from(grpo_config, small_dataset):
    from bbuvl.rl.trainer import grpo_ignores

    assert grpo_ignores(grpo_config("training.lr.detection=0")) == []
    said = " ".join(grpo_ignores(grpo_config(f"data.teachers={small_dataset / 'teachers.jsonl'}", "data.collator=packed")))
    assert "data.teachers" in said and "training.lr.detection (0.0001): the head is frozen" in said
    assert "data.collator (packed)" in said
    # The monitors: set, they did nothing, unsaid; data.val past max_steps: said ignored, then scored at the end
    said = " ".join(grpo_ignores(grpo_config("monitor.early_stopping_metric=eval_reward", "training.max_steps=3",
                                             "training.eval_steps=10", f"data.val={small_dataset / 'val.jsonl'}")))
    assert "monitor.early_stopping_metric: GRPO runs neither the training-health monitors nor early stopping" in said
    assert "data.val" not in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grpo_measures_the_reward_on_data_val_every_eval_steps_as_heldout_reward_does(scored_run, small_dataset):
    from bbuvl.data.labels import Hierarchy
    from bbuvl.rl.evaluate import heldout_reward

    cfg, result, _ = scored_run
    evals = {h["step"]: h for h in result["history"] if "eval_reward" in h}
    assert sorted(evals) == [1, 2]
    assert {k for k in evals[2] if k.startswith("eval_")} == {"eval_reward", "eval_reward_detection", "eval_reward_label",
                                                              "eval_reward_user"}
    # The last pass scored the weights the run saved: the same greedy answers as the checkpoint gives afterwards.
    after = heldout_reward(Predictor.load(result["final"], device="cpu"), small_dataset / "val.jsonl", cfg.grpo.rewards,
                           Hierarchy.load(cfg.data.hierarchy))
    for term, value in after.items():
        assert evals[2]["eval_reward" if term == "reward" else f"eval_reward_{term}"] == pytest.approx(value, abs=1e-6)


def test_grpo_measures_data_val_at_the_end_when_eval_steps_is_past_max_steps_and_says_nothing_of_it(averaged_run):
    # Before: "data.val ...: the run stops at training.max_steps (2) before the first", then the reward was measured
    from bbuvl.rl.trainer import grpo_ignores

    cfg, result = averaged_run
    assert cfg.training.eval_steps == 200 and cfg.data.val is not None
    assert grpo_ignores(cfg) == []
    assert [h["step"] for h in result["history"] if "eval_reward" in h] == [2]


@pytest.mark.parametrize("override, named", [
    ("model.max_pixels=100352", "model.max_pixels 100352 (the checkpoint's: 50176)"),
    ("model.max_vision_tokens=16", "model.max_vision_tokens 16 (the checkpoint's: 1280)"),
])
def test_grpo_refuses_a_frame_other_than_its_starting_checkpoints_naming_both(grpo_config, tmp_path, override, named):
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(dump_config(grpo_config()), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(cfg), override], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "is a checkpoint with its own coordinate frame, which GRPO trains in" in said, said
    assert named in said and "Traceback" not in said and not (tmp_path / "grpo" / "final").exists()
