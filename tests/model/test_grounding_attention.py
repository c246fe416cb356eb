"""Grounding attention without eager attention (model/grounding_attention.py): the supervised rows recomputed from
each layer's inputs equal eager attention's probabilities, for every family, padded (left, right) and packed rows,
with and without activation checkpointing; the term's value on a hand-computed case."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

from bbuvl.config import load_config
from bbuvl.data.families import get_family
from bbuvl.model.grounding_attention import QueryKeyCapture, attention_layers, cell_coverage, grounding_attention_sum
from bbuvl.model.shared_prefix import shared_prefix_length
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import build_run
from tests.threads import run_together

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]

TOLERANCE = 1e-5


class EagerMaps:
    """The reference: eager attention's full probabilities `[B, heads, L, L]`, kept by forward hooks."""

    def __init__(self, model) -> None:
        self.maps: list[torch.Tensor] = []
        for layer in attention_layers(core_model(model.vlm).model.language_model):
            layer.register_forward_hook(lambda module, args, out: self.maps.append(out[1]))

    def rows(self, heads: int):
        """An `AttentionRows` that reads the kept maps (the sample's mask is in them already)."""
        return lambda b, segment, queries, keys: torch.stack([m[b, :heads][:, queries][..., keys] for m in self.maps])


def _run(run_config, attn: str, collator: str, heads: int, *extra: str):
    cfg = run_config(f"loss.grounding_attention=1.0", f"loss.grounding_heads={heads}", f"model.attn_implementation={attn}",
                     "detection.enabled=false", f"data.collator={collator}", "data.teacher_ratio=0.5", *extra)
    run = build_run(cfg)
    run.model.train()  # dropout is 0 in the tiny models: train mode only switches checkpointing on where asked
    return run


def _grounding(run, batch, rows=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The term's sum on `batch` and the LLM's gradients of it."""
    model = run.model
    model.zero_grad()
    capture = model.attention_capture
    with capture.recording():
        model.vlm_pass(batch, input_embeds=False)
        total = grounding_attention_sum(rows or capture.rows, capture.zero(), batch.coord_marks, batch.sample_index,
                                        batch.det_vision_mask, batch.det_grid_hw, batch.coord_boxes)
    total.backward()
    grads = {n: p.grad.clone() for n, p in core_model(model.vlm).model.language_model.named_parameters()
             if p.grad is not None}
    return total.detach(), grads


def _assert_same(new: tuple, ref: tuple) -> None:
    (total, grads), (ref_total, ref_grads) = new, ref
    assert float(ref_total) > 0
    assert float(total) == pytest.approx(float(ref_total), rel=TOLERANCE, abs=TOLERANCE)
    assert grads.keys() == ref_grads.keys() and grads
    # The gradients as one vector: eager and sdpa round differently (float32), which a parameter whose gradient is
    # tiny next to the others (Qwen3.5's dt_bias) shows as a relative difference of its own above 1e-5.
    flat, ref_flat = (torch.cat([d[n].flatten() for n in sorted(d)]) for d in (grads, ref_grads))
    assert float((flat - ref_flat).norm() / ref_flat.norm()) <= TOLERANCE


@pytest.mark.parametrize("collator, side, heads", [("padded", "right", 1), ("padded", "left", 2), ("packed", "", 2)])
def test_sdpa_rows_equal_eager_attention_on_the_same_batch(run_config, tiny_family, collator, side, heads):
    if collator == "packed" and not get_family(tiny_family).packs_isolated:
        pytest.skip(f"{tiny_family} cannot isolate packed samples; training refuses packing")
    ref_run = _run(run_config, "eager", "padded" if collator == "packed" else collator, heads)
    ref_run.model.shared_prefix = False  # the reference reads every row whole: one full map per layer
    run = _run(run_config, "sdpa", collator, heads)
    if side:
        ref_run.collator.padding_side = run.collator.padding_side = side
    samples = [run.train_dataset[i] for i in range(3)]
    batch = run.collator(samples)
    assert batch.coord_marks.ge(0).sum() > 0
    eager = EagerMaps(ref_run.model)
    # The eager reference is always padded: packing switches attention to per-sample SDPA (model/packed_attention.py).
    ref = _grounding(ref_run, ref_run.collator(samples), eager.rows(heads))
    _assert_same(_grounding(run, batch), ref)
    # The model's own pass is sdpa, and the layer count matches what eager recorded.
    assert core_model(run.model.vlm).config._attn_implementation != "eager"
    assert len(eager.maps) == len(attention_layers(core_model(run.model.vlm).model.language_model))


def test_the_shared_prompt_read_once_gives_the_same_term_and_gradients(run_config, tiny_family):
    run = _run(run_config, "sdpa", "padded", 2)
    if not run.model.shared_prefix:
        pytest.skip(f"{tiny_family} reads every row whole (model/shared_prefix.py)")
    batch = run.collator([run.train_dataset[i] for i in range(3)])
    assert shared_prefix_length(batch) > 0 and batch.coord_marks.ge(0).sum() > 0
    shared = _grounding(run, batch)
    run.model.shared_prefix = False
    _assert_same(shared, _grounding(run, batch))


def test_activation_checkpointing_gives_the_same_term_and_gradients(run_config):
    plain = _run(run_config, "sdpa", "padded", 1)
    checkpointed = _run(run_config, "sdpa", "padded", 1, "training.gradient_checkpointing=true")
    core_model(checkpointed.model.vlm).activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False})
    samples = [plain.train_dataset[i] for i in range(2)]
    _assert_same(_grounding(checkpointed, checkpointed.collator(samples)), _grounding(plain, plain.collator(samples)))


def test_two_threads_recording_through_one_language_model_at_once_each_keep_their_own_layers(tiny):
    """As model/patch_features.py's capture: one thread's `recording()` emptied the other's layers, and the two
    passes' calls were kept in one list ('an attention layer was called more than twice in one pass')."""
    model, _ = tiny
    text = core_model(model).model.language_model
    capture = QueryKeyCapture(heads=1)
    # Both passes end before either reads its layers: each waits for the other once its last layer ran.
    both_ran = threading.Barrier(2, timeout=60)
    handles = [*capture.attach(text), text.register_forward_hook(lambda *_: both_ran.wait())]
    kept: dict[int, list[int] | Exception] = {}

    def record(k: int) -> None:
        try:
            with torch.no_grad(), capture.recording():
                text(input_ids=torch.arange(3, 8 + 4 * k)[None])
                both_ran.wait()
                kept[k] = [layer.hidden.shape[1] for layer in capture.layers]
        except Exception as e:  # noqa: BLE001 - the thread's failure is the test's to report
            kept[k] = e

    run_together(record, [(k,) for k in range(2)], handles)
    layers = len(attention_layers(text))
    assert kept == {0: [5] * layers, 1: [9] * layers}
    copied = copy.deepcopy(capture)  # GRPO's frozen reference deep-copies the model with it (rl/trainer.py)
    assert copied.heads == 1 and copied.layers == []


@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2", "eager"])
def test_the_config_takes_grounding_with_every_attention_implementation(attn):
    cfg = load_config(None, ["loss.grounding_attention=4.0", f"model.attn_implementation={attn}"])
    assert cfg.loss.grounding_attention == 4.0 and cfg.model.attn_implementation == attn


def test_cell_coverage_and_grounding_attention_on_a_hand_computed_case():
    # A 2x2 grid; the box spans 1.5 cells across and 1 down: the top-left cell whole, the top-right half.
    assert torch.allclose(cell_coverage(torch.tensor([0.0, 0.0, 0.75, 0.5]), 2, 2), torch.tensor([1.0, 0.5, 0.0, 0.0]))
    # One sample: text, 4 image tokens, then position 5 predicts the digit at 6 (x1 of box 0) and position 6 the
    # digit at 7 (y1). Two layers of one head.
    marks = torch.tensor([[-1, -1, -1, -1, -1, -1, 0, 1]])
    sample_index = torch.zeros(1, 8, dtype=torch.long)
    vision = torch.tensor([[False, True, True, True, True, False, False, False]])
    row5 = torch.tensor([0.1, 0.4, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0])
    row6 = torch.tensor([0.0, 0.5, 0.25, 0.0, 0.0, 0.125, 0.125, 0.0])
    maps = []
    for scale in (1.0, 0.5):  # the second layer gives each image token half the first's attention
        m = torch.zeros(1, 1, 8, 8)
        m[0, 0, 5] = row5 * torch.tensor([1, scale, scale, scale, scale, 1, 1, 1])
        m[0, 0, 6] = row6 * torch.tensor([1, scale, scale, scale, scale, 1, 1, 1])
        maps.append(m)

    def rows(b, segment, queries, keys):
        assert segment.tolist() == list(range(8))
        return torch.stack([m[b][:, queries][..., keys] for m in maps])

    total = grounding_attention_sum(rows, torch.zeros(()), marks, sample_index, vision, torch.tensor([[2, 2]]),
                                    [torch.tensor([[0.0, 0.0, 0.75, 0.5]])])
    eps = 1e-6

    def ce(p_left: float, p_right: float) -> float:
        return -(2 / 3 * np.log(p_left + eps) + 1 / 3 * np.log(p_right + eps))

    expected = (ce(0.4, 0.2) + ce(0.2, 0.1)) / 2 + (ce(0.5, 0.25) + ce(0.25, 0.125)) / 2
    assert float(total) == pytest.approx(expected, abs=1e-5)
