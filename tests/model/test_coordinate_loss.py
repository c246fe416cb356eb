"""Coordinate regression (model/coordinate_loss.py): which tokens are marked, the term's value on a hand-computed
case, and in training: logged, saved for --resume, never read by prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.chat import IGNORE_INDEX, NO_COORDINATE, SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, Turn, coordinate_marks
from bbuvl.encode.prompts import system_prompt
from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import READOUT_FILE
from bbuvl.model.coordinate_loss import SMOOTH_L1_BETA, CoordinateReadout, coordinate_regression_sum
from bbuvl.train.trainer import build_run, train
from tests.callbacks import StopAt

pytestmark = pytest.mark.filterwarnings("ignore")

ANSWER = '[{"bbox_2d": [12, 105, 224, 9], "label": "标签贴纸"}, {"bbox_2d": [0, 7, 1000, 56], "label": "线缆"}]'


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def encoder(tiny, tiny_family):
    return ChatEncoder(tiny[1], system_prompt(["标签贴纸", "线缆"], Hierarchy.load(), "zh"), "zh",
                       get_family(tiny_family).assistant_prefix)


# --- which tokens ------------------------------------------------------------------------------------------------

def test_marks_name_each_number_token_and_nothing_else():
    # Offsets of a tokenizer that writes each character as a token: every digit is marked with its number.
    offsets = [(i, i + 1) for i in range(len(ANSWER))]
    marks, boxes = coordinate_marks(ANSWER, offsets, (224.0, 112.0))
    written = {}
    for (start, _), mark in zip(offsets, marks):
        if mark != NO_COORDINATE:
            written[mark] = written.get(mark, "") + ANSWER[start]
    assert written == {0: "12", 1: "105", 2: "224", 3: "9", 4: "0", 5: "7", 6: "1000", 7: "56"}
    assert torch.allclose(boxes, torch.tensor([[12 / 224, 105 / 112, 1.0, 9 / 112], [0.0, 7 / 112, 1000 / 224, 0.5]]))
    # A token that holds more than a number (' 12') is still the number's; the '2' of "bbox_2d" never is.
    marks, _ = coordinate_marks('[{"bbox_2d": [12, 3, 4, 5]}]', [(0, 13), (13, 16), (16, 28)], (10.0, 10.0))
    assert marks == [NO_COORDINATE, 0, 1]


def test_the_student_answers_number_tokens_are_marked_with_the_same_ids(encoder):
    tok = encoder.tokenizer
    turns = [Turn(_img(56, 56, 1), ANSWER, SPAN_TEACHER, (56.0, 56.0)), Turn(_img(84, 56, 2), ANSWER, SPAN_STUDENT, (84.0, 56.0))]
    marked = encoder.encode(turns)
    plain = encoder.encode([Turn(t.image, t.answer, t.span) for t in turns])
    assert plain.coord_marks is None
    assert torch.equal(marked.input_ids, plain.input_ids) and torch.equal(marked.labels, plain.labels)
    at = marked.coord_marks != NO_COORDINATE
    # Only the student's answer (the teacher's boxes are of another photo), every mark on a supervised token.
    assert (marked.span_ids[at] == SPAN_STUDENT).all() and (marked.labels[at] != IGNORE_INDEX).all()
    numbers = {}
    for token, mark in zip(marked.input_ids[at].tolist(), marked.coord_marks[at].tolist()):
        numbers[mark] = numbers.get(mark, "") + tok.decode([token]).strip()
    assert numbers == {0: "12", 1: "105", 2: "224", 3: "9", 4: "0", 5: "7", 6: "1000", 7: "56"}
    assert torch.allclose(marked.coord_boxes[0], torch.tensor([12 / 84, 105 / 56, 224 / 84, 9 / 56]))


def test_a_cut_answer_keeps_its_marks_aligned(encoder):
    full = encoder.encode([Turn(_img(84, 56), ANSWER, SPAN_STUDENT, (84.0, 56.0))])
    cut_at = int(torch.nonzero(full.coord_marks == 5)[0]) + 1  # inside the second box's y1
    cut = encoder.encode([Turn(_img(84, 56), ANSWER, SPAN_STUDENT, (84.0, 56.0))], max_length=cut_at)
    assert cut.coord_marks.shape == cut.input_ids.shape
    assert torch.equal(cut.coord_marks, full.coord_marks[:cut_at])


# --- the term's value --------------------------------------------------------------------------------------------

def test_known_answer_on_a_hand_computed_case():
    # Hidden size 2; the read-out writes h0 as x1, h1 as y1, h0 + h1 as x2 and 0 as y2.
    readout = CoordinateReadout(2)
    with torch.no_grad():
        readout.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
        readout.proj.bias.zero_()
    # One packed row of two samples. Sample 0 writes x1 with the tokens at 2 and 3 (read at 1 and 2), sample 1
    # writes its second box's y1 at 6 (read at 5) and x2 at 7 (read at 6); position 4 starts sample 1 and its
    # token is no coordinate.
    marks = torch.tensor([[-1, -1, 0, 0, -1, -1, 5, 6]])
    sample_index = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    boxes = [torch.tensor([[0.5, 0.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.25, 0.6, 1.0]])]
    hidden = torch.tensor([[[0.0, 0.0], [0.5, 9.0], [0.3, 9.0], [0.0, 0.0], [0.0, 0.0], [7.0, 0.27], [0.2, 0.3],
                            [0.0, 0.0]]], requires_grad=True)
    total = coordinate_regression_sum(hidden, readout, marks, sample_index, boxes)

    def smooth_l1(d: float) -> float:
        d = abs(d)
        return 0.5 * d * d / SMOOTH_L1_BETA if d < SMOOTH_L1_BETA else d - 0.5 * SMOOTH_L1_BETA

    # x1 of sample 0 (0.5) read as 0.5 and 0.3; y1 of sample 1's box 1 (0.25) read as 0.27; its x2 (0.6) as 0.5.
    expected = smooth_l1(0.0) + smooth_l1(-0.2) + smooth_l1(0.02) + smooth_l1(-0.1)
    assert float(total) == pytest.approx(expected, abs=1e-6)
    total.backward()
    assert hidden.grad[0, [0, 3, 4, 7]].abs().sum() == 0  # positions that predict no coordinate get no gradient


def test_a_batch_without_coordinates_gives_a_zero_that_backpropagates():
    readout = CoordinateReadout(3)
    hidden = torch.randn(1, 4, 3, requires_grad=True)
    total = coordinate_regression_sum(hidden, readout, torch.full((1, 4), NO_COORDINATE), torch.zeros(1, 4, dtype=torch.long),
                                      [torch.zeros(0, 4)])
    assert float(total) == 0.0
    total.backward()
    assert readout.proj.weight.grad is not None and not readout.proj.weight.grad.any()


# --- in training -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("collator", ["padded", "packed"])
def test_the_batch_marks_every_coordinate_of_the_students_answer(run_config, collator, tiny_family):
    if collator == "packed" and not get_family(tiny_family).packs_isolated:
        pytest.skip(f"{tiny_family} cannot isolate packed samples; training refuses packing")
    run = build_run(run_config("loss.coordinate_regression=1.0", "detection.enabled=false", f"data.collator={collator}"))
    sample = run.train_dataset[0]
    batch = run.collator([sample, run.train_dataset[1]])
    assert batch.coord_marks.shape == batch.input_ids.shape
    for s, boxes in enumerate(batch.coord_boxes):
        written = batch.coord_marks[batch.sample_index == s]
        assert set(written[written >= 0].tolist()) == set(range(4 * boxes.shape[0]))
        assert ((boxes >= 0) & (boxes <= 1)).all()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_logs_the_term_saves_the_readout_and_prediction_never_reads_it(run_config, tmp_path):
    out = tmp_path / "run"
    result = train(run_config("loss.coordinate_regression=1.0", "detection.enabled=false", "training.max_steps=3",
                              "data.val=null", f"training.output_dir={out}"), progress=False)
    logs = [h for h in result["history"] if "loss" in h and "train_runtime" not in h]
    assert logs and all(h["coordinate"] > 0 for h in logs)
    assert all(h["loss"] == pytest.approx(h["lm_teacher"] * 0.3 + h["lm_student"] + h["coordinate"], rel=1e-4)
               for h in logs)
    final = Path(result["final"])
    saved = load_file(final / READOUT_FILE)
    assert set(saved) == {"proj.weight", "proj.bias"}
    # The read-out plays no part in an answer: zeroing it leaves generate mode's output unchanged.
    photo = json.loads((Path(run_config().data.train)).read_text(encoding="utf-8").splitlines()[0])["images"][0]
    photo = Path(run_config().data.train).parent / photo
    predictor = Predictor.load(final, device="cpu")
    before = predictor.predict_detection([photo], mode="generate")
    with torch.no_grad():
        predictor.model.coordinate_readout.proj.weight.zero_()
    assert predictor.predict_detection([photo], mode="generate") == before


def test_grounding_attention_logs_its_term_with_sdpa(run_config, tmp_path):
    result = train(run_config("loss.grounding_attention=1.0", "loss.coordinate_regression=1.0", "model.attn_implementation=sdpa",
                              "detection.enabled=false", "training.max_steps=3", "data.val=null",
                              f"training.output_dir={tmp_path / 'run'}"), progress=False)
    logs = [h for h in result["history"] if "loss" in h and "train_runtime" not in h]
    assert logs and all(h["grounding"] > 0 and h["coordinate"] > 0 for h in logs)
    assert all(h["loss"] == pytest.approx(h["lm_teacher"] * 0.3 + h["lm_student"] + h["coordinate"] + h["grounding"],
                                          rel=1e-4) for h in logs)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_with_both_terms_continues_exactly(run_config, tmp_path):
    common = ("training.max_steps=6", "training.save_steps=3", "detection.enabled=false", "loss.coordinate_regression=1.0",
              "loss.grounding_attention=1.0")
    full = train(run_config(*common, f"training.output_dir={tmp_path / 'a'}"), progress=False)["history"]
    cfg_b = run_config(*common, f"training.output_dir={tmp_path / 'b'}")
    train(cfg_b, progress=False, callbacks=[StopAt(3)])
    assert (tmp_path / "b" / "checkpoint-3" / READOUT_FILE).exists()
    resumed = train(cfg_b, resume=True, progress=False)["history"]
    a = {h["step"]: h for h in full if "loss" in h and "train_runtime" not in h}
    b = {h["step"]: h for h in resumed if "loss" in h and "train_runtime" not in h and h["step"] > 3}
    assert sorted(b) == [4, 5, 6]
    for step, h in b.items():
        for k in ("loss", "coordinate", "grounding"):
            assert h[k] == pytest.approx(a[step][k], abs=1e-5), (step, k)
