"""Each shipped config, as a user copies it, runs on the tiny model of its family with only what a CPU try needs
overridden: model.path, the data files, training.output_dir, training.max_steps and training.bf16=false (the one
precision key: `bf16: true` is refused where no GPU computes in bf16, naming it). Nothing else of the file is touched,
so its frame, batch, workers, gradient checkpointing and head are the ones it ships with."""

from pathlib import Path

import pytest
import yaml

from bbuvl.config import CONFIG_FILE, ConfigError, load_config
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.run_inputs import check_inputs
from bbuvl.train.trainer import check_precision, dry_run, train

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SLOW = pytest.mark.slow
SHIPPED = [pytest.param("base.yaml", "qwen2_5_vl", id="base"),
           pytest.param("qwen3_vl_4b.yaml", "qwen3_vl", id="qwen3_vl_4b", marks=SLOW),
           pytest.param("qwen3_5_0.8b.yaml", "qwen3_5", id="qwen3_5_0.8b", marks=SLOW)]


@pytest.fixture(scope="module")
def tiny_of(tmp_path_factory):
    """The tiny model of a family, built once a module."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(tmp_path_factory.mktemp(family) / "model", seed=0, family=family)
        return built[family]

    return get


def user_try(name: str, model: Path, data: Path, out: Path, *extra: str):
    """The shipped config `name` with what a first try on a CPU overrides, and nothing more."""
    return load_config(CONFIGS / name, [
        f"model.path={model}", f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}",
        f"data.teachers={data / 'teachers.jsonl'}", f"training.output_dir={out}", "training.max_steps=2", *extra])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_shipped_bf16_is_refused_on_a_machine_without_it_naming_the_key(tiny_of, small_dataset, tmp_path):
    cfg = user_try("base.yaml", tiny_of("qwen2_5_vl"), small_dataset, tmp_path / "run")
    try:
        check_precision(cfg)
    except ValueError as e:
        assert "training.bf16 is true, but this machine has no GPU that computes in bf16: set training.bf16=false" \
            in str(e)
    else:
        import torch

        assert torch.cuda.is_available()  # a machine whose GPU computes in bf16 takes it as shipped


@pytest.mark.parametrize("name, family", SHIPPED)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_shipped_config_runs_a_batch_on_its_familys_tiny_model(tiny_of, small_dataset, tmp_path, name, family):
    cfg = user_try(name, tiny_of(family), small_dataset, tmp_path / "run", "training.bf16=false")
    report = dry_run(cfg)
    assert report["finite"] and report["samples"] == cfg.training.per_device_batch_size, report


@pytest.mark.slow
@pytest.mark.parametrize("name, family", [pytest.param(*p.values, id=p.id) for p in SHIPPED])
def test_each_shipped_config_trains_two_steps_on_its_familys_tiny_model(tiny_of, small_dataset, tmp_path, name,
                                                                         family):
    cfg = user_try(name, tiny_of(family), small_dataset, tmp_path / "run", "training.bf16=false")
    final = Path(train(cfg, progress=False)["final"])
    saved = yaml.safe_load((final / CONFIG_FILE).read_text(encoding="utf-8"))
    shipped = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    for section, key in (("model", "family"), ("model", "max_pixels"), ("training", "per_device_batch_size"),
                         ("training", "gradient_checkpointing"), ("data", "num_workers"), ("data", "collator")):
        assert saved[section][key] == shipped[section][key], (section, key)


@pytest.mark.parametrize("stage", ["zero2.json", "zero3.json"])
def test_each_shipped_deepspeed_config_is_taken_by_the_training_start(tiny_of, small_dataset, tmp_path, stage):
    """Refused only for the package: without deepspeed installed the start says how to install it, not that the file
    is wrong (DeepSpeed itself needs a GPU; configs/deepspeed/ is tried where one is)."""
    import importlib.util

    cfg = user_try("base.yaml", tiny_of("qwen2_5_vl"), small_dataset, tmp_path / "run",
                   f"training.deepspeed={CONFIGS / 'deepspeed' / stage}")
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ValueError, match="training.deepspeed is set but the deepspeed package is not installed"):
            check_inputs(cfg)
    else:
        check_inputs(cfg)
    with pytest.raises(ConfigError, match="training.ema_decay averages the full weights"):
        load_config(CONFIGS / "base.yaml", [f"training.deepspeed={CONFIGS / 'deepspeed' / stage}", "training.ema_decay=0.9"])
