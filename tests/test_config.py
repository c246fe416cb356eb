"""The config loader: every key validated, errors located, overrides typed."""

import re
from pathlib import Path

import pytest
import yaml

from bbuvl.config import (Config, ConfigError, batch_budget_problems, dump_config, load_config, parse_overrides,
                          run_conflicts, run_notes)

ROOT = Path(__file__).resolve().parents[1]


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def test_shipped_configs_are_valid():
    for name in ("base.yaml", "demo.yaml", "demo_shapes.yaml", "qwen3_vl_4b.yaml", "qwen3_5_0.8b.yaml", "grpo.yaml",
                 "demo_grpo.yaml"):
        # What training checks at its start: no batch can overflow a budget, no keys contradict.
        cfg = load_config(ROOT / "configs" / name)
        assert batch_budget_problems(cfg) == [] and run_conflicts(cfg) == [] and run_notes(cfg) == [], name


@pytest.mark.parametrize("overrides, keys, needle", [
    (["detection.enabled=false", "inference.mode=head"], ("inference.mode", "detection.enabled"),
     "inference.mode head reads the detection head, and detection.enabled is false"),
    (["detection.enabled=false", "inference.mode=name"], ("inference.mode", "detection.enabled"),
     "inference.mode name reads the detection head"),
])
def test_keys_a_run_would_contradict_are_refused_at_its_start_and_a_checkpoint_holding_them_still_loads(
        tmp_path, overrides, keys, needle):
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)  # loads: a checkpoint trained so is still read
    # Before: it trained a checkpoint whose own mode `bbuvl predict` then refused.
    [problem] = run_conflicts(cfg)
    assert needle in problem and problem.keys == keys
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    assert run_conflicts(load_config(path)) != []


def test_logging_steps_past_max_steps_is_said_not_refused():
    # Before: no step's loss was logged and nothing said so (GRPO said it for the same case)
    [note] = run_notes(load_config(ROOT / "configs" / "demo.yaml", ["training.logging_steps=5000"]))
    assert note.keys == ("training.logging_steps", "training.max_steps") and "no step's loss is logged" in note
    assert run_notes(load_config(ROOT / "configs" / "demo.yaml", ["training.logging_steps=900"])) == []


def test_a_detection_freeze_of_every_epoch_is_said_not_refused():
    # Before: the run shipped the head it started with, untrained, without a word
    demo = ROOT / "configs" / "demo.yaml"
    epochs = load_config(demo).training.num_epochs
    [note] = run_notes(load_config(demo, ["training.max_steps=-1", f"training.detection_freeze_epochs={epochs}"]))
    assert note.keys == ("training.detection_freeze_epochs", "training.num_epochs") and "never trains" in note
    assert run_notes(load_config(demo, ["training.max_steps=-1", f"training.detection_freeze_epochs={epochs / 2}"])) == []
    assert run_notes(load_config(demo, ["training.max_steps=-1", f"training.detection_freeze_epochs={epochs}",
                                        "detection.enabled=false", "inference.mode=generate"])) == []


def test_a_warm_up_the_constant_schedule_never_takes_is_said_not_refused():
    # Before: `training.lr_scheduler=constant` beside base.yaml's warmup_ratio 0.03 (or 0.5) trained every step at the
    # full rate, 0.001 from step 1, without a word
    base = ROOT / "configs" / "base.yaml"
    [note] = run_notes(load_config(base, ["training.lr_scheduler=constant"]))
    assert note.keys == ("training.warmup_ratio", "training.lr_scheduler")
    assert note.startswith("training.warmup_ratio (0.03) warms nothing up under training.lr_scheduler constant")
    assert "constant_with_warmup" in note
    for fine in (["training.lr_scheduler=constant_with_warmup"], ["training.lr_scheduler=constant", "training.warmup_ratio=0"]):
        assert run_notes(load_config(base, fine)) == []
    # The schema's default ratio is no choice made: unsaid
    assert run_notes(Config.model_validate({"training": {"lr_scheduler": "constant"}})) == []


def test_a_new_head_frozen_by_its_learning_rate_is_said_not_refused():
    # Before: `training.lr.detection=0` trained 2 steps on a new head without a word: every checkpoint held the head as
    # built (box layers ending at zero), and the head's loss fell from 24.4 to 18.2 by training the VLM toward it
    base = ROOT / "configs" / "base.yaml"
    [note] = run_notes(load_config(base, ["training.lr.detection=0"]))
    assert note.keys == ("training.lr.detection", "detection.enabled", "model.reuse_modules")
    assert "the checkpoints hold a head that never learned, and its loss still trains the VLM's features" in note
    [note] = run_notes(load_config(base, ["training.lr.detection=0", "detection.grad_to_vlm=0"]))
    assert note.endswith("never learned; give training.lr.detection a rate above 0, set detection.enabled: false, or "
                         "start the head from a checkpoint's with model.reuse_modules: true")
    # A head started from a checkpoint's may stay as it is; no head, or GRPO's frozen one, is no such run
    assert run_notes(load_config(base, ["training.lr.detection=0", "model.reuse_modules=true"])) == []
    assert run_notes(load_config(base, ["training.lr.detection=0", "detection.enabled=false"])) == []
    assert run_notes(load_config(ROOT / "configs" / "grpo.yaml")) == []


def test_vision_positions_held_at_zero_by_their_learning_rate_are_said_not_refused():
    # Before: `model.vision_positions=true training.lr.adapter=0` trained 2 steps without a word, and final/'s
    # vision_positions.safetensors held zeros alone: positions that add nothing to any vision token
    base = ROOT / "configs" / "base.yaml"
    [note] = run_notes(load_config(base, ["model.vision_positions=true", "training.lr.adapter=0"]))
    assert note.keys == ("model.vision_positions", "training.lr.adapter") and "so no token gets any" in note
    assert run_notes(load_config(base, ["model.vision_positions=true"])) == []
    assert run_notes(load_config(base, ["model.vision_positions=true", "training.lr.adapter=0",
                                        "model.reuse_modules=true"])) == []


def test_a_rate_given_to_a_group_lora_leaves_nothing_to_train_is_said_not_refused():
    # Before: a LoRA run with training.lr.merger 1e-3 trained no merger weight, and nothing said so
    demo = ROOT / "configs" / "demo.yaml"
    vision, merger = run_notes(load_config(demo, ["model.lora.enabled=true"]))
    assert vision.keys == ("training.lr.vision", "model.lora.enabled") and "or model.lora.vision: true" in vision
    assert merger.keys == ("training.lr.merger", "model.lora.enabled")
    assert "LoRA freezes the model's own weights and puts its adapters on the language model (at training.lr.llm)" \
        in merger
    [merger] = run_notes(load_config(demo, ["model.lora.enabled=true", "model.lora.vision=true"]))
    assert merger.startswith("training.lr.merger (0.001) trains nothing under model.lora.enabled")
    assert run_notes(load_config(demo, ["model.lora.enabled=true", "training.lr.vision=0", "training.lr.merger=0"])) == []
    # A rate left at its default is the config's own, not a choice: unsaid
    assert run_notes(Config.model_validate({"model": {"lora": {"enabled": True}}})) == []


def test_a_teacher_ratio_given_beside_no_teachers_is_said_not_refused():
    # `data.teachers=null` given to turn teachers off where the file sets a ratio is a run to start; said, since
    # before the run trained on no teacher without a word.
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["data.teachers=null", "data.teacher_ratio=0.5"])
    [note] = run_notes(cfg)
    assert run_conflicts(cfg) == [] and note.keys == ("data.teacher_ratio", "data.teachers")
    assert "data.teacher_ratio (0.5) shows teacher photos beside that share of the training samples" in note
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["data.teachers=null"])
    assert cfg.data.teacher_ratio == 0.0 and run_notes(cfg) == []
    cfg = load_config(ROOT / "configs" / "grpo.yaml")  # never sets the ratio, and GRPO draws no teacher
    assert cfg.data.teachers is None and cfg.data.teacher_ratio > 0 and run_notes(cfg) == []


@pytest.mark.parametrize("name, family, factor", [("base.yaml", "qwen2_5_vl", 28), ("qwen3_vl_4b.yaml", "qwen3_vl", 32),
                                                  ("qwen3_5_0.8b.yaml", "qwen3_5", 32)])
def test_each_full_config_lists_every_key_and_names_its_family(name, family, factor):
    written = yaml.safe_load((ROOT / "configs" / name).read_text(encoding="utf-8"))
    assert _keys(written) == _keys(Config().model_dump(mode="json"))
    cfg = load_config(ROOT / "configs" / name)
    frame = cfg.model.frame()  # named, so no download is needed to know the frame
    assert (cfg.model.family, frame.factor) == (family, factor)
    assert frame.vision_tokens((4000, 3000)) <= cfg.model.max_vision_tokens
    if family == "qwen3_5":
        assert cfg.data.collator == "padded"  # packing is refused for its linear-attention layers


def test_unknown_key_names_location_line_and_closest_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: x\n  min_pixel: 100\ntraining:\n  lr:\n    lmm: 1e-5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:3: unknown key 'model.min_pixel' (did you mean 'model.min_pixels'?)" in msg
    assert f"{p}:6: unknown key 'training.lr.lmm' (did you mean 'training.lr.llm'?)" in msg


def test_a_key_named_as_hugging_face_names_it_points_at_ours_and_a_section_given_one_value_lists_its_keys(tmp_path):
    # Closeness of spelling offered 'training.logging_steps' for learning_rate and nothing for model_name_or_path, and
    # `lr: 1e-4` was "must be a mapping" without the groups it holds.
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  model_name_or_path: x\ntraining:\n  learning_rate: 1e-4\ndata:\n  validation: v.jsonl\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:2: unknown key 'model.model_name_or_path' (did you mean 'model.path'?)" in str(e.value)
    assert f"{p}:4: unknown key 'training.learning_rate' (did you mean 'training.lr'?)" in str(e.value)
    assert f"{p}:6: unknown key 'data.validation' (did you mean 'data.val'?)" in str(e.value)
    p.write_text("training:\n  lr: 1e-4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{p}:2: 'training.lr' must be a mapping of vision, merger, llm, "
                                                    "detection, adapter, got '1e-4'")):
        load_config(p)


def test_a_value_yaml_reads_as_no_text_is_named_as_typed_with_the_quoting_that_keeps_it_text(tmp_path):
    # `path: no` was "got False", `output_dir: 2024-01-01` "got datetime.date(2024, 1, 1)": values no one typed.
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: no\n  attn_implementation: yes\ntraining:\n  output_dir: 2024-01-01\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["data.train=123"])
    said = str(e.value)
    assert f"{p}:2: 'model.path' must be a string, got no (YAML reads an unquoted no as false; write \"no\" to mean " \
           "the text)" in said, said
    assert "'model.attn_implementation': Input should be 'sdpa', 'eager' or 'flash_attention_2', got yes (YAML reads " \
           "an unquoted yes as true)" in said, said
    assert f"{p}:5: 'training.output_dir' must be a string, got 2024-01-01 (YAML reads an unquoted 2024-01-01 as a " \
           "date;" in said, said
    assert "data.train=123 (override): 'data.train' must be a string, got 123 (YAML reads an unquoted 123 as a " \
           "number; write \"123\" to mean the text)" in said, said
    # A number key too: "got datetime.date(2024, 1, 1)" before
    with pytest.raises(ConfigError, match=r"'training.seed' must be an integer, got 2024-01-01 \(YAML reads an "
                                          r"unquoted 2024-01-01 as a date\)"):
        load_config(None, ["training.seed=2024-01-01"])
    p.write_text("model:\n  path: \"no\"\ntraining:\n  output_dir: '2024-01-01'\n", encoding="utf-8")
    cfg = load_config(p, ['data.train="123"'])
    assert (cfg.model.path, cfg.training.output_dir, cfg.data.train) == ("no", "2024-01-01", "123")


def test_a_key_written_in_the_wrong_section_names_the_section_that_holds_it(tmp_path):
    # `max_steps` at the top was "valid keys here: model, data, ..."; `training.dtype` nothing of model.dtype.
    p = tmp_path / "c.yaml"
    p.write_text("max_steps: 3\ntraining:\n  dtype: float32\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["model.lr=1e-4"])
    said = str(e.value)
    assert f"{p}:1: unknown key 'max_steps' (did you mean 'training.max_steps'? It is a key of another section)" in said
    assert f"{p}:3: unknown key 'training.dtype' (did you mean 'model.dtype'?" in said, said
    assert "unknown key 'model.lr' (did you mean 'training.lr' or 'detection.caption_refit.lr'?" in said, said


def test_unknown_section_suggests_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trainig:\n  seed: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'trainig' \(did you mean 'training'\?\)"):
        load_config(p)


def test_wrong_type_names_key_and_expected_type(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  per_device_batch_size: two\n  bf16: maybe\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:2: 'training.per_device_batch_size' must be an integer, got 'two'" in str(e.value)
    assert "'training.bf16' must be true or false" in str(e.value)


def test_a_boolean_where_a_number_belongs_is_refused_and_a_quoted_number_is_read(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  seed: yes\n  max_grad_norm: '0.5'\n  lr:\n    llm: 1e-5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:2: 'training.seed': must be a number, got true (YAML reads true/false, "
                                   "yes/no and on/off as booleans)")
    with pytest.raises(ConfigError, match=r"training.detection_freeze_epochs=on \(override\): .* must be a number"):
        load_config(ROOT / "configs" / "demo.yaml", ["training.detection_freeze_epochs=on"])
    p.write_text("training:\n  seed: 7\n  max_grad_norm: '0.5'\n  bf16: false\n  lr:\n    llm: 1e-5\n", encoding="utf-8")
    training = load_config(p).training
    assert (training.seed, training.max_grad_norm, training.bf16, training.lr.llm) == (7, 0.5, False, 1e-5)


def test_bad_value_is_rejected(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  min_pixels: 9000\n  max_pixels: 100\ndata:\n  collator: zipped\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "min_pixels (9000) must not exceed max_pixels (100)" in str(e.value)
    assert "data.collator" in str(e.value)


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(p)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config: No such file or directory$"):
        load_config(tmp_path / "nope.yaml")
    from typer.testing import CliRunner

    from bbuvl.cli import app

    # An override typed before the config was read as the config's name, and the message said only "no such file".
    r = CliRunner().invoke(app, ["train", "training.seed=1", str(ROOT / "configs" / "demo.yaml")])
    assert r.exit_code == 2 and "training.seed=1: cannot read config: No such file or directory; the config file " \
                                "comes before the key=value overrides" in " ".join(r.output.split()), r.output


def test_overrides_are_typed_and_validated():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["training.lr.llm=1e-5", "model.lora.enabled=true", "data.val=null"])
    assert cfg.training.lr.llm == pytest.approx(1e-5)
    assert cfg.model.lora.enabled is True
    assert cfg.data.val is None
    with pytest.raises(ConfigError, match="did you mean 'training.num_epochs'"):
        load_config(None, ["training.num_epoch=3"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["training.seed"])


def test_a_quoted_override_is_text_as_in_a_file_and_an_unquoted_exponent_a_number():
    # Before: the way out the type error names, `training.output_dir="1e-4"`, was read as 0.0001 again
    assert parse_overrides(['training.output_dir="1e-4"', "model.path='2.5'", "training.lr.llm=1e-4"]) == [
        ("training.output_dir", "1e-4"), ("model.path", "2.5"), ("training.lr.llm", 1e-4)]
    assert load_config(None, ['training.output_dir="1e-4"']).training.output_dir == "1e-4"


def test_dump_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    p = tmp_path / "round.yaml"
    p.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(p) == cfg


def test_the_frame_comes_from_one_source_then_explicit_bounds(tmp_path):
    from bbuvl.config import resolve_frame
    from bbuvl.data.coords import CoordinateContract

    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  family: qwen2_5_vl\n  min_pixels: 3136\n  max_pixels: 50176\n  max_vision_tokens: 32\n",
                   encoding="utf-8")
    assert resolve_frame(cfg) == CoordinateContract(3136, 50176, max_vision_tokens=32)
    assert resolve_frame(cfg, max_pixels=12544) == CoordinateContract(3136, 12544, max_vision_tokens=32)
    CoordinateContract(6272, 12544).save(tmp_path)
    assert resolve_frame(checkpoint=tmp_path) == CoordinateContract(6272, 12544)
    assert resolve_frame() == CoordinateContract()
    with pytest.raises(ValueError, match="not both"):
        resolve_frame(cfg, tmp_path)
    # A model not here yet, family auto: named with the config, and the key that needs no model
    auto = tmp_path / "auto.yaml"
    auto.write_text(f"model:\n  path: {tmp_path / 'not-downloaded'}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(auto))}: model.family auto reads the family .* set "
                                         r"model.family \(one of qwen2_5_vl, "):
        resolve_frame(auto)
    with pytest.raises(ValueError, match="must not exceed"):
        resolve_frame(cfg, min_pixels=10**6)
    (tmp_path / "run" / "final").mkdir(parents=True)  # a run's folder given for its final/ checkpoint is named so
    with pytest.raises(ValueError, match="a training run's folder, not a checkpoint: give its final/"):
        resolve_frame(checkpoint=tmp_path / "run")


def test_a_batch_of_full_size_photos_that_would_overflow_a_budget_is_named_with_the_value_that_fits():
    """The collator drops what overflows a budget; training refuses such a config instead, `config check` names it."""
    qwen35 = ROOT / "configs" / "qwen3_5_0.8b.yaml"
    assert batch_budget_problems(load_config(qwen35)) == []
    # The Qwen3.5 config's old budget: 8 photos of 1280 tokens, each with a teacher, are 20,480 vision tokens. A
    # checkpoint trained with it still loads; only a run's start refuses it.
    old = load_config(qwen35, ["model.max_vision_tokens_per_batch=8192"])
    [problem] = batch_budget_problems(old)
    assert "model.max_vision_tokens_per_batch (8192)" in problem and "raise it to 20480" in problem
    assert batch_budget_problems(load_config(qwen35, ["model.max_vision_tokens_per_batch=8192", "data.teacher_ratio=0",
                                                      "training.per_device_batch_size=6"])) == []  # 6 x 1280 fits
    # max_pixels caps a photo's tokens too: 50,176 px are 64 tokens of 28 x 28 px (the family unnamed: the smallest
    # factor), 49 of 32 x 32 px.
    small = ["model.max_pixels=50176", "model.min_pixels=3136", "model.max_vision_tokens_per_batch=256"]
    assert batch_budget_problems(load_config(None, [*small, "training.per_device_batch_size=2"])) == []
    [problem] = batch_budget_problems(load_config(None, [*small, "training.per_device_batch_size=3"]))
    assert "raise it to 384" in problem
    [problem] = batch_budget_problems(load_config(None, [*small, "training.per_device_batch_size=3"]), factor=32)
    assert "(49 vision tokens" in problem and "raise it to 294" in problem
    # Packed rows: the batch's samples at data.max_length must fit data.pack_max_tokens.
    [problem] = batch_budget_problems(load_config(None, ["data.collator=packed", "training.per_device_batch_size=3",
                                                         "data.max_length=4096"]))
    assert "data.pack_max_tokens (8192)" in problem and "raise it to 12288" in problem
    # GRPO collates its rollouts without budgets: nothing to refuse.
    assert batch_budget_problems(load_config(ROOT / "configs" / "grpo.yaml", ["model.max_vision_tokens_per_batch=1024"])) == []


def _tiny_batch_tokens(model_dir: Path) -> int:
    """The vision tokens of a batch of `run_config`'s: 2 full-size photos (max_pixels 50,176: 224 x 224) with a
    teacher each, as the tiny model's own image processor counts a photo (Qwen2.5-VL's 28-px tokens: 64 a photo,
    256 a batch; Qwen3-VL's and Qwen3.5's 32-px ones: 49 and 196)."""
    from PIL import Image

    from bbuvl.model.loading import load_processor

    processor = load_processor(str(model_dir)).image_processor
    size = {"shortest_edge": 12544, "longest_edge": 50176}  # run_config's model.min_pixels and max_pixels
    [grid] = processor(images=[Image.new("RGB", (224, 224))], size=size, return_tensors="pt")["image_grid_thw"]
    return 2 * 2 * int(grid.prod()) // processor.merge_size ** 2


def test_config_check_and_a_training_start_refuse_a_batch_that_would_overflow_its_budget(run_config, tiny_model_dir,
                                                                                        tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.train.trainer import build_run

    qwen35 = ROOT / "configs" / "qwen3_5_0.8b.yaml"
    result = CliRunner().invoke(app, ["config", "check", str(qwen35), "model.max_vision_tokens_per_batch=8192"])
    assert result.exit_code == 2 and "raise it to 20480" in result.output
    assert CliRunner().invoke(app, ["config", "check", str(qwen35)]).exit_code == 0
    need = _tiny_batch_tokens(tiny_model_dir)  # one token short of it is refused, naming the value that fits
    with pytest.raises(ConfigError, match=f"raise it to {need}"):
        build_run(run_config(f"model.max_vision_tokens_per_batch={need - 1}"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_file_far_larger_than_any_config_is_refused_without_reading_it_whole(tmp_path):
    """A dataset, a log or /dev/zero given as the config was read whole into memory (/dev/zero: a MemoryError), and
    YAML parses about 50 KB a second (a 100 MB list ran past five minutes)."""
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.config import MAX_CONFIG_BYTES

    path = tmp_path / "huge.yaml"
    path.write_text("training:\n  seed: 1\n# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "larger than 256 KiB, which no config is" in result.output
    assert str(path) in result.output.replace("\n", "")
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        load_config("/dev/zero")
    path.write_text("training:\n  seed: 1\n# " + "x" * (MAX_CONFIG_BYTES - 40) + "\n", encoding="utf-8")
    assert load_config(path).training.seed == 1  # up to the bound, a config reads as before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_more_values_than_any_config_holds_are_refused_as_they_are_read(tmp_path):
    """The count of values used to be taken once YAML had built every node of the file."""
    import time

    path = tmp_path / "list.yaml"
    path.write_text("training:\n  seed: 1\nx:\n"
                    + "".join(f"  - {i}\n" for i in range(25_000)), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"{path}:\d+: more than 20,000 values; a config is a few hundred"):
        load_config(path)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("key", ["training.output_dir", "model.path", "data.train", "data.val", "data.hierarchy",
                                 "detection.caption_refit.photos"])
@pytest.mark.parametrize("typed", ['""', "' '"])
def test_an_empty_path_is_refused_naming_the_key(tmp_path, key, typed):
    """Path("") is the current folder: `training.output_dir=""` trained into the folder the command ran in."""
    with pytest.raises(ConfigError, match=rf"{key}={typed} \(override\): '{key}': an empty path"):
        load_config(None, [f"{key}={typed}"])
    p = tmp_path / "c.yaml"
    section, name = key.rsplit(".", 1)
    nested = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(section.split(".")))
    p.write_text(f"{nested}{'  ' * len(section.split('.'))}{name}: {typed}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{p}:{len(section.split('.')) + 1}: '{key}': an empty path"):
        load_config(p)
    assert load_config(None, ["data.val=null"]).data.val is None  # null still unsets what may be unset


def test_an_empty_config_file_is_refused_and_braces_still_mean_every_default(tmp_path):
    """An empty file (cut short, or the wrong one) trained with every default: a 3B model from the hub, runs/bbu-3b."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    for text in ("", "# only a comment\n\n"):
        p = tmp_path / "c.yaml"
        p.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(app, ["config", "check", str(p)])
        assert result.exit_code == 2 and "holds no settings (the file is empty or only comments)" in result.output
        with pytest.raises(ConfigError, match=f"{p}: holds no settings"):
            load_config(p)
    p.write_text("{}\n", encoding="utf-8")
    assert load_config(p) == Config()


def test_train_validate_only_refuses_what_config_check_and_a_training_start_refuse(tmp_path):
    """`bbuvl train --validate-only` said "is valid" of a config whose batches overflow a budget, which `config check`
    and the training start refuse."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    qwen35 = str(ROOT / "configs" / "qwen3_5_0.8b.yaml")
    over = ["model.max_vision_tokens_per_batch=8192", f"training.output_dir={tmp_path / 'run'}"]
    checked = CliRunner().invoke(app, ["config", "check", qwen35, *over])
    validated = CliRunner().invoke(app, ["train", qwen35, *over, "--validate-only"])
    assert checked.exit_code == validated.exit_code == 2
    assert "raise it to 20480" in validated.output and validated.output == checked.output
    ok = CliRunner().invoke(app, ["train", qwen35, f"training.output_dir={tmp_path / 'run'}", "--validate-only"])
    assert ok.exit_code == 0 and "is valid" in ok.output
    assert not (tmp_path / "run").exists()


def test_config_check_refuses_packed_rows_for_a_family_the_training_start_refuses_them_for(tmp_path):
    """`config check` said "is valid" of packed rows for Qwen3.5, named by its config, which the start refuses."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    qwen35 = str(ROOT / "configs" / "qwen3_5_0.8b.yaml")
    over = ["data.collator=packed", "data.pack_max_tokens=40000", f"training.output_dir={tmp_path / 'run'}"]
    checked = CliRunner().invoke(app, ["config", "check", qwen35, *over])
    validated = CliRunner().invoke(app, ["train", qwen35, *over, "--validate-only"])
    assert checked.exit_code == validated.exit_code == 2, checked.output
    said = " ".join(checked.output.split())
    assert "data.collator=packed (override): data.collator: packed is refused for Qwen3.5" in said, said
    assert validated.output == checked.output
    # A model of `family: auto` that is not on this machine is not read: the start reads it.
    assert CliRunner().invoke(app, ["config", "check", str(ROOT / "configs" / "demo.yaml"), "data.collator=packed",
                                    "model.path=/nowhere/model"]).exit_code == 0
    assert not (tmp_path / "run").exists()


def test_a_mapping_override_merges_into_its_section_and_the_later_of_two_overrides_wins(tmp_path):
    """`training={max_steps: 3}` replaced the whole section: the config's output_dir, seed and learning rates went
    back to their defaults (runs/bbu-3b), where Hydra merges the mapping into the section. Two overrides of one key
    apply in order, the later winning, as in Hydra (`scripts/demo.sh` passes the user's after its own)."""
    p = tmp_path / "c.yaml"
    p.write_text(f"training:\n  seed: 7\n  output_dir: {tmp_path / 'run'}\n  lr:\n    llm: 1.0e-5\n", encoding="utf-8")
    training = load_config(p, ["training={max_steps: 3, lr: {vision: 0.5}}"]).training
    assert (training.seed, training.output_dir, training.max_steps) == (7, str(tmp_path / "run"), 3)
    assert (training.lr.llm, training.lr.vision) == (1e-5, 0.5)
    assert load_config(p, ["training.seed=1", "training={seed: 2}", "training.seed=3"]).training.seed == 3
    assert load_config(p, ["training.seed=5", "training={max_steps: 4}"]).training.seed == 5
    assert load_config(p, ["training={}"]).training == load_config(p).training
    # A wrong value is blamed on the override that set it, however it was spelt.
    with pytest.raises(ConfigError, match=r"^training=\{seed: x\} \(override\): 'training.seed' must be an integer"):
        load_config(p, ["training.seed=1", "training={seed: x}"])
    with pytest.raises(ConfigError, match=r"^training.seed=x \(override\): 'training.seed' must be an integer"):
        load_config(p, ["training.seed=x", "training={max_steps: 4}"])
    with pytest.raises(ConfigError, match=r"^training.seed.x=3 \(override\): 'training.seed' must be an integer"):
        load_config(p, ["training.seed=5", "training.seed.x=3"])
    with pytest.raises(ConfigError, match=r"with training=\{2: 1\} \(override\): the key 2 under 'training' is read as "
                                          r"a number"):
        load_config(p, ["training={2: 1}"])  # merged in as the key it is, not as the text '2'
    from typer.testing import CliRunner

    from bbuvl.cli import app

    for command in (["train"], ["config", "check"], ["config", "print"]):
        shown = " ".join(re.sub("[│╭╮╰╯─]", " ", CliRunner().invoke(app, [*command, "--help"]).output).split())
        assert "of two for one key the later wins, and a mapping (training='{max_steps: 3}') merges" in shown, command


@pytest.mark.parametrize(("text", "override", "line", "section", "held"), [
    ("model:\n  - a\n", "model.path=m", 1, "model", "['a']"),
    ("training:\n  seed: 1\n  lr: 3\n", "training.lr.llm=1", 3, "training.lr", "3"),
    ("training:\n  lr: 3\n", "training.lr={llm: 1}", 2, "training.lr", "3"),
    ("detection: off\n", "detection.num_queries=8", 1, "detection", "False"),
])
def test_a_section_the_file_gives_as_no_mapping_is_refused_at_its_line_though_an_override_sets_a_key_in_it(
        tmp_path, text, override, line, section, held):
    """`model: [a]` in the file with `model.path=...` on the command line trained with every other model key at its
    default (bf16 on a CPU, refused for that): the override replaced the file's value, and its error went unsaid."""
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p, [override])
    assert str(e.value).startswith(f"{p}:{line}: '{section}' must be a mapping of ")
    assert str(e.value).endswith(f", got {held} (the override '{override}' sets a key inside it)")
    # An empty section is a mapping not yet written, and an earlier override may replace the section (null: every
    # default) before a later one sets a key in it: of two overrides the later wins.
    p.write_text("model:\n", encoding="utf-8")
    assert load_config(p, ["model.path=m"]).model.path == "m"
    p.write_text(text, encoding="utf-8")
    assert load_config(p, [f"{section}=null", override]) is not None


@pytest.mark.parametrize(("override", "value"), [("training.output_dir=runs/lr 1e-4 #2", "'runs/lr 1e-4'"),
                                                 ("data.val=#2", "None"), ("training.seed=1 # why", "1")])
def test_an_override_yaml_would_cut_at_a_comment_is_refused(override, value):
    """`training.output_dir="runs/exp #3"` trained into runs/exp, and `data.val=#2` without validation: YAML reads a
    '#' after a space as a comment. A quoted '#', or one inside a word, is kept."""
    with pytest.raises(ConfigError, match=rf"override '{re.escape(override)}': YAML reads a '#'.*so the value would be "
                                          rf"{re.escape(value)}; quote the value"):
        load_config(None, [override])
    assert load_config(None, ["training.output_dir='runs/exp #3'"]).training.output_dir == "runs/exp #3"
    assert load_config(None, ["training.output_dir=runs/exp#3"]).training.output_dir == "runs/exp#3"
    assert load_config(None, ["training={output_dir: 'a #b'}"]).training.output_dir == "a #b"


def test_a_config_with_a_control_character_or_a_latin1_byte_names_its_line(tmp_path):
    """YAML's message for a NUL named only a position in "<unicode string>", and a byte that is not UTF-8 only its
    offset: neither said which line of the file to fix."""
    p = tmp_path / "c.yaml"
    p.write_bytes(b"training:\n  seed: 1\x00\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}:2: control character '\\x00' at column 10"):
        load_config(p)
    p.write_bytes(b"training:\n  seed: 1\n  # caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}:3: not UTF-8 text"):
        load_config(p)
    p.write_bytes(b"\xef\xbb\xbftraining:\n  seed: 3\n")  # a byte-order mark, as some editors save, is text
    assert load_config(p).training.seed == 3


def test_a_folder_given_as_the_config_says_so_and_names_a_checkpoints_own_config(tmp_path):
    """A checkpoint folder given as CONFIG was '[Errno 21] Is a directory'."""
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: a folder, not a YAML config$"):
        load_config(tmp_path)
    (tmp_path / "ckpt" / "bbuvl.yaml").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"a folder, not a YAML config; the config that checkpoint trained with is "
                                          rf"{re.escape(str(tmp_path / 'ckpt' / 'bbuvl.yaml'))}"):
        load_config(tmp_path / "ckpt")


def test_a_dotted_key_in_a_yaml_file_says_to_nest_it(tmp_path):
    """`lora.r: 8` under model: was "unknown key 'model.lora.r'", which reads as a key that exists."""
    p = tmp_path / "c.yaml"
    p.write_text("training.seed: 3\nmodel:\n  lora.r: 8\n  lora.rr: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert f"{p}:1: unknown key 'training.seed': a YAML config nests its keys rather than dotting them; write " \
           "'training:' and 'seed: ...' indented under it (only key=value overrides are dotted)" in lines
    assert f"{p}:3: unknown key 'lora.r' under 'model': a YAML config nests its keys rather than dotting them; " \
           "write 'lora:' and 'r: ...' indented under it (only key=value overrides are dotted)" in lines
    assert f"{p}:4: unknown key 'model.lora.rr' (did you mean 'model.lora'?)" in lines  # no such key nested either


@pytest.mark.parametrize(("value", "said"), [("caf\udce9", "byte 0xe9, which is not UTF-8, at character 4"),
                                             ("a\x01b", r"control character '\\x01', at character 2")],
                         ids=["latin-1", "control"])
def test_an_override_with_a_byte_that_is_no_text_names_it_and_where(value, said):
    """A Latin-1 byte from the shell (Python keeps it as a lone surrogate) or a control character was YAML's
    "unacceptable character #xdce9 ... in "<unicode string>", position 3", over two lines."""
    with pytest.raises(ConfigError, match=rf"^override 'training.output_dir': {said} of its value; a value is text$"):
        load_config(None, [f"training.output_dir={value}"])
    assert load_config(None, ["training.output_dir=café"]).training.output_dir == "café"


def test_a_key_yaml_reads_as_no_text_names_its_own_line(tmp_path):
    """`~: 4` named no line at all ("'None': Keys should be strings"), and `yes:` under training was "'training.1':
    ... got True" at the section's line."""
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  seed: 3\n  yes: 3\n  2: 2\n~: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = [line.split(", not text")[0] for line in str(e.value).splitlines()]
    assert sorted(lines) == sorted([f"{p}:3: the key True under 'training' is read as a boolean",
                                    f"{p}:4: the key 2 under 'training' is read as a number",
                                    f"{p}:5: the key None is read as null"])
    assert "YAML reads yes/no, on/off and true/false as booleans" in str(e.value)


@pytest.mark.parametrize(("typed", "read"), [("010", 8), ("0x10", 16), ("0b11", 3), ("1:30", 90)])
def test_a_number_yaml_reads_in_another_base_is_refused_naming_its_line(tmp_path, typed, read):
    """YAML 1.1 read `save_steps: 010` as 8 and `1:30` as 90 (base 60), silently, in a file or an override."""
    p = tmp_path / "c.yaml"
    p.write_text(f"training:\n  seed: 3\n  save_steps: {typed}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}:3: '{typed}' is read by YAML as {read} \(YAML 1.1"):
        load_config(p)
    with pytest.raises(ConfigError, match=rf"^override 'training.save_steps={typed}': '{typed}' is read by YAML as "
                                          rf"{read} .* write the number in decimal digits"):
        load_config(None, [f"training.save_steps={typed}"])
    p.write_text(f"training:\n  save_steps: 1_000\n  output_dir: '{typed}'\n", encoding="utf-8")  # quoted: text
    assert (load_config(p).training.save_steps, load_config(p).training.output_dir) == (1000, typed)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_named_pipe_no_one_writes_to_is_refused_at_once_and_one_written_to_is_read(tmp_path):
    """`bbuvl train some.fifo` waited forever for a writer; `bbuvl train <(make_config)` must still read its pipe."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    code = f"from bbuvl.config import load_config; load_config({str(fifo)!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{fifo}: a pipe no process writes to (or wrote nothing)" in r.stderr, r.stderr
    shell = f"{sys.executable} -c 'import sys; from bbuvl.config import load_config; " \
            "print(load_config(sys.argv[1]).training.seed)' <(printf 'training:\\n  seed: 7\\n')"
    r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "7", r.stderr


def _budget_config(tmp_path, *extra: str) -> Path:
    """A config of 3 large photos a batch, each with a teacher (7,680 vision tokens), under a budget of 4,096."""
    path = tmp_path / "run.yaml"
    path.write_text("\n".join([
        "model:",                                    # 1
        "  family: qwen2_5_vl",                      # 2
        "  max_vision_tokens_per_batch: 4096",       # 3
        "training:",                                 # 4
        "  per_device_batch_size: 3",                # 5
        f"  output_dir: {tmp_path / 'run'}",         # 6
        *extra,
    ]) + "\n", encoding="utf-8")
    return path


def test_config_check_names_the_line_of_the_budget_that_a_batch_overflows(tmp_path):
    """Every other config error names file:line; the batch budgets named the file alone."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    path = _budget_config(tmp_path)
    for command in (["config", "check", str(path)], ["train", str(path), "--validate-only"]):
        said = "".join(CliRunner().invoke(app, command).output.split())
        assert f"{path}:3:model.max_vision_tokens_per_batch(4096)isbelow" in said, said
    # The budget left at its default: the batch size the file sets is what took the batch over it.
    path.write_text(path.read_text(encoding="utf-8").replace("  max_vision_tokens_per_batch: 4096\n", ""), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", str(path), "training.per_device_batch_size=4"])
    said = "".join(result.output.split())
    assert result.exit_code == 2 and "training.per_device_batch_size=4(override):model.max_vision_tokens_per_batch(8192)" \
        in said, said
    said = "".join(CliRunner().invoke(app, ["config", "check", str(path), "training.per_device_batch_size=4",
                                            "data.collator=packed"]).output.split())
    assert "training.per_device_batch_size=4(override):data.pack_max_tokens(8192)" in said, said


def test_a_training_start_refused_for_its_budget_names_the_line_too(run_config, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app

    path = tmp_path / "tiny.yaml"
    short = _tiny_batch_tokens(tiny_model_dir) - 1
    path.write_text(dump_config(run_config(f"model.max_vision_tokens_per_batch={short}")), encoding="utf-8")
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if "max_vision_tokens_per_batch" in text)
    for flags in ([], ["--dry-run"]):
        result = CliRunner().invoke(app, ["train", str(path), *flags])
        said = "".join(result.output.split())
        assert result.exit_code == 2 and f"{path}:{line}:model.max_vision_tokens_per_batch({short})" in said, said
    assert not (tmp_path / "run").exists()


def test_config_check_refuses_a_grpo_reward_function_the_run_could_not_import_at_its_line(tmp_path):
    """`config check` said "valid" of a GRPO config whose reward function's module does not exist; the run's start
    refused it."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    path = tmp_path / "grpo.yaml"
    path.write_text("training:\n  method: grpo\ngrpo:\n  rewards:\n    user: 1.0\n    user_function: nosuchmodule_zz:f\n",
                    encoding="utf-8")
    for command in (["config", "check", str(path)], ["train", str(path), "--validate-only"]):
        result = CliRunner().invoke(app, command)
        said = "".join(result.output.split())
        assert result.exit_code == 2 and f"{path}:6:grpo.rewards.user_function:cannotimportmodule'nosuchmodule_zz'" in said, said
    fixed = CliRunner().invoke(app, ["config", "check", str(path), "grpo.rewards.user_function=tests.rl.reward_fns:answer_size"])
    assert fixed.exit_code == 0 and "valid" in fixed.output
    said = "".join(CliRunner().invoke(app, ["config", "check", str(path), "grpo.rewards.user_function=math:pi"]).output.split())
    assert "grpo.rewards.user_function=math:pi(override):grpo.rewards.user_function:'pi'ofmodule'math'isafloat" in said, said
    sft = CliRunner().invoke(app, ["config", "check", str(path), "training.method=sft"])  # SFT never calls it
    assert sft.exit_code == 0, sft.output


def test_an_override_with_nothing_after_its_equals_sign_is_said_to_set_null():
    """`training.output_dir=` said "must be a string, got None", naming no reason a None was there."""
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs" / "demo.yaml", ["training.output_dir="])
    assert ("training.output_dir= (override): 'training.output_dir' must be a string, got None (an override with nothing "
            "after '=' sets null)") in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs" / "demo.yaml", ["training.max_steps=null"])
    assert "sets null" not in str(e.value)


def test_config_show_and_validate_are_print_and_check(tmp_path):
    """`bbuvl config show` and `config validate`, the names people try first, said "No such command"."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    p = tmp_path / "c.yaml"
    p.write_text("training:\n  max_steps: 3\n", encoding="utf-8")
    shown, printed = (CliRunner().invoke(app, ["config", name, str(p), "training.seed=7"]) for name in ("show", "print"))
    assert shown.exit_code == printed.exit_code == 0 and shown.output == printed.output and "seed: 7" in shown.output
    checked = CliRunner().invoke(app, ["config", "validate", str(p), "training.max_stpes=3"])
    assert checked.exit_code == 2 and "did you mean 'training.max_steps'?" in checked.output
    assert "show" not in CliRunner().invoke(app, ["config", "--help"]).output.replace("Show and", "")


def test_config_check_notes_the_files_it_names_that_are_not_on_this_machine(tmp_path):
    """A config is valid anywhere, but `ok` alone hid that training here would refuse its data or model path."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    there = tmp_path / "train.jsonl"
    there.write_text("", encoding="utf-8")
    p = tmp_path / "c.yaml"
    p.write_text(f"model:\n  path: {tmp_path / 'no-model'}\ndata:\n  train: {there}\n  val: {tmp_path / 'val.jsonl'}\n"
                 "training:\n  bf16: false\n", encoding="utf-8")  # bf16 is noted on a machine without it: not here
    for name in ("check", "validate"):
        done = CliRunner().invoke(app, ["config", name, str(p)])
        said = "".join(done.output.split())  # rich wraps long lines, inside a path too
        assert done.exit_code == 0 and "isvalid" in said, done.output
        notes = said.split("note:")[1:]
        assert len(notes) == 2, done.output  # val and the model; train is there, teachers left at its optional default
        assert "".join(f"{p}:5: data.val {tmp_path / 'val.jsonl'}: no such file".split()) in notes[0], done.output
        assert "".join(f"{p}:2: model.path {tmp_path / 'no-model'}: no such folder".split()) in notes[1], done.output
    done = CliRunner().invoke(app, ["train", str(p), "--validate-only"])
    assert done.exit_code == 0 and done.output.count("note: ") == 2, done.output


@pytest.mark.parametrize("key, ours", [("num_generations", "group_size"), ("max_completion_length", "max_new_tokens"),
                                       ("epsilon", "epsilon_low"), ("reward_weights", "rewards")])
def test_a_grpo_key_spelt_as_trls_names_ours(key, ours):
    """`grpo.num_generations` (TRL's group size) was offered 'grpo.max_new_tokens', the nearest spelling."""
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"grpo.{key}=4"])
    assert f"unknown key 'grpo.{key}' (did you mean 'grpo.{ours}'?)" in str(e.value)


def test_an_integer_longer_than_python_reads_is_refused_at_its_line_in_the_file_and_in_an_override(tmp_path):
    """`max_steps: 999...` of 5,000 digits was a ValueError traceback from YAML's constructor ("Exceeds the limit (4300
    digits) for integer string conversion"), in the file and on the command line alike."""
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  seed: 1\n  max_steps: " + "9" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"{p}:3: a number of 5,000 digits, more than Python reads (4,300) and than any value of a "
                            "config holds")
    with pytest.raises(ConfigError, match=r"^override 'training.max_steps':1: a number of 5,001 digits"):
        load_config(None, ["training.max_steps=-1_" + "9" * 5000])
    assert load_config(None, ["training.max_steps=" + "9" * 40]).training.max_steps == int("9" * 40)  # long, still read


def test_config_check_notes_the_settings_this_machine_cannot_run_without_refusing_them(tmp_path):
    """flash_attention_2, QLoRA's 4 or 8 bits and a DeepSpeed config passed `config check` on a machine whose training
    start refuses them before the model loads; they are noted there now, as a data file missing here is."""
    import importlib.util

    import torch
    from typer.testing import CliRunner

    from bbuvl.cli import app

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine may run them")
    over = ["model.attn_implementation=flash_attention_2", "model.lora.enabled=true", "model.lora.bits=4",
            f"training.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}"]
    result = CliRunner().invoke(app, ["config", "check", str(ROOT / "configs" / "base.yaml"), *over],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "is valid" in said, said
    assert ("note: model.attn_implementation=flash_attention_2 (override): training on this machine would refuse it: "
            "model.attn_implementation flash_attention_2 needs a CUDA GPU") in said, said
    assert "note: model.lora.bits=4 (override): training on this machine would refuse it: 4-bit loading (QLoRA)" in said
    if importlib.util.find_spec("deepspeed") is None:
        assert "training on this machine would refuse it: training.deepspeed is set but the deepspeed package" in said


def test_config_check_notes_the_shipped_bf16_on_a_machine_without_it():
    """`bbuvl config check configs/base.yaml` on a CPU machine said `ok` alone, and `bbuvl train` of the same config
    then refused training.bf16 before the model loaded: it is noted at its line now, as flash_attention_2 is."""
    from transformers.utils import is_torch_bf16_gpu_available
    from typer.testing import CliRunner

    from bbuvl.cli import app

    if is_torch_bf16_gpu_available():
        pytest.skip("this machine's GPU computes in bf16")
    base = ROOT / "configs" / "base.yaml"
    line = next(n for n, text in enumerate(base.read_text("utf-8").splitlines(), 1) if text.startswith("  bf16:"))
    said = " ".join(CliRunner().invoke(app, ["config", "check", str(base)], env={"COLUMNS": "400"}).output.split())
    assert f"note: {base}:{line}: training on this machine would refuse it: training.bf16 is true, but this machine " \
           "has no GPU that computes in bf16" in said, said
    on_cpu = CliRunner().invoke(app, ["config", "check", str(base), "training.use_cpu=true"], env={"COLUMNS": "400"})
    assert on_cpu.exit_code == 0 and "training.bf16" not in on_cpu.output, on_cpu.output
    plain = CliRunner().invoke(app, ["config", "check", str(ROOT / "configs" / "base.yaml"), "model.lora.bits=4"])
    assert "QLoRA" not in plain.output  # bits load nothing quantised without LoRA: the run loads in full precision


def test_a_dumped_config_holds_every_key_so_the_keys_a_checkpoints_lacks_are_the_ones_added_since(tmp_path):
    from bbuvl.config import absent_keys, holds_key

    path = tmp_path / "bbuvl.yaml"
    path.write_text(dump_config(Config()), encoding="utf-8")
    assert absent_keys(load_config(path)) == []  # what every checkpoint's bbuvl.yaml is read as
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    del written["model"]["vision_positions"], written["detection"]["encoder_layers"], written["grpo"]
    path.write_text(yaml.safe_dump(written), encoding="utf-8")
    older = load_config(path)
    assert absent_keys(older) == ["model.vision_positions", "detection.encoder_layers", "grpo"]
    assert older.model.vision_positions  # filled with today's default, which that bbu-vl never built
    assert not holds_key(older, "model.vision_positions") and holds_key(older, "detection.enabled")
    assert not holds_key(older, "grpo.group_size")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_config_check_notes_a_model_path_the_training_start_refuses(tmp_path):
    """`bbuvl config check configs/base.yaml model.path=QWEN3_VL_FOLDER` said `ok` alone, and `bbuvl train` of the same
    refused it before loading ("model.family is qwen2_5_vl but ... holds a qwen3_vl model"); so was a folder without
    its tokenizer. config check asked only whether the folder held a model at all; it asks what the start asks now."""
    import shutil

    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.tiny.model import build_tiny_model

    other = build_tiny_model(tmp_path / "qwen3_vl", seed=0, family="qwen3_vl")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(other / "config.json", broken / "config.json")
    base = str(ROOT / "configs" / "base.yaml")
    for path, said in [(other, f"model.family is qwen2_5_vl but {other} holds a qwen3_vl model; set model.family: auto"),
                       (broken, f"model.path {broken}: incomplete or damaged model folder (no tokenizer")]:
        done = CliRunner().invoke(app, ["config", "check", base, f"model.path={path}", "training.bf16=false"],
                                  env={"COLUMNS": "400"})
        out = " ".join(done.output.split())
        assert done.exit_code == 0 and "is valid" in out, out
        assert f"note: model.path={path} (override): {said}" in out, out
    fine = CliRunner().invoke(app, ["config", "check", base, f"model.path={other}", "model.family=auto",
                                    "training.bf16=false"], env={"COLUMNS": "400"})
    fine_out = " ".join(fine.output.split())
    assert fine.exit_code == 0 and f"note: model.path={other}" not in fine_out, fine_out


def test_config_check_refuses_validation_photos_the_run_would_show_in_training(tmp_path):
    """`bbuvl config check configs/base.yaml data.teachers=data/val.jsonl` said `ok`, and `bbuvl train` of the same
    refused it ("data.teachers data/val.jsonl and data.val data/val.jsonl are the same file: the validation answers
    would be shown in training as teacher examples"); so was a validation photo also listed in data.train."""
    import json

    from typer.testing import CliRunner

    from bbuvl.cli import app

    line = {"images": ["a.jpg"], "width": 64, "height": 48, "objects": []}
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps(line) + "\n", encoding="utf-8")
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({**line, "images": ["b.jpg"]}) + "\n" + json.dumps(line) + "\n", encoding="utf-8")
    base = str(ROOT / "configs" / "base.yaml")
    common = ["training.bf16=false", f"data.val={val}"]
    for over, said in [([f"data.train={train}", f"data.teachers={val}"],
                        f"data.teachers={val} (override): data.teachers {val} and data.val {val} are the same file"),
                       ([f"data.train={train}", "data.teachers=null"],
                        f"data.train={train} (override): {train}:2: training photo a.jpg is also a photo of data.val")]:
        done = CliRunner().invoke(app, ["config", "check", base, *common, *over], env={"COLUMNS": "400"})
        out = " ".join(done.output.split())
        assert done.exit_code == 2 and "is valid" not in out and said in out, out


def test_config_check_refuses_an_output_folder_every_start_of_the_run_refuses(tmp_path):
    """`bbuvl config check configs/base.yaml training.output_dir=data` said `ok`, and `bbuvl train` of the same refused
    it, --overwrite or not ("training.output_dir data: holds the input data.train (data/train.jsonl); writing into it
    could destroy the input"); so was an output folder inside model.path or inside another run's final/."""
    import json

    from typer.testing import CliRunner

    from bbuvl.cli import app

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"images": ["a.jpg"], "width": 64, "height": 48, "objects": []}) + "\n",
                                      encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "old" / "final").mkdir(parents=True)
    (tmp_path / "old" / "run.json").write_text("{}", encoding="utf-8")
    base = str(ROOT / "configs" / "base.yaml")
    common = ["training.bf16=false", f"data.train={data / 'train.jsonl'}", "data.val=null", "data.teachers=null",
              f"model.path={model}", "model.family=auto"]
    for out, said in [(data, f"training.output_dir {data}: holds the input data.train"),
                      (model / "run", f"training.output_dir {model / 'run'}: is inside the input model.path"),
                      (tmp_path / "old" / "final", f"training.output_dir {tmp_path / 'old' / 'final'}: is ")]:
        done = CliRunner().invoke(app, ["config", "check", base, *common, f"training.output_dir={out}"],
                                  env={"COLUMNS": "400"})
        text = " ".join(done.output.split())
        assert done.exit_code == 2 and "is valid" not in text and f"(override): {said}" in text, text
    fine = CliRunner().invoke(app, ["config", "check", base, *common, f"training.output_dir={tmp_path / 'new'}"],
                              env={"COLUMNS": "400"})
    assert "is valid" in fine.output and "training.output_dir" not in fine.output, fine.output


def _scalar_key(section: str) -> tuple[str, str]:
    """A key of `section` whose default is a plain number, flag or word, and that default as an override writes it."""
    import json

    model = Config.model_fields[section].annotation
    for name, field in model.model_fields.items():
        if isinstance(field.default, (bool, int, float, str)) and f"{section}.{name}" not in _NO_DEFAULT_RUN:
            return name, json.dumps(field.default)
    raise AssertionError(section)


_NO_DEFAULT_RUN = ("model.path", "data.train", "data.val", "data.teachers", "training.output_dir")


@pytest.mark.parametrize("section", list(Config.model_fields))
def test_a_section_set_to_null_before_a_key_in_it_says_which_keys_of_the_file_it_drops(section, tmp_path, caplog):
    """`training=null training.max_steps=3` trained with every other training key at its default (runs/bbu-3b, the
    default batch, LRs and precision), without a word: null returns a section to its defaults, and a later key in it
    made it a mapping again. Where that drops a model, data or output path the file set, no run meant it: refused."""
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(Config()), encoding="utf-8")  # every key written
    key, value = _scalar_key(section)
    written = [".".join(k) for k in _leaves(yaml.safe_load(p.read_text(encoding="utf-8"))[section], (section,))]
    dropped = [k for k in written if k != f"{section}.{key}"]  # in the file's order
    lost = [k for k in dropped if k in _NO_DEFAULT_RUN]
    overrides = [f"{section}=null", f"{section}.{key}={value}"]
    if lost:
        with pytest.raises(ConfigError) as e:
            load_config(p, overrides)
        said = str(e.value)
        assert said.startswith(f"{section}=null (override): null returns every key of the section '{section}' to its "
                               f"default, dropping the {len(dropped)} keys {p} sets in it: ")
        assert f"{', '.join(lost)} would take the default, which names no run of yours" in said
        # Set again after the reset, the path is kept: the rest of the section starts from its defaults, said
        overrides += [f"{k}=somewhere" for k in lost]
        dropped = [k for k in dropped if k not in lost]
    with caplog.at_level("WARNING", logger="bbuvl.config"):
        load_config(p, overrides)
    said = [r.getMessage() for r in caplog.records if r.name == "bbuvl.config"]
    assert len(said) == 1 and said[0].startswith(f"{section}=null (override): null returns every key of the section "
                                                 f"'{section}' to its default, dropping the {len(dropped)} keys")
    named = said[0].split(" sets in it: ")[1].split(". To change")[0]
    assert [re.sub(r" \(line \d+\)", "", k) for k in named.split(", ")] == dropped


def _leaves(node, at: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The dotted paths of the values under `node`."""
    if isinstance(node, dict) and node:
        return [k for name, v in node.items() for k in _leaves(v, (*at, name))]
    return [at]


def test_a_nested_section_set_to_null_names_the_keys_it_drops_and_null_alone_is_still_refused(caplog):
    with caplog.at_level("WARNING", logger="bbuvl.config"):
        cfg = load_config(ROOT / "configs" / "demo.yaml", ["training.lr=null", "training.lr.llm=3"])
    assert cfg.training.lr.vision == type(cfg.training.lr)().vision  # the default, the file's 0.001 dropped
    said = [r.getMessage() for r in caplog.records if r.name == "bbuvl.config"]
    assert len(said) == 1 and ("dropping the 4 keys" in said[0] and "training.lr.vision (line 53), training.lr.merger "
                               "(line 54), training.lr.detection (line 56), training.lr.adapter (line 57)" in said[0])
    # A section the file does not write loses nothing: nothing to say
    caplog.clear()
    with caplog.at_level("WARNING", logger="bbuvl.config"):
        load_config(ROOT / "configs" / "demo.yaml", ["grpo=null", "grpo.group_size=2"])
    assert [r for r in caplog.records if r.name == "bbuvl.config"] == []
    with pytest.raises(ConfigError, match=r"^training=null \(override\): 'training' must be a mapping of "):
        load_config(ROOT / "configs" / "demo.yaml", ["training=null"])
