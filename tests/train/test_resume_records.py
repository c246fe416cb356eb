"""A resumed run's records (history.json, health.json, TensorBoard, non-finite dumps, checkpoints) hold one value per
step, the resumed run's, and count on as a run that never stopped: train/resume_records.py, CarriedState."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bbuvl.config import dump_config
from bbuvl.train.trainer import train
from tests.callbacks import PoisonHeadOnce, StopAt

pytestmark = pytest.mark.filterwarnings("ignore")

# An alarm in every group at every step from the second (above the limit on 2 of its last 2 steps): a resumed run's first
# step alarms only with the norm of the step before it, carried in the checkpoint.
ALARMS = ("monitor.every_steps=1", "monitor.grad_norm_max=1e-6", "monitor.grad_norm_window=2")


def scalars(out: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve TensorBoard shows for the run: tag -> [(step, value)]."""
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def one_curve_each(curves: dict[str, list[tuple[int, float]]]) -> None:
    for tag, points in curves.items():
        if tag == "train/epoch":  # HF logs it with each log, evaluation and end summary of a step, run killed or not
            continue
        steps = [s for s, _ in points]
        if tag.startswith("alarm/"):  # several alarms a step: the count only rises
            assert [v for _, v in points] == list(range(1, len(points) + 1)), tag
        else:
            assert len(steps) == len(set(steps)), (tag, steps)


def losses(history: list[dict]) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h and "train_runtime" not in h}


@pytest.mark.slow
def test_a_run_killed_past_its_checkpoint_and_resumed_leaves_the_records_of_a_run_never_killed(run_config, tmp_path):
    common = ("training.max_steps=5", "training.save_steps=3", "training.eval_steps=2", *ALARMS)
    whole = run_config(*common, f"training.output_dir={tmp_path / 'whole'}")
    train(whole, progress=False)
    cfg = run_config(*common, f"training.output_dir={tmp_path / 'killed'}")
    (tmp_path / "run.yaml").write_text(dump_config(cfg), encoding="utf-8")
    script = (  # a real process, killed (SIGKILL) right after it logged step 4, one step past checkpoint-3
        "import os, signal, torch\nfrom transformers import TrainerCallback\nfrom bbuvl.config import load_config\n"
        "from bbuvl.train.trainer import train\ntorch.set_num_threads(1)\n"
        "class Kill(TrainerCallback):\n"
        "    def on_log(self, args, state, control, logs=None, **kw):\n"
        "        if state.global_step == 4 and 'loss' in (logs or {}):\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        f"train(load_config({str(tmp_path / 'run.yaml')!r}), progress=False, callbacks=[Kill()])\n")
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()},
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    out = tmp_path / "killed"
    assert 4 in [s for s, _ in scalars(out)["train/loss"]]  # the killed run had logged past its checkpoint
    train(cfg, resume=True, progress=False)

    a, b = scalars(tmp_path / "whole"), scalars(out)
    one_curve_each(b)
    for tag in ("train/loss", "eval/loss", "alarm/grad_norm", "train/nan_skipped"):
        assert [s for s, _ in b[tag]] == [s for s, _ in a[tag]], tag
        assert [v for _, v in b[tag]] == pytest.approx([v for _, v in a[tag]], abs=1e-4), tag
    history = json.loads((out / "history.json").read_text())
    whole_history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert losses(history) == pytest.approx(losses(whole_history), abs=1e-5)
    assert [h["train_loss"] for h in history if "train_loss" in h] == pytest.approx(
        [h["train_loss"] for h in whole_history if "train_loss" in h], abs=1e-5)  # the mean over all five steps
    health, whole_health = (json.loads((p / "health.json").read_text()) for p in (out, tmp_path / "whole"))
    assert health["summary"]["grad_norm"]["count"] == whole_health["summary"]["grad_norm"]["count"] == 20  # steps 2-5
    assert [(x["step"], x["subject"]) for x in health["alarms"]] == [(x["step"], x["subject"]) for x in whole_health["alarms"]]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_stopped_runs_records_past_the_checkpoint_are_cut_and_its_counts_go_on(run_config, tmp_path):
    cfg = run_config("training.max_steps=5", "training.save_steps=3", "training.eval_steps=100", *ALARMS)
    out = Path(cfg.training.output_dir)
    # Stopped at step 4 with a non-finite step 2 (before checkpoint-3) and 4 (after it): records past 3 on disk
    train(cfg, progress=False, callbacks=[PoisonHeadOnce(2), PoisonHeadOnce(4), StopAt(4)])
    assert sorted(p.name for p in (out / "nan_batches").iterdir()) == ["step0000002_0.json", "step0000004_1.json"]
    before = [a for a in json.loads((out / "health.json").read_text())["alarms"] if a["step"] <= 3]
    assert any(a["step"] == 4 and a["kind"] == "nonfinite" for a in json.loads((out / "health.json").read_text())["alarms"])
    result = train(cfg, resume=True, progress=False)

    one_curve_each(scalars(out))
    assert sorted(p.name for p in (out / "nan_batches").iterdir()) == ["step0000002_0.json"]
    history = json.loads((out / "history.json").read_text())
    assert sorted(losses(history)) == [1, 2, 3, 4, 5]
    assert [h["nan_skipped"] for h in history if "nan_skipped" in h] == [0, 1, 1, 1, 1]  # step 2's skip is counted on
    assert result["nan_skipped"] == 1
    health = json.loads((out / "health.json").read_text())
    assert [a for a in health["alarms"] if a["step"] <= 3] == before  # step 2's alarms, once
    assert {a["step"] for a in health["alarms"] if a["kind"] == "nonfinite"} == {2}
    assert sorted({a["step"] for a in health["alarms"]}) == [2, 3, 4, 5]
    # Step 2's non-finite norms are no part of a window: step 3 alarms on steps 1 and 3, step 4 (the resumed run's
    # first) on step 3's norm, carried in checkpoint-3
    assert sorted({a["step"] for a in health["alarms"] if a["kind"] == "grad_norm"}) == [3, 4, 5]
    assert result["alarms"]["grad_norm"]["first_step"] == 3


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_early_stopping_stops_a_resumed_run_where_one_never_stopped_would(run_config, tmp_path):
    # Every evaluation after the first "fails to improve" by 1e9: patience 2 stops the run at step 3.
    common = ("training.max_steps=6", "training.eval_steps=1", "training.save_steps=2",
              "monitor.early_stopping_metric=eval_loss", "monitor.early_stopping_patience=2",
              "monitor.early_stopping_min_delta=1e9")
    whole = train(run_config(*common, f"training.output_dir={tmp_path / 'whole'}"), progress=False)
    assert max(losses(whole["history"])) == 3
    cfg = run_config(*common, f"training.output_dir={tmp_path / 'resumed'}")
    train(cfg, progress=False, callbacks=[StopAt(2)])
    resumed = train(cfg, resume=True, progress=False)
    assert max(losses(resumed["history"])) == 3
    assert resumed["alarms"]["early_stop"]["first_step"] == 3
    assert "(step 1)" in resumed["alarms"]["early_stop"]["first"]  # the best evaluation, taken back from checkpoint-2


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resuming_from_an_older_checkpoint_than_the_newest_cuts_every_record_back_to_it(run_config, tmp_path):
    cfg = run_config("training.max_steps=6", "training.save_steps=2", *ALARMS)
    out = Path(cfg.training.output_dir)
    train(cfg, progress=False)
    (out / "checkpoint-6" / "trainer_state.json").unlink()  # the newest save was cut short: --resume takes checkpoint-4
    train(cfg, resume=True, progress=False, callbacks=[StopAt(5)])  # ... and this run stops before rewriting step 6

    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    curves = scalars(out)
    one_curve_each(curves)
    assert max(s for s, _ in curves["train/loss"]) == 5
    assert max(losses(json.loads((out / "history.json").read_text()))) == 5
    health = json.loads((out / "health.json").read_text())
    assert max(a["step"] for a in health["alarms"]) == 5 and health["summary"]["grad_norm"]["count"] == 20  # steps 2-5


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_from_a_checkpoint_older_than_a_complete_one_is_refused_and_removes_nothing(run_config, tmp_path):
    from bbuvl.train.run_dir import RunDirError

    cfg = run_config("training.max_steps=4", "training.save_steps=2")
    out = Path(cfg.training.output_dir)
    train(cfg, progress=False)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RunDirError) as e:
        train(cfg, resume=str(out / "checkpoint-2"), progress=False)
    assert "holds checkpoint-4, complete and past its step, which resuming from it would remove" in str(e.value)
    assert sorted(p.name for p in out.iterdir()) == before and "checkpoint-4" in before
