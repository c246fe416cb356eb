"""A key an alias brings into the wrong section is named at the alias, the line to fix. A section reused with
`inference: {<<: *training}` or `grpo: *training` was 'config.yaml:2: unknown key 'inference.seed'', line 2 being the
anchored `training.seed`, which is valid where it is written."""

import pytest

from bbuvl.config import ConfigError, load_config


@pytest.mark.parametrize("text, line, key", [
    ("training: &t\n  seed: 5\ninference:\n  <<: *t\n", 4, "inference.seed"),  # merged
    ("training: &t\n  seed: 5\n  lr: {llm: 1.0e-4}\ngrpo: *t\n", 4, "grpo.seed"),  # aliased whole
    ("training: &t\n  lr: {llm: 1.0e-4}\ninference:\n  tiles: \"off\"\n  <<: *t\n", 5, "inference.lr"),
    ("x: &t {seed: 5}\ninference:\n  <<: [{tiles: \"off\"}, *t]\n", 3, "inference.seed"),  # a list of merges
])
def test_a_key_an_alias_misplaces_is_named_at_the_alias(tmp_path, text, line, key):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(config)
    assert f"{config}:{line}: unknown key '{key}'" in str(e.value), str(e.value)


def test_a_key_of_the_anchor_itself_keeps_its_own_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  lr: &l\n    llm: 1.0e-4\n    nope: 3\ngrpo:\n  group_size: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config(config)
    assert f"{config}:4: unknown key 'training.lr.nope'" in str(e.value), str(e.value)


def test_a_repeated_key_under_an_anchor_is_named_where_it_is_written(tmp_path):
    # it was "duplicate key 'grpo.seed'": the alias's section, visited before the anchor's
    config = tmp_path / "config.yaml"
    config.write_text("training: &t\n  seed: 5\n  seed: 6\ngrpo: *t\n")
    with pytest.raises(ConfigError) as e:
        load_config(config)
    assert str(e.value).startswith(f"{config}:3: duplicate key 'training.seed' (first at line 2)"), str(e.value)
