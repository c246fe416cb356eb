"""GRPO's validation pass as two processes answers each photo of data.val once, on one rank, and logs the mean over
all of them: every rank answered every photo, so the pass took as long with 8 GPUs as with one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bbuvl.config import dump_config, load_config
from bbuvl.data.schema import read_records
from tests.launch import free_port, grpo_overrides, launch_command

HANG_S = 300  # the run takes about 20 s

# Records each truth it scores, a line a call, in a file of its rank's
RECORDING = '''
import json
import os


def reward(truth, answer):
    with open(os.path.join(os.environ["CALLS_DIR"], os.environ.get("RANK", "0") + ".jsonl"), "a") as fh:
        fh.write(json.dumps(sorted([list(b.bbox_2d), b.label] for b in truth)) + "\\n")
    return 0.0
'''



def _truth(record) -> str:
    """A record's objects as RECORDING writes a truth."""
    return json.dumps(sorted([list(o.bbox_2d), o.desc] for o in record.objects))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_validation_photo_is_answered_on_one_rank_once_a_pass(tiny_model_dir, small_dataset, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "recording_rewards.py").write_text(RECORDING, encoding="utf-8")
    calls = tmp_path / "calls"
    calls.mkdir()
    cfg = load_config(None, grpo_overrides(tiny_model_dir, small_dataset / "train.jsonl", small_dataset / "val.jsonl",
                                         tmp_path / "run", 1)
                      + ["training.eval_steps=1", "grpo.rewards.user_function=recording_rewards:reward",
                         "grpo.rewards.user=0.5"])
    config = tmp_path / "grpo.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "CALLS_DIR": str(calls),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(launch_command(2, free_port()) + ["train", str(config)], env=env, text=True,
                          capture_output=True, timeout=HANG_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    passes = sum("eval_reward" in h for h in json.loads((tmp_path / "run" / "history.json").read_text(encoding="utf-8")))
    assert passes >= 1
    scored = {rank: Path(calls / f"{rank}.jsonl").read_text(encoding="utf-8").splitlines() for rank in ("0", "1")}
    val = [_truth(r) for r in read_records(small_dataset / "val.jsonl")]
    assert len(set(val)) == len(val) == 2
    for truth in val:
        # Before: each rank scored each validation photo at each pass, twice in all
        assert sum(lines.count(truth) for lines in scored.values()) == passes, (truth, scored)
    # One photo a rank: the share each answers
    assert all(sum(lines.count(truth) for truth in val) == passes for lines in scored.values())
