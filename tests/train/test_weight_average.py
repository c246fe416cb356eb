"""Averaged weights (`training.ema_decay`): the average's arithmetic, what `final/` holds, resuming, bad checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerState, TrainingArguments

from bbuvl.model.checkpoint import load_model
from bbuvl.train.run_dir import RunDirError
from bbuvl.train.trainer import train
from bbuvl.train.weight_average import AVERAGE_FILE, WeightAverage, WeightAverageError, ramped_decay
from tests.callbacks import StopAt, whole_and_resumed
from tests.conftest import run_config_at

pytestmark = pytest.mark.filterwarnings("ignore")


def _weights(folder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in load_model(folder)[0].named_parameters()}


def test_the_decay_ramps_in_and_then_holds():
    assert ramped_decay(0.99, 1) == pytest.approx(2 / 11)
    assert ramped_decay(0.99, 10) == pytest.approx(11 / 20)
    assert ramped_decay(0.99, 10_000) == 0.99
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(torch.nn.Linear(2, 2), 1.0)


def test_the_average_follows_the_updated_weights_only_and_is_swapped_in_at_the_end(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].requires_grad_(False)
    frozen = model[1].weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    average = WeightAverage(model, 0.9)
    args, state = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True), TrainerState()
    average.on_train_begin(args, state, None, optimizer=optimizer)
    assert average.names == ["0.weight", "0.bias"]
    expect = model[0].weight.detach().clone()
    for step in (1, 2, 3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        state.global_step = step
        average.on_step_end(args, state, None)
        d = ramped_decay(0.9, step)
        expect = d * expect + (1 - d) * model[0].weight.detach()
    last = model[0].weight.detach().clone()
    assert not torch.allclose(expect, last)
    average.on_train_end(args, state, None)
    assert torch.allclose(model[0].weight, expect, atol=1e-6)
    assert torch.equal(model[1].weight, frozen)


def test_bfloat16_weights_are_averaged_in_float32(tmp_path):
    model = torch.nn.Linear(8, 8).to(torch.bfloat16)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    average = WeightAverage(model, 0.99)
    args, state = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True), TrainerState()
    average.on_train_begin(args, state, None, optimizer=optimizer)
    expect = model.weight.detach().float().clone()
    for step in range(1001, 1041):  # past the ramp: each step moves the average by 1% of the difference
        optimizer.zero_grad()
        model(torch.randn(4, 8, dtype=torch.bfloat16)).float().pow(2).sum().backward()
        optimizer.step()
        state.global_step = step
        average.on_step_end(args, state, None)
        expect = 0.99 * expect + 0.01 * model.weight.detach().float()
    assert average.average[0].dtype == torch.float32
    assert torch.allclose(average.average[0], expect, atol=1e-6)
    average.save(tmp_path)
    resumed = WeightAverage(model, 0.99)
    resumed.load(tmp_path, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(resumed.average, average.average))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_final_holds_the_average_and_each_checkpoint_the_live_weights_beside_it(run_config, tmp_path):
    cfg = run_config("training.ema_decay=0.5", "training.max_steps=4", "training.save_steps=4", "data.val=null")
    final = _weights(train(cfg, progress=False)["final"])
    checkpoint = tmp_path / "run" / "checkpoint-4"
    live, saved = _weights(checkpoint), load_file(str(checkpoint / AVERAGE_FILE))
    assert saved and set(saved) <= set(final)
    assert all(torch.equal(final[n], t) for n, t in saved.items())
    assert any(not torch.equal(live[n], t) for n, t in saved.items())  # four steps leave the average behind
    assert all(torch.equal(final[n], live[n]) for n in final if n not in saved)  # nothing else moved


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resumed_run_ends_with_the_average_of_one_that_never_stopped(run_config, tmp_path):
    whole, resumed = (_weights(r["final"]) for r in whole_and_resumed(
        run_config, tmp_path, "training.ema_decay=0.6", "training.max_steps=6", "training.save_steps=3", "data.val=null"))
    assert whole.keys() == resumed.keys()
    for n in whole:
        assert torch.allclose(whole[n], resumed[n], atol=1e-5), n


# A run averaging its weights, stopped after step 2 of 4 as a kill leaves it, checkpoint-2 saved.
STOPPED_AT_2 = ("training.ema_decay=0.6", "training.max_steps=4", "training.save_steps=2", "data.val=null")


@pytest.fixture(scope="module")
def stopped_at_2(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """STOPPED_AT_2's run folder, trained once for the module: a test that damages it works on its own copy."""
    out = tmp_path_factory.mktemp("stopped-at-2") / "run"
    train(run_config_at(tiny_model_dir, small_dataset, out)(*STOPPED_AT_2), progress=False, callbacks=[StopAt(2)])
    return out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_saved_without_its_average_is_refused_by_name(run_config, stopped_at_2, tmp_path):
    cfg = run_config(*STOPPED_AT_2)
    shutil.copytree(stopped_at_2, tmp_path / "run", symlinks=True)
    (tmp_path / "run" / "checkpoint-2" / AVERAGE_FILE).unlink()
    with pytest.raises(WeightAverageError, match=f"checkpoint-2/{AVERAGE_FILE}: missing"):
        train(cfg, resume=True, progress=False)


def test_an_average_with_deepspeed_is_refused_at_load_time(run_config, tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 3}}', encoding="utf-8")
    with pytest.raises(ValueError, match="training.ema_decay averages the full weights"):
        run_config("training.ema_decay=0.9", f"training.deepspeed={ds}")


def test_a_damaged_average_is_refused_naming_its_file(run_config, stopped_at_2, tmp_path):
    cfg = run_config(*STOPPED_AT_2)
    shutil.copytree(stopped_at_2, tmp_path / "run", symlinks=True)
    (tmp_path / "run" / "checkpoint-2" / AVERAGE_FILE).write_bytes(b"cut short")
    with pytest.raises(RunDirError, match=f"checkpoint-2/{AVERAGE_FILE}: damaged safetensors header"):
        train(cfg, resume=True, progress=False)
