"""`bbuvl train` flags that the chosen way of running never reads: `--resume --dry-run` ran the dry run from scratch,
`--overwrite --validate-only` validated and replaced nothing, and `--print-config --validate-only` printed the config
and validated nothing, each without a word about the flag left unused. Each pair is now refused, naming it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config


@pytest.mark.parametrize(("flags", "says"), [
    (["--resume", "--dry-run"], "--resume applies to a training run, which --dry-run does not start"),
    (["--resume-from", "{run}/checkpoint-2", "--print-config"], "--resume-from applies to a training run, which "
                                                                 "--print-config does not start"),
    (["--overwrite", "--validate-only"], "--overwrite applies to a training run, which --validate-only does not start"),
    (["--print-config", "--validate-only"], "--print-config and --validate-only: each does one thing and stops"),
    (["--validate-only", "--dry-run"], "--validate-only and --dry-run: each does one thing and stops"),
])
def test_a_flag_the_way_of_running_never_reads_is_refused(run_config, tmp_path, flags, says):
    cfg = run_config()
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    argv = ["train", str(config), *(f.format(run=cfg.training.output_dir) for f in flags)]
    r = CliRunner().invoke(app, argv, env={"COLUMNS": "400"})
    assert r.exit_code == 2, (r.output, r.exception)
    assert says in " ".join(r.output.split())
    assert not (tmp_path / "run").exists()


def test_each_check_alone_still_runs(run_config, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config()), encoding="utf-8")
    for flag in ("--print-config", "--validate-only"):
        r = CliRunner().invoke(app, ["train", str(config), flag], env={"COLUMNS": "400"})
        assert r.exit_code == 0, r.output


def test_train_help_says_dry_run_is_for_sft_configs_only():
    """`train --help` said nothing of --dry-run's refusal of a GRPO config, which a user met only on running it."""
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 0 and "SFT only (training.method sft): refused for a GRPO config" in said, said
