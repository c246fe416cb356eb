"""Credit per part of the answer (rl/answer_parts.py): which tokens write a box or a label, and their advantages."""

import pytest
import torch
from transformers import AutoTokenizer

from bbuvl.infer.constrained import token_bytes
from bbuvl.rl.answer_parts import BOX, LABEL, OTHER, part_advantages, token_advantages, token_parts
from bbuvl.rl.objective import StepCounts, group_advantages, grpo_loss

ANSWER = ('[{"bbox_2d": [11, 111, 100, 117], "label": "螺丝连接点/BBU安装螺丝/连接正确"}, '
          '{"bbox_2d": [1, 2, 3, 4], "label": "标签贴纸"}]')


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny model's own tokenizer: byte-level BPE trained offline, as a real Qwen checkpoint's."""
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _spans(tokenizer, text: str, end: str = "<|im_end|>"):
    ids = tokenizer(text + end)["input_ids"]
    pieces = token_bytes(tokenizer, ids)
    return pieces, token_parts(pieces)


def test_every_digit_of_a_box_is_a_box_token_every_byte_of_a_label_a_label_token_and_the_rest_other(tokenizer):
    pieces, parts = _spans(tokenizer, ANSWER)
    assert b"".join(pieces) == ANSWER.encode("utf-8")  # the end token has no bytes of its own
    assert parts[-1] == OTHER
    written = {BOX: b"", LABEL: b"", OTHER: b""}
    for piece, part in zip(pieces, parts):
        written[part] += piece
    digits = b"".join(bytes([c]) for c in written[BOX] if 0x30 <= c <= 0x39)
    assert digits == b"11111100117" + b"1234"
    assert not any(0x30 <= c <= 0x39 for c in written[LABEL] + written[OTHER].replace(b"bbox_2d", b""))
    labels = written[LABEL].decode("utf-8")
    assert "螺丝连接点/BBU安装螺丝/连接正确" in labels and "标签贴纸" in labels
    assert "label" not in labels and "bbox" not in labels


def test_an_answer_cut_short_and_one_written_without_the_grammar_are_read_the_same_way(tokenizer):
    cut = '[{"bbox_2d": [11, 111, 1'
    pieces, parts = _spans(tokenizer, cut, end="")
    assert [p for p, k in zip(pieces, parts) if k == BOX] and LABEL not in parts
    loose = '[{"label":"标签贴纸","bbox_2d":[3,4,50,60]}]'
    pieces, parts = _spans(tokenizer, loose, end="")
    assert b"".join(p for p, k in zip(pieces, parts) if k == BOX).replace(b",", b"") .startswith(b"3")
    assert "标签贴纸" in b"".join(p for p, k in zip(pieces, parts) if k == LABEL).decode("utf-8")


def test_the_box_tokens_earn_the_detection_term_and_the_label_tokens_the_label_term():
    # One photo, three answers: a good box with a wrong label, a bad box with the right label, both middling.
    detection = torch.tensor([[0.9, 0.0, 0.5]])
    label = torch.tensor([[0.0, 1.0, 0.5]])
    box, lab, rest = part_advantages({"detection": detection, "label": label}, {"detection": 1.0, "label": 0.5}, True)
    assert box[0, 0] > box[0, 2] > box[0, 1]  # the box tokens follow the boxes alone
    assert lab[0, 1] > lab[0, 2] > lab[0, 0]  # the label tokens follow the labels alone
    assert torch.allclose(rest, group_advantages(detection + 0.5 * label))  # the rest: the weighted total, as before
    # a term of its own (the user's) counts for every part
    user = torch.tensor([[0.0, 0.0, 1.0]])
    box2, lab2, _ = part_advantages({"detection": detection, "label": label, "user": user},
                                    {"detection": 1.0, "label": 0.5, "user": 2.0}, False)
    assert torch.allclose(box2, group_advantages(detection + 2 * user, False))
    assert torch.allclose(lab2, group_advantages(0.5 * label + 2 * user, False))


def test_a_part_no_term_can_reach_gets_no_advantage():
    detection = torch.tensor([[0.9, 0.1]])
    box, lab, rest = part_advantages({"detection": detection}, {"detection": 1.0}, True)
    assert torch.equal(lab, torch.zeros_like(lab))
    assert torch.allclose(box, rest)


def test_token_advantages_follow_each_tokens_part_and_stop_at_each_answers_end():
    by_part = torch.tensor([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])  # [3 parts, 2 answers]
    adv = token_advantages([[OTHER, BOX, BOX, LABEL], [BOX, OTHER]], by_part)
    assert adv.tolist() == [[3.0, 1.0, 1.0, 2.0], [-1.0, -3.0, 0.0, 0.0]]


def test_per_token_advantages_equal_per_answer_ones_when_every_token_of_an_answer_has_the_same():
    logp = torch.tensor([[-0.7, -1.4], [-0.7, 0.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    counts = StepCounts(answers=2, tokens=3, max_new_tokens=4)
    per_answer = grpo_loss(logp, logp.detach(), None, torch.tensor([1.0, -1.0], dtype=torch.float64), mask, counts)
    per_token = grpo_loss(logp, logp.detach(), None, torch.tensor([[1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64),
                          mask, counts)
    assert torch.allclose(per_answer.loss, per_token.loss)
    g1, = torch.autograd.grad(per_answer.loss, logp)
    g2, = torch.autograd.grad(per_token.loss, logp)
    assert torch.allclose(g1, g2)
    # and a token of its own advantage moves alone: the second token of answer 0 at 0 gets no gradient
    only_first = grpo_loss(logp, logp.detach(), None, torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64),
                           mask, counts)
    g3, = torch.autograd.grad(only_first.loss, logp)
    assert g3[0, 1] == 0 and g3[0, 0] == g1[0, 0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rollouts_drawn_with_parts_credit_each_token_with_its_parts_advantage(trained_checkpoint, small_dataset):
    from bbuvl.config import GrpoConfig
    from bbuvl.data.labels import Hierarchy
    from bbuvl.infer.predictor import Predictor
    from bbuvl.rl.rewards import RewardScorer
    from bbuvl.rl.rollouts import draw_rollouts, read_photos

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    cfg = GrpoConfig(group_size=4, max_new_tokens=48, temperature=1.5, advantages="parts")
    scorer = RewardScorer.from_config(cfg.rewards, Hierarchy.load(predictor.cfg.data.hierarchy), predictor.prompt.labels)
    photos = read_photos(str(small_dataset / "train.jsonl"))[:2]
    drawn = draw_rollouts(predictor, photos, cfg, scorer, seed=3, step=0)
    R = len(drawn.samples)
    assert drawn.advantages.shape[0] == R and drawn.advantages.shape[1] == int(drawn.lengths.max())
    box, label, rest = part_advantages(drawn.terms, {"detection": 1.0, "label": 0.5}, True)
    box, label, rest = box.flatten(), label.flatten(), rest.flatten()
    seen = set()
    for r, sample in enumerate(drawn.samples):
        n = int(drawn.lengths[r])
        ids = sample.input_ids[-n:].tolist()
        for t, part in enumerate(token_parts(token_bytes(predictor.tokenizer, ids))):
            want = (box, label, rest)[part][r]
            assert torch.isclose(drawn.advantages[r, t], want), (r, t, part)
            seen.add(part)
        assert torch.all(drawn.advantages[r, n:] == 0)
    assert seen == {BOX, LABEL, OTHER}
