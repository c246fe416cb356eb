"""A config's YAML mistakes are named at the line to fix, in words a user acts on: a quote or bracket never closed was
named at the end of the file ('c.yaml:6: found unexpected end of stream'), a second document ('---', two configs
joined) as 'but found another document', a tab as 'found character that cannot start any token', and a Windows path
in double quotes as an escape sequence of 8 hexadecimal numbers."""

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import ConfigError, load_config


@pytest.mark.parametrize("text, line, said", [
    ('model:\n  path: "runs/x\ntraining:\n  seed: 1\n  max_steps: 3\n', 2,
     "invalid YAML: while scanning a quoted scalar that starts here: found unexpected end of stream at line 6"),
    ("inference:\n  zoom_containers: [a, b\ntraining:\n  seed: 1\n", 2,
     "invalid YAML: while parsing a flow sequence that starts here: expected ',' or ']', but got ':' at line 3"),
    ("training:\n  seed: 1\n---\nmodel:\n  path: x\n", 3,
     "a second YAML document starts here ('---'); a config is one document: remove the '---' line, or what follows it"),
    ("training:\n  seed: 1\n\tmax_steps: 3\n", 3,
     "a tab at column 1, where YAML takes only spaces (to indent, or after a colon): replace it with spaces"),
    ('training:\n  output_dir: "C:\\Users\\me\\runs"\n', 2,
     "inside double quotes a backslash starts an escape: write a Windows path in single quotes or with forward slashes"),
])
def test_a_yaml_mistake_is_named_at_the_line_to_fix(tmp_path, text, line, said):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:{line}: ") and said in str(e.value), e.value


def test_config_check_says_so_in_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  seed: 1\n---\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["config", "check", str(p)])
    assert done.exit_code == 2 and "a second YAML document starts here ('---')" in " ".join(done.output.split())


def test_a_windows_path_in_single_quotes_or_bare_is_read_as_typed(tmp_path):
    p = tmp_path / "c.yaml"
    for typed in ("'C:\\Users\\me\\runs'", "C:\\Users\\me\\runs"):
        p.write_text(f"training:\n  output_dir: {typed}\n", encoding="utf-8")
        assert load_config(p).training.output_dir == "C:\\Users\\me\\runs"
