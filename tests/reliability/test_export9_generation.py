"""An export's generation_config.json is greedy in stock transformers whatever its base's file carried: written, loaded
without a warning or a log line above INFO, and `generate` as the folder sets it gives do_sample=False's tokens
(model/export.py `greedy_only`; docs/serving.md, "Greedy in vLLM")."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

# A base's sampling defaults, as a chat model ships them, with the flags transformers judges beside greedy decoding:
# sampling-only (min_p, typical_p, epsilon_cutoff) and beam-only (length_penalty, early_stopping at one beam).
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.05, "typical_p": 0.95,
            "epsilon_cutoff": 0.0003, "length_penalty": 1.2, "early_stopping": True, "repetition_penalty": 1.05}
# A base that answers by beam search, several answers a prompt.
BEAMS = {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 1.2, "early_stopping": True,
         "repetition_penalty": 1.05}
# A base's whole-sequence length limit, beside which the export's max_new_tokens is a second limit.
LENGTH = {"max_length": 4096}
# Qwen3.5's note, once a kernel, that an optional kernel package (causal-conv1d, flash-linear-attention) is not
# installed: the machine's, not the export's, as tests/model/test_export.py reads it. Exactly that sentence is set
# aside; every other line still fails the test.
MISSING_KERNEL = re.compile(r"transformers\.integrations\.hub_kernels: `\w+` is falling back to its reference PyTorch "
                            r"implementation because `([\w-]+)` is not installed\. This is correct but much slower; "
                            r"install `\1` for the optimized kernel\.")


def checkpoint_with(tiny, tiny_model_dir: Path, out: Path, defaults: dict) -> Path:
    """A checkpoint of the shared tiny model saved as `bbuvl train` saves one (no head, no positions), its
    generation_config.json carrying `defaults` as a base's file hands them on to every checkpoint trained from it."""
    from bbuvl.config import load_config
    from bbuvl.model.checkpoint import Prompt, save_checkpoint
    from bbuvl.model.vlm import BBUVLModel

    vlm, processor = tiny
    cfg = load_config(None, [f"model.path={tiny_model_dir}", "model.dtype=float32", "detection.enabled=false",
                             "model.vision_positions=false", "data.teachers=null", "inference.max_new_tokens=8"])
    checkpoint = save_checkpoint(BBUVLModel.build(vlm, cfg, processor.tokenizer), processor, cfg, cfg.model.frame(),
                                 Prompt("Find the parts.", ["螺丝"], "zh"), out)
    generation = json.loads((checkpoint / "generation_config.json").read_text(encoding="utf-8"))
    (checkpoint / "generation_config.json").write_text(json.dumps(generation | defaults), encoding="utf-8")
    return checkpoint


@pytest.mark.parametrize("defaults", [SAMPLING, BEAMS, LENGTH], ids=["sampling", "beams", "length"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_of_a_base_with_sampling_beam_or_length_defaults_is_written_loads_silently_and_is_greedy(
        tiny, tiny_model_dir, tmp_path, defaults):
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bbuvl.model.export import export_checkpoint

    exported = tmp_path / "exported"
    # Before: sampling's was ValueError "GenerationConfig is invalid: - `min_p`: `do_sample` is not set to `True`..."
    # from save_pretrained, naming neither the checkpoint nor its file, and no export; beams' an export whose default
    # was a beam search of 3, where its card says greedy; length's "Both `max_new_tokens` (=8) and `max_length`(=4096)
    # seem to have been set" at every generate.
    export_checkpoint(checkpoint_with(tiny, tiny_model_dir, tmp_path / "ckpt", defaults), exported)
    saved = json.loads((exported / "generation_config.json").read_text(encoding="utf-8"))
    assert saved["do_sample"] is False and not set(saved) & (set(defaults) - {"do_sample", "repetition_penalty"})
    # bbuvl predict's generate reads the checkpoint's file too, penalty and all: the export answers as it does.
    assert saved.get("repetition_penalty") == defaults.get("repetition_penalty")

    noise: list[str] = []

    class Noise(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno > logging.INFO:
                noise.append(f"{record.name}: {record.getMessage()}")

    handler = Noise()
    hf_logging.get_logger().addHandler(handler)  # transformers' root logger does not propagate
    logging.Logger.warning_once.cache_clear()  # said once a process: an earlier test's load would hide it here
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = AutoModelForImageTextToText.from_pretrained(exported).eval()
            inputs = AutoTokenizer.from_pretrained(exported)(["找出每个部件"], return_tensors="pt")
            torch.manual_seed(0)
            first, second = model.generate(**inputs), model.generate(**inputs)
            plain = model.generate(**inputs, do_sample=False, num_beams=1)
    finally:
        hf_logging.get_logger().removeHandler(handler)
    assert [line for line in noise if not MISSING_KERNEL.fullmatch(line)] + [str(w.message) for w in caught] == []
    assert first.shape[1] > inputs["input_ids"].shape[1], "nothing generated: nothing was compared"
    assert first.tolist() == second.tolist() == plain.tolist()


def test_a_generation_config_that_stays_invalid_when_greedy_is_refused_naming_the_file_before_anything_is_written(
        tiny, tiny_model_dir, tmp_path):
    from bbuvl.model.export import export_checkpoint

    # A cache that no call uses: transformers' save refuses it, and it is no flag greedy decoding ignores.
    checkpoint = checkpoint_with(tiny, tiny_model_dir, tmp_path / "ckpt",
                                 {"use_cache": False, "cache_implementation": "static"})
    # Before: "GenerationConfig is invalid: ... Fix these issues to save the configuration.", naming no file.
    with pytest.raises(ValueError, match=rf"^{re.escape(str(checkpoint / 'generation_config.json'))}: .*`use_cache`.* "
                                         "Fix it there and export again.$"):
        export_checkpoint(checkpoint, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()
