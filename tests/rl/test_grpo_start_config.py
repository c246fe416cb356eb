"""What a GRPO run takes from its own config and what from the checkpoint it starts from: the model loads as the
config asks (attention, QLoRA), refused where SFT refuses it; prediction's settings and the data are the config's."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.rl.trainer import build_grpo_run
from tests.rl.test_grpo_trainer import grpo_config, grpo_config_at  # noqa: F401 - the fixture

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


def _train(cfg, tmp_path, *overrides: str) -> tuple[int, str]:
    """`bbuvl train` on `cfg` written to a file: (exit code, output on one line)."""
    path = tmp_path / "grpo.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path), *overrides], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("overrides, says", [
    (("model.attn_implementation=flash_attention_2",), "model.attn_implementation flash_attention_2 needs a CUDA GPU"),
    (("model.lora.enabled=true", "model.lora.bits=4"), "4-bit loading (QLoRA) needs a CUDA GPU"),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grpo_refuses_attention_and_quantisation_this_machine_cannot_run_as_sft_does(grpo_config, run_config, tmp_path,
                                                                                     overrides, says):
    # They were accepted without a word: sdpa and full-precision LoRA trained, and final/bbuvl.yaml recorded bits 4.
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA machine may run both")
    code, said = _train(grpo_config(), tmp_path, *overrides)
    assert code == 2 and says in said and "Traceback" not in said, said
    assert not (tmp_path / "grpo" / "final").exists()
    code, sft_said = _train(run_config(f"training.output_dir={tmp_path / 'sft'}"), tmp_path, *overrides)
    assert code == 2 and says in sft_said, sft_said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grpo_loads_the_attention_its_config_names_and_records_it(grpo_config, trained_checkpoint):
    assert load_config(trained_checkpoint / "bbuvl.yaml").model.attn_implementation == "sdpa"
    run = build_grpo_run(grpo_config("model.attn_implementation=eager"))
    assert run.model.vlm.config._attn_implementation == "eager"
    assert run.cfg.model.attn_implementation == "eager"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_checkpoint_predicts_with_the_configs_inference_keys_and_records_the_data_it_trained_on(
        grpo_config, trained_checkpoint, small_dataset, tmp_path):
    # Before: final/bbuvl.yaml kept the SFT checkpoint's inference section and its data.train, while run.json named
    # the GRPO config's: predict on the GRPO checkpoint answered with 48 new tokens and no score threshold.
    import json
    import shutil

    from bbuvl.paths import real_path
    from bbuvl.rl.trainer import train_grpo

    shutil.copytree(small_dataset, tmp_path / "data")
    train = tmp_path / "data" / "train.jsonl"
    final = train_grpo(grpo_config(f"data.train={train}", "inference.max_new_tokens=7", "inference.score_threshold=0.3",
                                   "training.max_steps=1"), progress=False)["final"]
    start, saved = load_config(trained_checkpoint / "bbuvl.yaml"), load_config(f"{final}/bbuvl.yaml")
    assert (saved.inference.max_new_tokens, saved.inference.score_threshold) == (7, 0.3)
    assert saved.inference.objectness_threshold == start.inference.objectness_threshold == 0.0  # not named: kept
    assert saved.data.train == str(real_path(train)) != start.data.train
    recorded = json.loads((tmp_path / "grpo" / "run.json").read_text("utf-8"))
    assert str(real_path(train)) in json.dumps(recorded) and start.data.train not in json.dumps(recorded)
    assert saved.detection == start.detection and saved.data.lang == start.data.lang


def test_grpo_names_each_key_of_its_config_that_the_checkpoint_keeps_its_own_value_of(grpo_config, trained_checkpoint,
                                                                                      caplog):
    from bbuvl.rl.trainer import read_grpo_inputs

    with caplog.at_level("WARNING", logger="bbuvl.rl.trainer"):
        read_grpo_inputs(grpo_config("detection.num_queries=77", "detection.caption_refit.steps=5", "data.lang=en",
                                     "model.shared_prefix=false", "loss.bbox_weight=1.0"))
    said = " ".join(r.getMessage() for r in caplog.records)
    for named in ("detection.num_queries 77 (the checkpoint's: 8)", "detection.caption_refit.steps 5 (the checkpoint's: 0)",
                  "data.lang en (the checkpoint's: zh)", "model.shared_prefix False (the checkpoint's: True)",
                  "loss.bbox_weight 1.0 (the checkpoint's: 5.0)"):
        assert named in said, named
    caplog.clear()
    with caplog.at_level("WARNING", logger="bbuvl.rl.trainer"):  # the checkpoint's own values, or keys GRPO applies
        read_grpo_inputs(grpo_config("detection.num_queries=8", "data.lang=zh", "data.mirror=0.5",
                                     "model.attn_implementation=eager", "inference.tiles=2x2"))
    assert "the checkpoint's" not in " ".join(r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_lora_run_names_each_rate_it_leaves_nothing_to_train_as_sft_does(grpo_config, caplog):
    # Said by SFT's start and by `bbuvl config check`, and by GRPO's start nowhere
    with caplog.at_level("WARNING", logger="bbuvl.rl.trainer"):
        build_grpo_run(grpo_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8",
                                   "training.lr.merger=0.001"))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "training.lr.merger (0.001) trains nothing under model.lora.enabled" in said, said


FROZEN = ("training.detection_freeze_epochs=2", "training.save_steps=1")


@pytest.fixture(scope="module")
def frozen_run(trained_checkpoint, small_dataset, tmp_path_factory):
    """(run folder, its config, what its start warned) of one GRPO step with settings GRPO reads nothing from, trained
    once: one test reads it, another resumes a copy of it."""
    import logging

    from bbuvl.rl.trainer import train_grpo

    out = tmp_path_factory.mktemp("frozen") / "grpo"
    cfg = grpo_config_at(trained_checkpoint, small_dataset, out)(*FROZEN, "training.max_steps=1")
    records: list[logging.LogRecord] = []
    heard = logging.Handler(logging.WARNING)
    heard.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("bbuvl.rl.trainer")
    logger.addHandler(heard)
    try:
        train_grpo(cfg, progress=False)
    finally:
        logger.removeHandler(heard)
    return out, cfg, " ".join(r.getMessage() for r in records)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_checkpoints_bbuvl_yaml_records_no_setting_grpo_read_nothing_from(frozen_run):
    # Before: final/bbuvl.yaml recorded training.detection_freeze_epochs 2.0 and the head's rate 0.0001, which the
    # start said it ignored: the head was frozen for the whole run.
    from bbuvl.config import read_run_config

    out, cfg, said = frozen_run
    assert "training.method grpo ignores training.detection_freeze_epochs (2.0): the head is frozen" in said, said
    assert "training.method grpo ignores training.lr.detection (0.0001): the head is frozen" in said, said
    for folder in (out / "final", out / "checkpoint-1"):
        saved = read_run_config(folder)
        assert (saved.training.detection_freeze_epochs, saved.training.lr.detection) == (0, 0), folder
        assert saved.training.lr.llm == cfg.training.lr.llm == 1e-3  # what GRPO reads, as the config gave it


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_run_resumes_from_its_own_checkpoints_and_from_those_an_older_bbuvl_wrote(grpo_config, frozen_run,
                                                                                        tmp_path):
    # Its checkpoints record the ignored settings at their quiet values, an older bbu-vl's as the config gave them:
    # a resume compares neither with the run's config (train/run_record.py), so both go on.
    import shutil

    import yaml

    from bbuvl.rl.trainer import train_grpo
    from bbuvl.train.run_record import CHECKPOINT_RECORD, RUN_RECORD

    shutil.copytree(frozen_run[0], tmp_path / "grpo")  # its first step
    steps = train_grpo(grpo_config(*FROZEN, "training.max_steps=2"), resume=True, progress=False)["history"]
    assert [h["step"] for h in steps if "loss" in h] == [1, 2]
    out = tmp_path / "grpo"
    older = out / "checkpoint-2" / "bbuvl.yaml"
    written = yaml.safe_load(older.read_text("utf-8"))
    written["training"]["detection_freeze_epochs"], written["training"]["lr"]["detection"] = 2.0, 0.0001
    older.write_text(yaml.safe_dump(written, sort_keys=False), encoding="utf-8")
    for record in (out / RUN_RECORD, *out.glob(f"checkpoint-*/{CHECKPOINT_RECORD}")):  # a run from before records
        record.unlink()
    steps = train_grpo(grpo_config(*FROZEN, "training.max_steps=3"), resume=True, progress=False)["history"]
    assert [h["step"] for h in steps if "loss" in h] == [1, 2, 3]
