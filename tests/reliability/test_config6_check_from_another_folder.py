"""`bbuvl config check` of a shipped config run from another working folder, as a user trying it first would: it said
`ok` and nothing of configs/grpo.yaml's model.path (runs/bbu-3b/final), which is not here and, with two slashes, can be
no hub id, so a training start here refuses it; and its notes did not say where a relative path was looked for."""

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "grpo.yaml"


def test_config_check_of_the_shipped_grpo_config_elsewhere_notes_its_model_and_data_where_they_were_looked_for(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["config", "check", str(SHIPPED)])
    said = " ".join(done.output.split())  # rich wraps long lines
    assert done.exit_code == 0 and f"ok: {SHIPPED} is valid" in said, done.output
    assert (f"note: {SHIPPED}:6: model.path runs/bbu-3b/final: no such folder on this machine (looked for from "
            f"{tmp_path})") in said, done.output
    lines = SHIPPED.read_text("utf-8").splitlines()
    train = next(n for n, line in enumerate(lines, 1) if line == "  train: data/train.jsonl")
    assert (f"note: {SHIPPED}:{train}: data.train data/train.jsonl: no such file (looked for from {tmp_path}); training "
            "on this machine would refuse it") in said, done.output


def test_config_check_takes_a_hub_id_for_one_and_notes_nothing_of_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("", encoding="utf-8")
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: Qwen/Qwen2.5-VL-3B-Instruct\ndata:\n  train: data/train.jsonl\n"
                 "training:\n  bf16: false\n", encoding="utf-8")  # bf16 is noted on a machine without it: not here
    done = CliRunner().invoke(app, ["config", "check", str(p)])
    assert done.exit_code == 0 and "note:" not in done.output, done.output


def test_config_check_notes_every_file_a_training_start_reads_that_is_not_here(tmp_path, monkeypatch):
    """training.deepspeed and the caption refit's photos were left out: `ok`, then the start refused them."""
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  deepspeed: ds/zero2.json\ndetection:\n  caption_refit:\n    steps: 10\n"
                 "    photos: tiles.jsonl\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["config", "check", str(p)])
    said = " ".join(done.output.split())
    assert done.exit_code == 0, done.output
    assert (f"note: {p}:2: training.deepspeed ds/zero2.json: no such file (looked for from {tmp_path}); training on "
            "this machine would refuse it") in said, done.output
    assert f"note: {p}:6: detection.caption_refit.photos tiles.jsonl: no such file" in said, done.output


def test_config_check_refuses_what_training_refuses_in_the_files_here(tmp_path, monkeypatch):
    """A hierarchy with a misspelt key, a DeepSpeed config that is no JSON, an output folder that is a file: `ok`, then
    the training start refused each."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.json").write_text('{"categories": {"线缆": {"falut": true}}}', encoding="utf-8")
    (tmp_path / "ds.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "runs").write_text("", encoding="utf-8")
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  hierarchy: h.json\ntraining:\n  output_dir: runs\n  deepspeed: ds.json\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["config", "check", str(p)])
    said = " ".join(done.output.split())
    assert done.exit_code == 2 and "is valid" not in said, done.output
    assert (f"{p}:2: data.hierarchy {tmp_path / 'h.json'}: category '线缆': unknown key 'falut' (did you mean "
            "'fault'?)") in said, said
    assert f"{p}:5: training.deepspeed ds.json: line 1: not valid JSON" in said, said
    assert f"{p}:4: training.output_dir runs: a file, not a folder" in said, said
