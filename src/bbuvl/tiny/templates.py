"""Each family's chat template for the tiny models, in the structure of the real Instruct checkpoints' templates.

All three write `<|im_start|>role\\n...<|im_end|>\\n` per turn and each image as
`<|vision_start|><|image_pad|><|vision_end|>`. They differ only where bbu-vl's prompts can see it:
Qwen2.5-VL adds a default system turn when none is given, Qwen3-VL does not, and Qwen3.5 writes the family's
`assistant_prefix` (an empty think block) after `<|im_start|>assistant\\n` for a non-thinking answer, both in
the generation prompt and in the assistant turns after the last user turn (docs/families.md). Tools,
reasoning_content and videos with timestamps are left out: bbu-vl never sends them.
"""

from __future__ import annotations

from bbuvl.data.families import get_family

_COUNTERS = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
_DEFAULT_SYSTEM = (
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
)
_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
)
_ROLE = "<|im_start|>{{ message['role'] }}\n"

# Qwen2.5-VL-Instruct's chat template, verbatim in structure.
QWEN2_5_VL_CHAT_TEMPLATE = (
    _COUNTERS
    + "{% for message in messages %}"
    + _DEFAULT_SYSTEM
    + _ROLE
    + _CONTENT
    + "{% endfor %}"
    + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL-Instruct's: Qwen2.5-VL's without the default system turn.
QWEN3_VL_CHAT_TEMPLATE = (
    _COUNTERS
    + "{% for message in messages %}"
    + _ROLE
    + _CONTENT
    + "{% endfor %}"
    + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_THINK = get_family("qwen3_5").assistant_prefix
# Qwen3.5's: Qwen3-VL's plus the empty think block of a non-thinking answer. The real template's generation
# prompt opens a think block unless `enable_thinking=False` is passed; bbu-vl's answers never think, so the tiny
# one writes the empty block unless `enable_thinking=True`, and passing `enable_thinking=False` renders the same
# prompt with either.
QWEN3_5_CHAT_TEMPLATE = (
    _COUNTERS
    + "{% set turns = namespace(last_user=-1) %}"
    + "{% for message in messages %}{% if message['role'] == 'user' %}"
    + "{% set turns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    + "{% for message in messages %}"
    + _ROLE
    + "{% if message['role'] == 'assistant' and loop.index0 > turns.last_user %}" + _THINK + "{% endif %}"
    + _CONTENT
    + "{% endfor %}"
    + "{% if add_generation_prompt %}<|im_start|>assistant\n"
    + "{% if enable_thinking is defined and enable_thinking %}<think>\n{% else %}" + _THINK + "{% endif %}{% endif %}"
)

CHAT_TEMPLATES: dict[str, str] = {
    "qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE,
    "qwen3_vl": QWEN3_VL_CHAT_TEMPLATE,
    "qwen3_5": QWEN3_5_CHAT_TEMPLATE,
}


def chat_template(model_type: str) -> str:
    """The tiny model's chat template for a family's `model_type` (ValueError naming the supported ones)."""
    get_family(model_type)
    return CHAT_TEMPLATES[model_type]
