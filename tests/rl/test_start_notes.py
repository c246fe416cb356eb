"""What a GRPO run reads of its config (rl/start_notes.py): every key of config.py's schema is one it reads, or one it
says it reads nothing from when a config sets it; from a plain model folder SFT's losses build and record nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from bbuvl.config import BudgetError, Config, load_config, read_run_config
from bbuvl.rl.start_notes import QUIET, REFUSED, UNPLACED, schema_values, start_notes, unread_keys, unread_reason
from bbuvl.rl.trainer import train_grpo

pytestmark = pytest.mark.usefixtures("one_thread")


def _section(cfg: Config, key: str) -> tuple[BaseModel, str]:
    """The section object holding dotted `key`, and the key's own name in it."""
    *path, name = key.split(".")
    section: Any = cfg
    for part in path:
        section = getattr(section, part)
    return section, name


_NONE_VALID = object()


def _set_otherwise(cfg: Config, key: str, path_value: str) -> Any:
    """Set `key` of `cfg` to a valid value other than its default (and than `QUIET`'s) and return it; `_NONE_VALID`
    when none of the values tried is valid there (a key another key of its section bounds)."""
    section, name = _section(cfg, key)
    now = getattr(section, name)
    annotation = type(section).model_fields[name].annotation
    literals = [t for t in (annotation, *get_args(annotation)) if get_origin(t) is Literal]
    choices: list[Any] = [a for t in literals for a in get_args(t)]
    if isinstance(now, bool):
        choices.insert(0, not now)
    elif isinstance(now, (int, float)):
        choices += [now + 1, now / 2, now * 2, 0.5, 1]
    choices += [path_value, "x", ["x"], None]
    for value in choices:
        if value == now or (key in QUIET and value == QUIET[key]):
            continue
        try:
            setattr(section, name, value)
        except ValidationError:
            continue
        return value
    return _NONE_VALID


@pytest.fixture()
def starts(tiny_model_dir, trained_checkpoint, small_dataset, tmp_path) -> dict[str, Config]:
    """A GRPO config that sets nothing GRPO ignores, from a plain model folder and from a checkpoint."""
    common = ["training.method=grpo", f"data.train={small_dataset / 'train.jsonl'}", "data.teachers=null",
              "training.lr.detection=0", "data.num_workers=0", f"training.output_dir={tmp_path / 'grpo'}"]
    return {"plain": load_config(None, [f"model.path={tiny_model_dir}", *common]),
            "checkpoint": load_config(None, [f"model.path={trained_checkpoint}", *common])}


def test_every_key_of_the_config_is_one_grpo_reads_or_one_it_says_why_it_ignores():
    # A key config.py gains is said as ignored under GRPO until it is placed (rl/start_notes.py READ or UNREAD)
    unplaced = [key for key in schema_values(Config()) for plain in (True, False)
                if unread_reason(key, plain) == UNPLACED]
    assert unplaced == [], unplaced


def test_a_resume_compares_a_grpo_checkpoint_by_every_key_of_its_own_sections_it_records_as_the_config_gave_it():
    # rl/trainer.py grpo_saved_config records these at their quiet values; compared, every resume was refused
    from bbuvl.rl.trainer import OWN_SECTIONS
    from bbuvl.train.run_record import GRPO_UNRECORDED

    assert sorted(unread_keys(plain=False, within=OWN_SECTIONS)) == sorted(GRPO_UNRECORDED)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_key_grpo_reads_nothing_from_is_said_when_a_config_sets_it_and_no_key_it_reads(starts, small_dataset):
    # training.detection_freeze_epochs was silent from any start, and loss.* from a plain model folder
    assert unread_reason("training.detection_freeze_epochs", plain=False) is not None
    assert unread_reason("loss.number_token", plain=True) is not None
    assert unread_reason("loss.number_token", plain=False) is None  # a checkpoint's own, kept (kept_from_checkpoint)
    for start, base in starts.items():
        plain = start == "plain"
        assert not [n for n in start_notes(base) if n.startswith("training.method grpo ignores")], start
        for key in schema_values(base):
            if key in ("training.lr.detection", "training.logging_steps", "training.max_steps",
                       "grpo.rewards.user_function"):
                continue  # said by rate and by their pair, as their own tests check
            cfg = base.model_copy(deep=True)
            value = _set_otherwise(cfg, key, str(small_dataset / "teachers.jsonl"))
            if value is _NONE_VALID:
                assert unread_reason(key, plain) is None, (start, key)  # every key said ignored is tried
                continue
            try:
                notes = start_notes(cfg)
            except BudgetError as e:  # a frame other than the checkpoint's, refused as the start refuses it
                assert not plain and key in REFUSED and [p.keys[0] for p in e.problems] == [key], (start, key)
                continue
            ignored = [n for n in notes if n.startswith("training.method grpo ignores")]
            named = [n for n in ignored if key in n.keys]
            if unread_reason(key, plain) is None:
                assert named == [], (start, key, named)
            else:
                assert len(named) == 1 and (f"{key} (" in named[0] or f"{key}:" in named[0]), \
                    (start, key, value, ignored)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grpo_from_a_plain_model_folder_builds_nothing_for_sfts_losses_and_records_their_defaults(
        tiny_model_dir, small_dataset, tmp_path, caplog):
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        "model.vision_positions=false", "detection.enabled=false", "training.method=grpo",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null",
        f"data.teachers={small_dataset / 'teachers.jsonl'}", "data.num_workers=0",
        f"training.output_dir={tmp_path / 'grpo'}", "training.per_device_batch_size=2", "training.max_steps=1",
        "training.logging_steps=1", "training.bf16=false", "training.gradient_checkpointing=false",
        "training.use_cpu=true", "training.lr.detection=0", "training.detection_freeze_epochs=2",
        "loss.number_token=1.0", "loss.coordinate_regression=4.0", "detection.caption_refit.steps=5",
        "grpo.group_size=2", "grpo.max_new_tokens=24"])
    with caplog.at_level(logging.WARNING, logger="bbuvl.rl.trainer"):
        final = Path(train_grpo(cfg, progress=False)["final"])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "training.method grpo ignores training.detection_freeze_epochs (2.0): the head is frozen" in said, said
    assert "training.method grpo ignores loss.number_token (1.0), loss.coordinate_regression (4.0): GRPO trains by " \
           "its own objective" in said, said
    assert "training.method grpo ignores detection.caption_refit.steps (5): GRPO refits no captions" in said, said
    saved = read_run_config(final)
    assert saved.loss.number_token == 0 and saved.loss.coordinate_regression == 0  # not recorded as if they trained it
    assert saved.detection.caption_refit.steps == 0
    # Nor GRPO's own keys it read nothing from: the head was frozen, and no teacher was shown
    assert (saved.training.detection_freeze_epochs, saved.training.lr.detection, saved.data.teachers) == (0, 0, None)
    assert not (final / "coordinate_readout.safetensors").exists()  # an untrained read-out was saved


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """One LoRA step of SFT (r 4, alpha 8) over the tiny model: its final/ holds adapters."""
    from bbuvl.train.trainer import train
    from tests.lora_runs import one_step_lora

    out = tmp_path_factory.mktemp("lora") / "run"
    train(load_config(None, one_step_lora(tiny_model_dir, small_dataset, out, save_steps=100)), progress=False)
    return out / "final"


def _check(config: Path, *overrides: str) -> tuple[int, str]:
    """`bbuvl config check`'s exit code and output, on one line."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    r = CliRunner().invoke(app, ["config", "check", str(config), *overrides], env={"COLUMNS": "400"})
    return r.exit_code, " ".join(r.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_config_check_says_what_a_grpo_start_from_a_lora_checkpoint_says_of_its_adapters(
        lora_checkpoint, small_dataset, tmp_path, caplog):
    from bbuvl.config import ConfigError
    from bbuvl.rl.trainer import read_grpo_inputs

    shipped = Path(__file__).resolve().parents[2] / "configs" / "grpo.yaml"  # model.lora.enabled: false
    given = [f"model.path={lora_checkpoint}", f"data.train={small_dataset / 'train.jsonl'}", "model.dtype=float32",
             f"training.output_dir={tmp_path / 'grpo'}", "data.num_workers=0"]
    with pytest.raises(ConfigError) as refused:  # the start's refusal, before any weights load
        read_grpo_inputs(load_config(shipped, given))
    # Before: "ok: ... is valid", and the run's start refused it
    code, said = _check(shipped, *given)
    line = next(i + 1 for i, text in enumerate(shipped.read_text("utf-8").splitlines()) if "enabled: false" in text)
    assert code == 2 and f"{shipped}:{line}: {refused.value}" in said and "bbuvl model merge-lora" in said, said
    assert "is valid" not in said, said
    with caplog.at_level(logging.WARNING, logger="bbuvl.rl.trainer"):
        read_grpo_inputs(load_config(shipped, [*given, "model.lora.enabled=true", "model.lora.r=8"]))
    started = [r.getMessage() for r in caplog.records if "LoRA checkpoint" in r.getMessage() or "adapters" in
               r.getMessage()]
    assert len(started) == 2 and "(r 4, alpha 8)" in started[0] and "model.lora.r 8 (the checkpoint's: 4)" in started[1]
    code, said = _check(shipped, *given, "model.lora.enabled=true", "model.lora.r=8")
    assert code == 0 and "is valid" in said, said
    assert f"note: model.path={lora_checkpoint} (override): {started[0]}" in said, said
    assert f"note: model.lora.r=8 (override): {started[1]}" in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_config_check_refuses_the_frame_a_grpo_start_from_a_checkpoint_refuses_and_notes_the_keys_it_keeps(
        trained_checkpoint, small_dataset, tmp_path, caplog):
    from bbuvl.config import ConfigError
    from bbuvl.rl.trainer import read_grpo_inputs

    config = tmp_path / "grpo.yaml"
    config.write_text(f"model:\n  path: {trained_checkpoint}\n  max_pixels: 100352\ndetection:\n  num_queries: 77\n"
                      f"data:\n  train: {small_dataset / 'train.jsonl'}\n  val: null\n  teachers: null\n"
                      f"training:\n  method: grpo\n  output_dir: {tmp_path / 'grpo'}\n  lr:\n    detection: 0\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as refused:  # the start's refusal, before any weights load
        read_grpo_inputs(load_config(config))
    assert "model.max_pixels 100352 (the checkpoint's: 50176)" in str(refused.value)
    # Before: "ok: ... is valid", and the run's start refused it
    code, said = _check(config)
    assert code == 2 and f"{config}:3: {refused.value}" in said and "is valid" not in said, said
    kept = "detection.num_queries 77 (the checkpoint's: 8)"
    assert kept not in said  # a refused config is told what fails, not what would be kept
    with caplog.at_level(logging.WARNING, logger="bbuvl.rl.trainer"):
        read_grpo_inputs(load_config(config, ["model.max_pixels=50176"]))
    [started] = [r.getMessage() for r in caplog.records if kept in r.getMessage()]
    # Before: the start said it, `config check` did not
    code, said = _check(config, "model.max_pixels=50176")
    assert code == 0 and "is valid" in said and f"note: {config}:5: {started}" in said, said
