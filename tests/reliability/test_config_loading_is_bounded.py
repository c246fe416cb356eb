"""Class 6: config loading is bounded and finite: anchor bombs, cycles, deep nesting, inf/NaN, duplicate keys."""

import time

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import ConfigError, load_config

# Nine levels of nine aliases: 9^9 (387 million) values once expanded, from well under a kilobyte of YAML.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
) + "training:\n  seed: 1\n"


def config(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_anchor_bomb_is_refused_quickly_with_a_clear_error(tmp_path):
    path = config(tmp_path, BOMB)
    assert len(BOMB.encode()) < 1024
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="once anchors and aliases are expanded"):
        load_config(path)
    assert time.perf_counter() - start < 5


def test_a_self_referencing_anchor_is_a_config_error_not_a_recursion_error(tmp_path):
    path = config(tmp_path, "training:\n  seed: 1\nloop: &l\n  again: *l\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: an anchor refers to itself"):
        load_config(path)
    path = config(tmp_path, "loop: &l [*l]\n")
    with pytest.raises(ConfigError, match="an anchor refers to itself"):
        load_config(path)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 60))])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_nesting_deeper_than_the_limit_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError, match="nested more than 32 levels deep"):
        load_config(config(tmp_path, text))


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_non_finite_floats_are_rejected_naming_file_line_and_key(tmp_path, value):
    path = config(tmp_path, f"training:\n  lr:\n    llm: {value}\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: 'training.lr.llm' must be a finite number"):
        load_config(path)


@pytest.mark.parametrize("override", ["training.lr.llm=inf", "training.lr.llm=.inf", "loss.bbox_weight=nan",
                                      "monitor.grad_norm_max=1e999", "detection.grad_to_vlm=-inf"])
def test_non_finite_overrides_are_rejected(override):
    with pytest.raises(ConfigError, match="must be a finite number"):
        load_config(None, [override])


def test_config_check_refuses_an_infinite_learning_rate(tmp_path):
    path = config(tmp_path, "training:\n  lr:\n    llm: .inf\n")
    r = CliRunner().invoke(app, ["config", "check", str(path)])
    assert r.exit_code != 0 and "finite number" in r.output


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path):
    path = config(tmp_path, "training:\n  seed: 1\n  lr:\n    llm: 1.0e-5\n  seed: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:5: duplicate key 'training.seed' \(first at line 2\)"):
        load_config(path)
    path = config(tmp_path, "training:\n  seed: 1\nmodel:\n  dtype: float32\ntraining:\n  seed: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:5: duplicate key 'training' \(first at line 1\)"):
        load_config(path)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path):
    path = config(tmp_path, "lr: &lr\n  llm: 2.0e-5\n  vision: 1.0e-6\ntraining:\n  lr:\n    <<: *lr\n    llm: 3.0e-5\n"
                            "  seed: &s 7\nmonitor:\n  every_steps: *s\n")
    with pytest.raises(ConfigError, match="unknown key 'lr'"):  # top-level helper keys are still unknown keys
        load_config(path)
    path = config(tmp_path, "training:\n  lr: &lr\n    llm: 2.0e-5\n    vision: 1.0e-6\n  seed: &s 7\n"
                            "monitor:\n  every_steps: *s\n")
    cfg = load_config(path)
    assert cfg.training.lr.llm == 2e-5 and cfg.monitor.every_steps == 7


def test_a_config_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)
