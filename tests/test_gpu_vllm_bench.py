"""bench/gpu.py's vLLM arm: its prompt is token for token the one bbu-vl answers after, and where vllm does not
import the arm is skipped with a message in the report, never an error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from gpu_vllm import vllm_missing, vllm_prompt  # noqa: E402

from bbuvl.data.families import IMAGE_TOKEN, get_family  # noqa: E402
from bbuvl.encode.chat import SPAN_STUDENT, ChatEncoder, Turn  # noqa: E402
from bbuvl.encode.prompts import USER_TEXT  # noqa: E402
from bbuvl.model.loading import load_processor  # noqa: E402
from bbuvl.tiny.model import build_tiny_model  # noqa: E402


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_5"])
def test_the_vllm_prompt_is_the_one_bbuvl_answers_after_once_vllm_expands_its_image(family, tmp_path):
    folder = build_tiny_model(tmp_path / "model", family=family)
    processor = load_processor(str(folder))
    system = "你是巡检员。\n标签：BBU设备/华为/显示完整"
    encoder = ChatEncoder(processor, system, "zh", get_family(family).assistant_prefix)
    ours = encoder.encode([Turn(Image.new("RGB", (224, 168), (90, 30, 200)), None, SPAN_STUDENT)],
                          add_generation_prompt=True)
    text = vllm_prompt(folder, system, USER_TEXT["zh"])
    assert text.count(IMAGE_TOKEN) == 1  # vLLM expands the one placeholder by the photo's grid
    expanded = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * ours.num_vision_tokens)
    assert processor.tokenizer.encode(expanded, add_special_tokens=False) == ours.input_ids.tolist()


def test_where_vllm_does_not_import_the_arm_is_skipped_with_a_message(tmp_path):
    import gpu

    missing = vllm_missing()
    if missing is None:
        pytest.skip("vllm imports here: the arm runs (bench/gpu.py on a GPU)")
    report: dict = {}
    saved = []
    gpu.vllm_rows(gpu.parse_args(["--config", "configs/base.yaml", "--device", "cpu"]), report, tmp_path, tmp_path / "x.png",
                  (3136, 1003520), ("system", "user"), 10, saved.append, gpu.Console(file=open(tmp_path / "log", "w")))
    assert report == {"vllm": {"skipped": missing}} and saved == [report]
    assert "vllm" in (tmp_path / "log").read_text()
