"""GRPO rollouts decoded without the grammar (`grpo.constrained: false`, or a start whose prompt lists no labels):
the barely trained model sampled vision tokens among its answer's, and scoring a rollout that held an image pad read
it as an image block with no image: the run stopped at that step with a bare StopIteration from the mRoPE positions.
Free rollouts are now sampled without the vision tokens, and scored among the same ids."""

import json

import pytest
import torch

from bbuvl.data.families import IMAGE_TOKEN, TURN_END
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.chat import IGNORE_INDEX
from bbuvl.infer.predictor import Predictor
from bbuvl.rl.rollouts import Photo, draw_rollouts, free_banned_ids
from bbuvl.rl.rewards import RewardScorer
from bbuvl.rl.trainer import train_grpo
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")


def _logged(history):
    return [h for h in history if "loss" in h and "train_runtime" not in h]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_free_rollouts_of_a_barely_trained_model_train_to_the_end(grpo_config):
    history = train_grpo(grpo_config("grpo.constrained=false", "training.max_steps=3"), progress=False)["history"]
    assert [h["step"] for h in _logged(history)] == [1, 2, 3]
    assert all(h["answer_length"] > 10 for h in _logged(history))  # long free answers: many chances to write one


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_no_free_rollout_holds_a_vision_token(grpo_config, trained_checkpoint, small_dataset):
    cfg = grpo_config("grpo.constrained=false", "grpo.group_size=8")
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    tok = predictor.tokenizer
    banned = set(free_banned_ids(tok))
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) in banned and tok.convert_tokens_to_ids(TURN_END) not in banned
    lines = (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    photos = [Photo(i, str(small_dataset / json.loads(line)["images"][0]), ()) for i, line in enumerate(lines)]
    scorer = RewardScorer.from_config(cfg.grpo.rewards, Hierarchy.load(None), predictor.prompt.labels)
    rollouts = draw_rollouts(predictor, photos, cfg.grpo, scorer, seed=0, step=0)
    written = [set(s.input_ids[s.labels != IGNORE_INDEX].tolist()) for s in rollouts.samples]
    assert len(written) == 32 and sum(map(len, written)) > 32 * 5
    assert not any(banned & w for w in written)
