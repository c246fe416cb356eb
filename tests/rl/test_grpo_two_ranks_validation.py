"""GRPO's validation pass as two processes answers each photo of data.val once, on one rank, and logs the mean over
all of them: every rank answered every photo, so the pass took as long with 8 GPUs as with one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from bbuvl.config import dump_config, load_config
from bbuvl.data.schema import read_records
from tests.launch import launch_command

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


def _free_port() -> int:
    """A port no process listens on now (other test runs on the machine launch theirs too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _truth(record) -> str:
    """A record's objects as RECORDING writes a truth."""
    return json.dumps(sorted([list(o.bbox_2d), o.desc] for o in record.objects))


def test_each_validation_photo_is_answered_on_one_rank_once_a_pass(tiny_model_dir, small_dataset, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "recording_rewards.py").write_text(RECORDING, encoding="utf-8")
    calls = tmp_path / "calls"
    calls.mkdir()
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "training.method=grpo", "model.min_pixels=12544",
        "model.max_pixels=50176", f"data.train={small_dataset / 'train.jsonl'}", f"data.val={small_dataset / 'val.jsonl'}",
        "data.teachers=null", "data.num_workers=0", f"training.output_dir={tmp_path / 'run'}",
        "training.per_device_batch_size=1", "training.max_steps=1", "training.logging_steps=1", "training.eval_steps=1",
        "training.save_steps=100", "training.bf16=false", "training.gradient_checkpointing=false",
        "training.use_cpu=true", "training.warmup_ratio=0", "grpo.group_size=2", "grpo.max_new_tokens=16",
        "grpo.rewards.user_function=recording_rewards:reward", "grpo.rewards.user=0.5",
    ])
    config = tmp_path / "grpo.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "CALLS_DIR": str(calls),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(launch_command(2, _free_port()) + ["train", str(config)], env=env, text=True,
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
