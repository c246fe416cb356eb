"""An evaluation under torchrun logs the numbers one process logs, and every rank reads them: each rank had averaged
its own share of the validation photos, logged the first rank's over HF's gathered eval_loss, and judged early
stopping on its own, so that one rank could stop and the other wait for it for ever (train/eval_terms.py)."""

import json
import os
import subprocess

import pytest
from PIL import Image

from tests.launch import launch_command

pytestmark = pytest.mark.slow


def test_two_ranks_evaluate_three_photos_as_one_process_does(run_config, small_dataset, tmp_path):
    # Three photos on two ranks of batch 1: the second rank's last batch repeats the first photo (accelerate's even
    # batches), which neither the terms nor the head's object counts may take in. Before: eval_loss 22.21 logged where
    # one process logged 25.15 (the first rank's photos alone), and the head's terms divided by the ranks' mean count.
    from bbuvl.config import dump_config

    lines = [json.loads(x) for x in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    for record in lines:
        record["images"] = [str(small_dataset / p) for p in record["images"]]
    (tmp_path / "val").mkdir()
    # A third photo of their own: the first one turned upside down (its boxes need not follow for a loss)
    Image.open(lines[0]["images"][0]).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(tmp_path / "val" / "third.png")
    lines.append({**lines[0], "images": [str(tmp_path / "val" / "third.png")]})
    val = tmp_path / "val" / "val3.jsonl"
    val.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    logged = {}
    for processes, accumulation in ((1, 2), (2, 1)):
        out = tmp_path / f"p{processes}"
        cfg = run_config(f"data.val={val}", "data.teacher_ratio=0", "training.max_steps=1", "training.eval_steps=1",
                         "training.per_device_batch_size=1", f"training.gradient_accumulation_steps={accumulation}",
                         f"training.output_dir={out}")
        (tmp_path / f"p{processes}.yaml").write_text(dump_config(cfg), encoding="utf-8")
        subprocess.run(launch_command(processes, 29561 + processes) + ["train", str(tmp_path / f"p{processes}.yaml")],
                       check=True, env=env, timeout=600)
        history = json.loads((out / "history.json").read_text(encoding="utf-8"))
        logged[processes] = next(h for h in history if "eval_loss" in h)
    one, two = logged[1], logged[2]
    assert "eval_loss_bbox" in one and sorted(k for k in one if k.startswith("eval_l")) == sorted(
        k for k in two if k.startswith("eval_l"))
    for k in (k for k in one if k.startswith("eval_l")):
        assert two[k] == pytest.approx(one[k], rel=1e-5, abs=1e-7), (k, one, two)
