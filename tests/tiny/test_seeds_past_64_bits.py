"""Any whole number is a seed (tests/reliability/test_misuse_is_an_error.py leaves --seed unbounded): one past torch's
64 bits was "error: Overflow when unpacking long long" in `model tiny` and `fewshot tiny-backbone`."""

from __future__ import annotations

from safetensors.torch import load_file
from typer.testing import CliRunner

from bbuvl.cli import app


def invoke(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_backbone_seed_past_64_bits_draws_the_weights_of_its_low_64_bits(tmp_path):
    for seed in (3, 2**64 + 3, 2**70 + 3, -(2**64) + 3):
        invoke("fewshot", "tiny-backbone", "resnet", tmp_path / str(seed), "--image-size", "32", "--seed", seed)
    weights = [load_file(tmp_path / str(seed) / "model.safetensors") for seed in (3, 2**64 + 3, 2**70 + 3, -(2**64) + 3)]
    for other in weights[1:]:
        assert other.keys() == weights[0].keys() and all(other[k].equal(weights[0][k]) for k in weights[0])
    invoke("fewshot", "tiny-backbone", "resnet", tmp_path / "4", "--image-size", "32", "--seed", 4)
    four = load_file(tmp_path / "4" / "model.safetensors")
    assert not all(four[k].equal(weights[0][k]) for k in four)  # the seed still decides the weights


def test_a_tiny_model_takes_a_seed_past_64_bits(tmp_path):
    said = invoke("model", "tiny", tmp_path / "m", "--seed", 2**64)
    assert "saved tiny" in said and (tmp_path / "m" / "model.safetensors").stat().st_size > 0
