"""A number in scientific notation means the same in a config file as on the command line: YAML 1.1 reads `1e3` (no
dot, no sign in the exponent) as text, which an integer key refused in the file ("must be an integer, got '1e3'")
while `training.save_steps=1e3` on the command line trained with 1000. And a fraction where an integer belongs said
what it got twice ('got a number with a fractional part, got 1.5')."""

import pytest

from bbuvl.config import ConfigError, load_config


@pytest.mark.parametrize("key, typed, read", [("training.save_steps", "1e3", 1000), ("model.max_pixels", "1E6", 10**6),
                                              ("training.lr.llm", "5e-6", 5e-6), ("inference.nms_iou", ".5e0", 0.5)])
def test_scientific_notation_reads_as_the_same_number_in_the_file_and_on_the_command_line(tmp_path, key, typed, read):
    section, *inner = key.split(".")
    p = tmp_path / "c.yaml"
    p.write_text(f"{section}:\n" + "".join(f"{'  ' * (i + 1)}{k}:\n" for i, k in enumerate(inner[:-1]))
                 + f"{'  ' * len(inner)}{inner[-1]}: {typed}\n", encoding="utf-8")

    def value(cfg):
        for part in key.split("."):
            cfg = getattr(cfg, part)
        return cfg

    assert value(load_config(p)) == value(load_config(None, [f"{key}={typed}"])) == read


def test_text_that_only_looks_like_a_number_stays_text_and_a_fraction_is_said_once(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  output_dir: 1e3\n", encoding="utf-8")
    assert load_config(p).training.output_dir == "1e3"  # a path key takes the text as typed
    for typed, said in (("e3", "'training.save_steps' must be an integer, got 'e3'"),
                        ("1.5e0", "'training.save_steps' must be an integer, got 1.5"),
                        ("2.5", "'training.save_steps' must be an integer, got 2.5")):
        p.write_text(f"training:\n  save_steps: {typed}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_config(p)
        assert str(e.value) == f"{p}:2: {said}"
