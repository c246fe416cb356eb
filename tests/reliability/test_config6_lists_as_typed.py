"""A list key given one text, as a shell user types it (`inference.zoom_containers=机柜,空开`) or as a YAML user who
forgot the brackets (`target_modules: q_proj`), says how a list is written, with the items typed: 'must be a list, got
'a,b'' left the spelling to be guessed."""

import pytest

from bbuvl.config import ConfigError, load_config


@pytest.mark.parametrize("override, written", [("inference.zoom_containers=机柜,空开", "[机柜, 空开]"),
                                               ("model.lora.target_modules=q_proj", "[q_proj]")])
def test_a_list_key_given_one_text_says_how_a_list_is_written(override, written):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value).endswith(f"(a list is written {written}, or one item a line after '- ')"), e.value
    key, _ = override.split("=", 1)
    assert load_config(None, [f"{key}={written}"])  # as it says


def test_a_list_key_in_a_file_given_one_text_names_its_line_and_the_spelling(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inference:\n  zoom_containers: cabinet\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"{p}:2: 'inference.zoom_containers' must be a list, got 'cabinet' (a list is written "
                            "[cabinet], or one item a line after '- ')")
