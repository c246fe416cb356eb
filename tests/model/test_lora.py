"""Which modules LoRA adapts: the names in model.lora.target_modules, each checked against the language model."""

from __future__ import annotations

import pytest
import torch

from bbuvl.config import LoraConfig
from bbuvl.model.loading import load_model_and_processor
from bbuvl.model.lora import apply_lora
from bbuvl.tiny.model import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "ckpt")


def adapted(vlm) -> set[str]:
    """The last name part of every module that received a LoRA adapter."""
    return {name.rsplit(".", 1)[-1] for name, module in vlm.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_lora_adapts_exactly_the_named_linear_layers_of_the_language_model(tiny_dir):
    vlm, _ = load_model_and_processor(str(tiny_dir))
    wrapped = apply_lora(vlm, LoraConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    assert adapted(wrapped) == {"q_proj", "v_proj"}


@pytest.mark.parametrize(("names", "says"), [
    # Before: trained with no adapters on the values, silently (peft adapts what matches, and q_proj did).
    (["q_proj", "v_prj"], "'v_prj' (did you mean 'v_proj'?) is no linear layer of this model's language model"),
    # Before: re.error "nothing to repeat" from inside peft, a traceback.
    (["*"], "'*' is no linear layer"),
    (["q_proj|k_proj"], "'q_proj|k_proj' (did you mean 'q_proj'?) is no linear layer"),
], ids=["a misspelt name beside a right one", "a wildcard", "a pattern"])
def test_a_target_module_that_names_no_layer_is_refused_naming_it_and_the_layers_there_are(tiny_dir, names, says):
    vlm, _ = load_model_and_processor(str(tiny_dir))
    with pytest.raises(ValueError) as e:
        apply_lora(vlm, LoraConfig(r=2, alpha=4, target_modules=names))
    message = str(e.value)
    assert message.startswith("model.lora.target_modules: ") and says in message, message
    assert "its layers have down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_vision_lora_adapts_every_linear_layer_of_the_vision_blocks_in_every_family(family, tmp_path):
    # Qwen3-VL and Qwen3.5 name their vision MLP linear_fc1/linear_fc2: a fixed list of Qwen2.5-VL's names left it
    # without adapters, and model.lora.vision adapted their vision attention alone.
    vlm, _ = load_model_and_processor(str(build_tiny_model(tmp_path / family, family=family)))
    linears = {name for name, module in vlm.named_modules()
               if "visual.blocks." in name and isinstance(module, torch.nn.Linear)}
    wrapped = apply_lora(vlm, LoraConfig(r=2, alpha=4, vision=True))
    vision_adapted = {name.removeprefix("base_model.model.") for name, module in wrapped.named_modules()
                      if "visual.blocks." in name and hasattr(module, "lora_A")}
    assert vision_adapted == linears and any(name.endswith(".mlp.linear_fc1") or name.endswith(".mlp.up_proj")
                                             for name in vision_adapted)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_shipped_qwen3_5_config_adapts_the_token_mixing_of_every_language_model_layer(tmp_path):
    # Its q/k/v/o_proj are in the full-attention layers alone (one in four in Qwen3.5's checkpoints, one in two in
    # the tiny one): with those names only, LoRA left the Gated DeltaNet layers' token mixing frozen.
    from bbuvl.config import load_config

    lora = load_config("configs/qwen3_5_0.8b.yaml").model.lora.model_copy(update={"enabled": True})
    vlm, _ = load_model_and_processor(str(build_tiny_model(tmp_path / "qwen3_5", family="qwen3_5")))
    wrapped = apply_lora(vlm, lora)
    mixers = {name.split(".layers.")[1].split(".")[0] for name, module in wrapped.named_modules()
              if ".language_model.layers." in name and hasattr(module, "lora_A")
              and (".self_attn." in name or ".linear_attn." in name)}
    assert mixers == {str(i) for i in range(len(vlm.config.text_config.layer_types))}
