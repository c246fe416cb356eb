"""Keys that only work together, or contradict each other, are refused naming the line of each: the error named the
first line of their section (`c.yaml:1: 'data': data.sample_cache_mb (100) ...`), so in a copy of configs/base.yaml
neither key the message spoke of was at the line it gave."""

import pytest

from bbuvl.config import ConfigError, load_config


@pytest.mark.parametrize("section, first, second, said", [
    ("data", "sample_cache_mb: 100", "num_workers: 2", "data.sample_cache_mb (100) keeps samples in the training process"),
    ("training", "ema_decay: 0.9", "deepspeed: ds.json", "training.ema_decay averages the full weights"),
    ("inference", "verdict_review: 0.9", "verdict_fail: 0.5", "verdict_review (0.9) must not exceed verdict_fail (0.5)"),
    ("model", "min_pixels: 9000", "max_pixels: 100", "min_pixels (9000) must not exceed max_pixels (100)"),
    ("grpo", "rewards: {format: 1.0}", "constrained: true", "grpo.rewards.format counts only when decoding is free"),
])
def test_two_keys_that_contradict_are_each_named_at_their_own_line(tmp_path, section, first, second, said):
    # The section's first line holds neither key: a few keys stand between, as in the shipped configs.
    filler = {"data": ("lang: zh", "mirror: 0.0"), "training": ("seed: 1", "bf16: false"),
              "inference": ("batch_size: 4", "tiles: 'off'"), "model": ("dtype: float32", "family: auto"),
              "grpo": ("group_size: 4", "top_p: 1.0")}[section]
    p = tmp_path / "c.yaml"
    p.write_text(f"{section}:\n  {filler[0]}\n  {first}\n  {filler[1]}\n  {second}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:3, {p}:5: {said}"), e.value


def test_a_key_of_the_file_and_one_of_an_override_are_named_where_each_was_set(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  lang: zh\n  num_workers: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["data.sample_cache_mb=64"])
    assert str(e.value).startswith(f"data.sample_cache_mb=64 (override), {p}:3: data.sample_cache_mb (64) "), e.value


def test_a_key_set_against_a_default_is_named_at_its_line_alone(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("detection:\n  num_queries: 10\n  pixel_points: 4\n  pixel_context: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)  # caption_refit.steps left at its default 0
    assert str(e.value) == (f"{p}:4: detection.pixel_context is fitted by the caption refit alone (training leaves it "
                            "at zero): set detection.caption_refit.steps above 0, or pixel_context: 0")


@pytest.mark.parametrize("typed, keys, said", [
    ("detection:\n  two_stage: false\n  pixel_points: 4\n", (3, 2),
     "detection.pixel_points is built on the two-stage head's token grid, and detection.two_stage is false"),
    ("detection:\n  two_stage: false\n  fine_features: true\n", (3, 2),
     "detection.fine_features is built on the two-stage head's token grid"),
    ("detection:\n  roi_points: 0\n  box_refine: true\n", (3, 2),
     "detection.box_refine samples the token grid inside the decoder's box on a grid of detection.roi_points a side"),
    ("loss:\n  assignment: overlap\ninference:\n  nms_iou: null\n", (2, 4),
     "loss.assignment: overlap teaches every query at IoU >= 0.5 with an object to find it"),
])
def test_a_head_option_its_other_keys_leave_out_is_refused_naming_both(tmp_path, typed, keys, said):
    """The head built these on the two-stage grid only and dropped them without a word (model/detection_head.py); an
    overlap-trained head's several boxes an object were all kept with no NMS of either kind."""
    p = tmp_path / "c.yaml"
    p.write_text(typed, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:{keys[0]}, {p}:{keys[1]}: {said}"), e.value


def test_the_head_options_that_work_together_are_taken():
    load_config(None, ["detection.two_stage=false"])  # its grid's defaults (local_layers, roi_points) stay unread
    load_config(None, ["detection.pixel_points=4", "detection.box_refine=true", "detection.fine_features=true"])
    load_config(None, ["loss.assignment=overlap", "inference.part_nms=0.5"])  # one box a part keeps one
    load_config(None, ["loss.assignment=overlap", "inference.nms_iou=0.5"])



def test_a_merged_lora_runs_config_keeps_its_adapter_settings_and_reads_back(tmp_path):
    """Not a contradiction: `bbuvl model merge-lora` writes the merged folder's config with model.lora.enabled false and
    the adapters' bits and vision as they trained (model/checkpoint.py merge_lora); refusing them at load broke the merge
    and every merged folder."""
    from bbuvl.config import dump_config

    cfg = load_config(None, ["model.lora.enabled=true", "model.lora.vision=true", "model.lora.bits=4"])
    cfg.model.lora.enabled = False  # as merge_lora sets it (assignment is validated)
    p = tmp_path / "bbuvl.yaml"
    p.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(p).model.lora.vision
