"""A run's inputs are read and checked before its folder is touched: each missing one named by its key, and a refusal
after `--overwrite` never costs the run it would have replaced."""

import importlib.util
import shutil

import pytest

from bbuvl.train.trainer import train

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_start_with_overwrite_keeps_the_previous_run(run_config, small_dataset, tmp_path):
    """A typo in data.val, a missing photo or a batch over its budget was found once --overwrite had removed the
    previous run: that run was lost and none started."""
    cfg = run_config("training.max_steps=1", "training.save_steps=1")
    train(cfg, progress=False)
    out = tmp_path / "run"
    before = _tree(out)
    assert "final/model.safetensors" in before and "checkpoint-1/trainer_state.json" in before
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    (data / "images" / sorted(p.name for p in (data / "images").iterdir())[0]).unlink()
    bad = {
        "data.val": (f"data.val={tmp_path / 'typo.jsonl'}", "data.val .*typo.jsonl: no such file"),
        "a photo": (f"data.train={data / 'train.jsonl'}", r"train\.jsonl:\d+: image .*: "),
        "a budget": ("model.max_vision_tokens_per_batch=8", "model.max_vision_tokens_per_batch \\(8\\) is below"),
        "the model": (f"model.path={tmp_path / 'no-model'}", "no-model: no such folder"),
    }
    for override, says in bad.values():
        with pytest.raises(ValueError, match=says):
            train(run_config("training.max_steps=1", override), progress=False, overwrite=True)
        assert _tree(out) == before, override


@pytest.mark.parametrize("key", ["data.train", "data.hierarchy", "training.deepspeed", "detection.caption_refit.photos"])
def test_a_missing_input_is_named_by_its_key_before_anything_is_written(run_config, tmp_path, key):
    """data.train and the refit's photos were named by their reader ('cannot open dataset', no key), and
    training.deepspeed by a traceback from transformers once the model had loaded."""
    refit = ["detection.caption_refit.steps=1"] if key.startswith("detection") else []
    missing = tmp_path / "typo.json"
    with pytest.raises(ValueError, match=f"^{key} {missing}: no such file$"):
        train(run_config(f"{key}={missing}", *refit), progress=False)
    with pytest.raises(ValueError, match=f"^{key} {tmp_path}: not a file$"):
        train(run_config(f"{key}={tmp_path}", *refit), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_deepspeed_config_is_read_before_the_model_loads(run_config, tmp_path):
    ds = tmp_path / "zero.json"
    ds.write_text('{"zero_optimization": {"stage": 2},\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"^training.deepspeed {ds}: line 2: not valid JSON"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    ds.write_text("[2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="a DeepSpeed config is a JSON object"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    assert not (tmp_path / "run").exists()
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here: its absence cannot be shown")
    ds.write_text('{"zero_optimization": {"stage": 2}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"deepspeed package is not installed: .*\.\[deepspeed\]"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    assert not (tmp_path / "run").exists()
