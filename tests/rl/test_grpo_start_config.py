"""What a GRPO run takes from its own config and what from the checkpoint it starts from: the model loads as the
config asks (attention, QLoRA), refused where SFT refuses it; prediction's settings and the data are the config's."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.rl.trainer import build_grpo_run
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


def _train(cfg, tmp_path, *overrides: str) -> tuple[int, str]:
    """`bbuvl train` on `cfg` written to a file: (exit code, output on one line)."""
    path = tmp_path / "grpo.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path), *overrides], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("overrides, says", [
    (("model.attn_implementation=flash_attention_2",), "model.attn_implementation flash_attention_2 needs a CUDA GPU"),
    (("model.lora.enabled=true", "model.lora.bits=4"), "4-bit loading (QLoRA) needs a CUDA GPU"),
])
def test_grpo_refuses_attention_and_quantisation_this_machine_cannot_run_as_sft_does(grpo_config, run_config, tmp_path,
                                                                                     overrides, says):
    # They were accepted without a word: sdpa and full-precision LoRA trained, and final/bbuvl.yaml recorded bits 4.
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA machine may run both")
    code, said = _train(grpo_config(), tmp_path, *overrides)
    assert code == 2 and says in said and "Traceback" not in said, said
    assert not (tmp_path / "grpo" / "final").exists()
    code, sft_said = _train(run_config(f"training.output_dir={tmp_path / 'sft'}"), tmp_path, *overrides)
    assert code == 2 and says in sft_said, sft_said


def test_grpo_loads_the_attention_its_config_names_and_records_it(grpo_config, trained_checkpoint):
    assert load_config(trained_checkpoint / "bbuvl.yaml").model.attn_implementation == "sdpa"
    run = build_grpo_run(grpo_config("model.attn_implementation=eager"))
    assert run.model.vlm.config._attn_implementation == "eager"
    assert run.cfg.model.attn_implementation == "eager"
