"""A config saved by Windows' default for Chinese text (GBK, Notepad's "ANSI"), with a Chinese comment or path in it, is
named as such with what to do, as a data file in GBK is (data/text.py gbk_hint): it said only 'not UTF-8 text (invalid
start byte at byte 26); is this a YAML config?'."""

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import ConfigError, load_config


def test_a_config_saved_as_gbk_names_its_line_and_says_to_save_it_as_utf8(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes("training:\n  seed: 1\n  # 机柜照片的训练\n  output_dir: runs/训练\n".encode("gbk"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:3: not UTF-8 text (")
    assert str(e.value).endswith("; it reads as GBK (GB18030) text, as Windows saves Chinese by default: save it as UTF-8")
    done = CliRunner().invoke(app, ["config", "check", str(p)])
    assert done.exit_code == 2 and "save it as UTF-8" in " ".join(done.output.split()), done.output
    p.write_bytes("training:\n  seed: 1\n  # 机柜照片的训练\n  output_dir: runs/训练\n".encode("utf-8"))
    assert load_config(p).training.output_dir == "runs/训练"


def test_a_byte_that_is_no_chinese_text_either_still_asks_whether_it_is_a_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"training:\n  seed: 1\n  # caf\xe9\n")
    with pytest.raises(ConfigError, match="; is this a YAML config\\?$"):
        load_config(p)
