"""bench/gpu.py's vLLM arm: generate-mode photos/s of vLLM on the bench's model folder, beside `bbuvl predict`'s.

The bench's random model folder is a stock folder (the processor saved under its stock class name), which is
what `bbuvl model export` writes, so vLLM loads it as it would an export. Both arms answer the same dense photo
with the same prompt (the checkpoint's system prompt and user turn, through the folder's chat template) and
decode the same number of tokens: the bbu-vl rows are steered to write the dense answer (bench/gpu_rows.py), and
vLLM, whose random model would stop anywhere, decodes exactly that many tokens (`min_tokens` = `max_tokens`,
end of turn ignored). vLLM runs after the bbu-vl rows, once their model is released, in its own engine process.
Where vllm does not import (the CPU machines, or a GPU machine without it) the arm is skipped with a message.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from PIL import Image


def vllm_missing() -> str | None:
    """Why the vLLM arm cannot run here (None when vllm imports)."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm on a GPU machine)"
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure (a CUDA build mismatch, a missing kernel) skips the arm
        return f"vllm does not import: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return None


def vllm_prompt(folder: Path, system: str, user: str) -> str:
    """The prompt text vLLM expands its image placeholder in: the folder's chat template over the card's messages."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]}]
    return tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False,
                                         enable_thinking=False)


def measure_vllm(folder: Path, prompt: str, photo: Image.Image, frame: tuple[int, int], answer_tokens: int,
                 batches: list[int], calls: int, warmup: int, dtype: str) -> list[dict[str, Any]]:
    """Photos/s of vLLM's offline `LLM.generate` on `batches` copies of the photo, each decoding `answer_tokens`."""
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # torch already holds CUDA in this process
    from vllm import LLM, SamplingParams

    min_pixels, max_pixels = frame
    llm = LLM(model=str(folder), dtype=dtype, limit_mm_per_prompt={"image": 1}, gpu_memory_utilization=0.6,
              mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels}, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=answer_tokens, min_tokens=answer_tokens, ignore_eos=True)
    rows = []
    for batch in batches:
        requests = [{"prompt": prompt, "multi_modal_data": {"image": photo}}] * batch
        for _ in range(warmup):
            llm.generate(requests, params, use_tqdm=False)
        t0 = time.perf_counter()
        for _ in range(calls):
            out = llm.generate(requests, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        rows.append({"batch": batch, "photos_per_s": calls * batch / seconds, "s_per_batch": seconds / calls,
                     "answer_tokens": len(out[0].outputs[0].token_ids)})
    del llm
    return rows
