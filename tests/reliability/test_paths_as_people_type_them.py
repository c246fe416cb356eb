"""Class: paths as people type them. `~` and `$VAR` are expanded in every path a flag or the config takes, an unset
variable is refused, and a local path is never sent to (or reported as) a hub id (bbuvl/paths.py).

Every path option and argument of every command is found by walking the CLI, so a new one is checked too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.cli.common import FILE_OUT, _takes_paths, start_command
from bbuvl.config import ConfigError, load_config
from bbuvl.data.families import model_type_of
from bbuvl.paths import check_model_source, expand_path
from bbuvl.synthetic.dataset import synthesize


def path_params(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, object]]:  # noqa: ANN001 - a click group
    """(command name, parameter) for every path option and argument of every command."""
    found = []
    for name, sub in getattr(command, "commands", {}).items():
        found += path_params(sub, (*prefix, name))
    found += [(" ".join(prefix), param) for param in command.params if _takes_paths(param)]
    return found


def test_every_path_a_command_takes_expands_tilde_and_variables_and_refuses_an_unset_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BBUVL_SET", "/set")
    monkeypatch.delenv("BBUVL_NOT_SET", raising=False)
    root = typer.main.get_command(app)
    start_command(typer.Context(root))  # what every `bbuvl` run does first
    found = path_params(root)
    names = {(c, p.name) for c, p in found}
    assert {("data split", "dataset"), ("predict", "out"), ("eval", "report"), ("fewshot classify", "backbone"),
            ("train", "config"), ("serve", "fewshot_backbone")} <= names  # nested groups walked, text paths included
    for command, param in found:
        ctx = typer.Context(root)
        many = getattr(param, "multiple", False) or getattr(param, "nargs", 1) != 1
        got = param.process_value(ctx, ("~/a",) if many else "~/a")
        assert str(got[0] if many else got) == str(tmp_path / "a"), (command, param.name, got)
        got = param.process_value(ctx, ("$BBUVL_SET/b",) if many else "$BBUVL_SET/b")
        assert str(got[0] if many else got) == "/set/b", (command, param.name, got)
        with pytest.raises(typer.BadParameter, match="BBUVL_NOT_SET is not set"):
            param.process_value(ctx, ("$BBUVL_NOT_SET/x",) if many else "$BBUVL_NOT_SET/x")


def test_an_unset_variable_in_an_option_is_a_usage_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("BBUVL_NOT_SET", raising=False)
    r = CliRunner().invoke(app, ["eval", "--pred", "$BBUVL_NOT_SET/p.jsonl", "--gt", str(tmp_path), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "BBUVL_NOT_SET is not set" in " ".join(r.output.split()), r.output


def test_an_output_typed_with_a_tilde_after_an_equals_sign_lands_in_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    ds = tmp_path / "ds"
    synthesize(ds, 2, 1, seed=0, size=(128, 96))
    r = CliRunner().invoke(app, ["data", "stats", str(ds / "train.jsonl"), "--json=~/stats.json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "home" / "stats.json").is_file() and not (tmp_path / "~").exists()


def test_config_paths_expand_tilde_and_variables_and_refuse_an_unset_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    cfg = load_config(None, ["training.output_dir=~/run", "data.train=$SCRATCH/train.jsonl", "data.val=${SCRATCH}/v.jsonl",
                             "model.path=~/models/qwen", "data.hierarchy=~/h.json", "training.deepspeed=~/ds.json"])
    assert cfg.training.output_dir == str(tmp_path / "run") and cfg.model.path == str(tmp_path / "models" / "qwen")
    assert cfg.data.train == "/scratch/me/train.jsonl" and cfg.data.val == "/scratch/me/v.jsonl"
    assert cfg.data.hierarchy == str(tmp_path / "h.json") and cfg.training.deepspeed == str(tmp_path / "ds.json")
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("training:\n  output_dir: $NOT_SET_ANYWHERE/run\n", encoding="utf-8")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match=r"run.yaml:2: 'training.output_dir': .*NOT_SET_ANYWHERE is not set"):
        load_config(yaml_file)


def test_train_resolves_a_tilde_in_its_output_dir_once_for_every_file_it_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  family: qwen2_5_vl\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(config), "training.output_dir=~/run", "--print-config"])
    assert r.exit_code == 0 and f"output_dir:{tmp_path / 'home' / 'run'}" in "".join(r.output.split()), r.output


def test_expand_path_leaves_plain_text_alone_and_refuses_an_unknown_user(monkeypatch):
    monkeypatch.setenv("A", "/a")
    assert expand_path("runs/x") == "runs/x" and expand_path("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert expand_path("$A/b") == "/a/b" and expand_path("pixels:8") == "pixels:8"
    assert expand_path("~") == os.path.expanduser("~")
    with pytest.raises(ValueError, match="names no user"):
        expand_path("~no_such_user_here_xyz/run")


@pytest.mark.parametrize("local", ["./ckpt", "../ckpt", "/abs/ckpt", "runs/a/final", "ckpt/"])
def test_a_missing_local_path_is_reported_as_a_folder_never_as_a_hub_id(local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no such folder.*a local path, so the hub was not asked"):
        check_model_source(local)
    with pytest.raises(ValueError, match="no such folder") as e:
        model_type_of(local)
    assert "hub id" not in str(e.value) and "Hugging Face cache" not in str(e.value)


def test_a_hub_id_and_an_existing_folder_pass_and_a_file_is_named(tmp_path):
    check_model_source("Qwen/Qwen2.5-VL-3B-Instruct")
    check_model_source(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.bin: is a file"):
        check_model_source(str(tmp_path / "weights.bin"))


def test_predict_with_a_missing_local_checkpoint_names_the_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    r = CliRunner().invoke(app, ["predict", "-c", "./no/such/ckpt", "-i", str(photos), "-o", str(tmp_path / "p.jsonl")])
    assert r.exit_code == 2 and "hub" not in r.output.replace("the hub was not asked", ""), r.output
    assert Path("no/such/ckpt").as_posix() in r.output


def test_a_file_output_typed_as_a_folder_is_refused_by_every_command_that_writes_one(tmp_path):
    # A Path drops the trailing slash: `predict -o preds/` wrote predictions into a file named `preds`.
    root = typer.main.get_command(app)
    start_command(typer.Context(root))
    file_outputs = [(c, p) for c, p in path_params(root) if p.metavar == FILE_OUT]
    assert {("predict", "out"), ("eval", "out"), ("data export-coco", "out"), ("doctor data", "json_out")} <= \
        {(c, p.name) for c, p in file_outputs}
    for command, param in file_outputs:
        with pytest.raises(typer.BadParameter, match="ends in '/', which names a folder, but this takes a file's name"):
            param.process_value(typer.Context(root), f"{tmp_path}/preds/")
        assert str(param.process_value(typer.Context(root), f"{tmp_path}/preds")) == f"{tmp_path}/preds"
    gt = tmp_path / "gt.jsonl"
    gt.write_text("", encoding="utf-8")
    r = CliRunner().invoke(app, ["predict", "-c", str(tmp_path), "-i", str(gt), "-o", f"{tmp_path}/preds/"],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 2 and "ends in '/', which names a folder" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "preds").exists()
