"""A key holding a character no one sees is named with it spelled out: two configs joined with `cat` leave the second's
byte-order mark before its first key, a key pasted from a web page may hold a zero-width space, and a no-break space
indents nothing. Each was 'unknown key 'model' (did you mean 'model'?)', the key and its suggestion looking alike."""

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import ConfigError, load_config


def test_two_configs_joined_name_the_byte_order_mark_of_the_second_at_its_line(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_bytes(b"\xef\xbb\xbftraining:\n  seed: 1\n")  # Notepad's UTF-8 writes one
    second.write_bytes(b"\xef\xbb\xbfmodel:\n  path: x\n")
    joined = tmp_path / "c.yaml"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    assert load_config(first).training.seed == 1  # the file's own mark, at its start, is no key's
    with pytest.raises(ConfigError) as e:
        load_config(joined)
    assert str(e.value) == (f"{joined}:3: unknown key '\\ufeffmodel': it holds invisible or odd spacing characters; it "
                            "is 'model' with a character no one sees: retype the key")
    done = CliRunner().invoke(app, ["config", "check", str(joined)])
    assert done.exit_code == 2 and "unknown key '\\ufeffmodel'" in done.output, done.output


@pytest.mark.parametrize("text, line, said", [
    ("training:\n  se\u200bed: 1\n", 2, "unknown key 'training.se\\u200bed': it holds invisible or odd spacing "
     "characters; it is 'training.seed' with a character no one sees: retype the key"),
    ("training:\n\u00a0 seed: 1\n", 2, "unknown key '\\xa0 seed': it holds invisible or odd spacing characters; it starts "
     "with a no-break space (\\xa0), which YAML reads as part of the key, not as its indentation: indent with spaces"),
])
def test_a_key_with_an_invisible_or_odd_space_is_spelled_out(tmp_path, text, line, said):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:{line}: {said}" in str(e.value).splitlines(), e.value
