"""Which modules LoRA adapts: the names in model.lora.target_modules, each checked against the language model."""

from __future__ import annotations

import pytest

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
