"""The policy under the grammar (`grpo.logprobs: grammar`): each answer token's probability among the tokens the
answer grammar allowed at its step, the distribution the rollout was sampled from."""

import math

import numpy as np
import pytest
import torch

from bbuvl.config import ConfigError, GrpoConfig, load_config
from bbuvl.data.labels import Hierarchy
from bbuvl.infer.predictor import Predictor
from bbuvl.rl.rewards import RewardScorer
from bbuvl.rl.rollouts import completion_logprobs, draw_rollouts, grammar_steps, read_photos
from tests.diagnostics.conftest import one_thread  # noqa: F401 - one torch thread, as the training tests


@pytest.fixture(scope="module")
def drawn(trained_checkpoint, small_dataset):
    """Rollouts of two photos under the grammar, with the steps' allowed ids: (predictor, config, photos, rollouts)."""
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    cfg = GrpoConfig(group_size=3, max_new_tokens=48, temperature=1.5, logprobs="grammar")
    scorer = RewardScorer.from_config(cfg.rewards, Hierarchy.load(predictor.cfg.data.hierarchy), predictor.prompt.labels)
    photos = read_photos(str(small_dataset / "train.jsonl"))[:2]
    return predictor, cfg, photos, draw_rollouts(predictor, photos, cfg, scorer, seed=5, step=0)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_steps_are_what_the_logits_processor_allowed_while_the_answer_was_sampled(drawn):
    predictor, cfg, photos, rollouts = drawn
    assert rollouts.allowed is not None and len(rollouts.allowed) == len(rollouts.samples)
    for r, (sample, steps, n) in enumerate(zip(rollouts.samples, rollouts.allowed, rollouts.lengths.tolist())):
        ids = sample.input_ids[-n:].tolist()
        assert steps is not None and len(steps) == n
        # Replay the processor that masked the sampling, one step at a time, on the same tokens.
        photo = photos[r // cfg.group_size]  # rollouts are photo-major; the frame is the photo's
        frame = predictor.contract.answer_extent(predictor.prepare(photo.path).size)
        processor = predictor.labels_constraint().processor([frame], cfg.max_new_tokens)
        prompt = sample.input_ids[:-n][None, :]
        vocab = predictor.model.vlm.get_output_embeddings().weight.shape[0]
        for t in range(n):
            scores = processor(torch.cat([prompt, torch.tensor([ids[:t]], dtype=torch.long)], dim=1), torch.zeros(1, vocab))
            kept = np.flatnonzero(torch.isfinite(scores[0]).numpy())
            assert sorted(kept.tolist()) == sorted(steps[t].tolist()), t
            assert ids[t] in kept


def test_steps_of_an_answer_that_leaves_the_grammar_are_none(drawn):
    predictor = drawn[0]
    grammar = predictor.labels_constraint().grammar((448, 448))
    ids = predictor.tokenizer('[{"bbox_2d": [500')["input_ids"]  # 500 is past the 448-px frame
    assert grammar_steps(grammar, ids, 48) is None
    ok = predictor.tokenizer('[{"bbox_2d": [40')["input_ids"]
    steps = grammar_steps(grammar, ok, 48)
    assert steps is not None and all(t in s for t, s in zip(ok, steps))


def test_each_tokens_probability_is_taken_among_its_allowed_ids_and_a_row_without_them_over_the_vocabulary(drawn):
    predictor, cfg, _, rollouts = drawn
    model = predictor.model
    batch = predictor.right_collator(rollouts.samples).to("cpu")
    with torch.no_grad():
        full, mask = completion_logprobs(model, batch, cfg.temperature)
        among, mask2 = completion_logprobs(model, batch, cfg.temperature, rollouts.allowed)
        mixed, _ = completion_logprobs(model, batch, cfg.temperature, [None] + list(rollouts.allowed[1:]))
    assert torch.equal(mask, mask2)
    assert torch.all(among[mask] >= full[mask] - 1e-6)  # a share of less than the whole vocabulary's mass
    assert torch.allclose(mixed[0], full[0]) and torch.allclose(mixed[1:], among[1:])
    # by hand, for the first row: softmax over the allowed ids at each step
    from bbuvl.model.lm_loss import supervised_positions
    from bbuvl.model.vlm import core_model
    with torch.no_grad():
        _, hidden = model.vlm_pass(batch, input_embeds=False)
        pos = supervised_positions(batch.labels)
        logits = core_model(model.vlm).lm_head(hidden[pos]).float() / cfg.temperature
    n = int(rollouts.lengths[0])
    ids = rollouts.samples[0].input_ids[-n:].tolist()
    for t in range(n):
        allowed = torch.from_numpy(rollouts.allowed[0][t])
        want = logits[t, ids[t]] - torch.logsumexp(logits[t, allowed], 0)
        assert math.isclose(float(among[0, t]), float(want), abs_tol=1e-5)
    # forced tokens (one allowed id: a JSON literal, the end of the answer) have probability 1 under the grammar
    forced = [t for t in range(n) if len(rollouts.allowed[0][t]) == 1]
    assert forced and all(abs(float(among[0, t])) < 1e-6 for t in forced)


def test_a_top_p_below_one_is_refused_since_the_loss_scores_the_whole_distribution_not_the_nucleus():
    # Before: rollouts were sampled from the nucleus and scored over every allowed token, another policy, unsaid.
    with pytest.raises(ConfigError, match=r"grpo.top_p.*must be 1, got 0.9: rollouts would be sampled from the top-p"):
        load_config(None, ["training.method=grpo", "grpo.top_p=0.9"])
    assert load_config(None, ["training.method=grpo", "grpo.top_p=1.0"]).grpo.top_p == 1.0
